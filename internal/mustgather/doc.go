// Package mustgather is the domain of must-gather-functions: a Gathering, its
// Status and the rules for changing it, the Request a caller sends and how it
// is validated, and the interfaces that adapters for storage and events
// implement. It imports nothing but the standard library.
package mustgather
