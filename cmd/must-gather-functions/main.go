// Command must-gather-functions runs the functions of must-gather-functions:
// the HTTP API, the runner and the recorder, all in one process or each in
// its own. See README.md for the settings.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "must-gather-functions:", err)
		os.Exit(1)
	}
}
