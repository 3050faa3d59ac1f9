// Command etcd is etcd's server at the version that this module pins.
//
// It is a module of its own because `go install
// go.etcd.io/etcd/server/v3@version` fails (etcd's go.mod has replace
// directives), and because in the parent module Kubernetes' requirements
// would raise etcd to the version that kube-apiserver's client needs.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
