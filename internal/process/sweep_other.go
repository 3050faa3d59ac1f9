//go:build !linux

package process

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"syscall"
)

// procAttr puts the command in its own process group. Only Linux has a
// parent-death signal.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func run(cmd *exec.Cmd) error { return cmd.Run() }

// selfOwner fails: without /proc a process cannot be recognised later, so
// gatherings go unmarked.
func selfOwner() (owner, error) { return owner{}, errors.ErrUnsupported }

// sweep does nothing: leftovers of a killed runner stay until removed by
// hand.
func sweep(context.Context, string, *slog.Logger) error { return nil }
