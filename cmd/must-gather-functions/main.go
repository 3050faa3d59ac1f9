// Command must-gather-functions runs the functions of must-gather-functions:
// the HTTP API, the runner and the recorder, all in one process or each in
// its own. See README.md for the settings. With a command (gather, get,
// list, download) as its first argument it is instead a client of the API.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/kubev2v/must-gather-functions/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && cli.Is(os.Args[1]) {
		code := cli.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if cfg, err := loadConfig(os.Args, os.Getenv); err == nil {
		// client-go logs through klog, a global: route it into our log
		// once, before anything runs (run itself changes no globals).
		klog.SetSlogLogger(newLogger(cfg, os.Stderr).With("component", "client-go"))
	}
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "must-gather-functions:", err)
		os.Exit(1)
	}
}
