// Package deploy holds the kustomize bases, components and overlays that
// deploy must-gather-functions on Knative (see README, "Deploy on Knative"),
// and their tests: every overlay builds, every object decodes strictly into
// its Go type and passes the API server's validation, and the RBAC covers
// what the functions call.
package deploy
