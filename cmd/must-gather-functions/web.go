package main

import (
	"github.com/kubev2v/must-gather-functions/functions/web"
)

// newWeb is the web page the API serves at /.
func newWeb(cfg config) (*web.Handler, error) {
	return web.New(web.Config{})
}
