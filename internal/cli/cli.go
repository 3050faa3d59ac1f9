// Package cli is the command line of the must-gather-functions binary for
// people and scripts: gather, get, list and download, on top of the Go
// client, in the spirit of `oc adm must-gather`.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubev2v/must-gather-functions/client"
)

// Exit codes, for scripts.
const (
	ExitOK          = 0 // done; a gathering that was waited for completed
	ExitFailed      = 1 // the gathering ended in error, or anything not below
	ExitUsage       = 2 // bad arguments, or a request the API refused as invalid (400)
	ExitNotFound    = 3 // no such gathering, or its archive is gone (404)
	ExitDenied      = 4 // no or a bad token (401), or no rights (403)
	ExitUnavailable = 5 // the service cannot be reached, is unavailable (502, 503, 504) or rate-limits (429)
	ExitNotReady    = 6 // the gathering is not in the state the command needs: no archive yet (409), ended (cancel), not ended or changed (delete)
)

// commands are the subcommands, each with its one-line help.
var commands = map[string]string{
	"gather":   "start a gathering; --wait until it ends, --download its archive",
	"get":      "show a gathering, by id or custom-name, as JSON",
	"list":     "list gatherings",
	"download": "save the archive of a completed gathering",
	"cancel":   "cancel a gathering that has not ended (what it gathered is kept)",
	"delete":   "delete a gathering that has ended, with its archive",
}

// run runs the subcommand name.
func run(ctx context.Context, e *env, name string, args []string) error {
	switch name {
	case "gather":
		return gather(ctx, e, args)
	case "get":
		return get(ctx, e, args)
	case "list":
		return list(ctx, e, args)
	case "cancel":
		return cancel(ctx, e, args)
	case "delete":
		return deleteEnded(ctx, e, args)
	}
	return download(ctx, e, args)
}

// Is tells whether name is a subcommand of the CLI rather than a list of
// functions to run.
func Is(name string) bool {
	_, ok := commands[name]
	return ok
}

// env is what a command works with.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	progress       *progress
	conn           connFlags
}

// usageError is a mistake in the arguments.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// gatheringError is a gathering that ended in error.
type gatheringError struct{ g *client.Gathering }

func (e *gatheringError) Error() string {
	return fmt.Sprintf("gathering %d ended in %s", e.g.ID, e.g.Status)
}

// Main runs the subcommand args[0] with the rest of args and returns the
// exit code.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || !Is(args[0]) {
		fmt.Fprint(stderr, usage())
		return ExitUsage
	}
	e := &env{getenv: getenv, stdout: stdout, stderr: stderr, progress: newProgress(stderr)}
	err := run(ctx, e, args[0], args[1:])
	e.progress.done()
	if err == nil {
		return ExitOK
	}
	if !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "must-gather-functions %s: %v\n", args[0], err)
	}
	return exitCode(err)
}

// exitCode is the exit code that tells scripts what err was.
func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK // asked for
	}
	if _, ok := errors.AsType[*usageError](err); ok {
		return ExitUsage
	}
	switch {
	case errors.Is(err, client.ErrInvalid):
		return ExitUsage
	case errors.Is(err, client.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, client.ErrUnauthorized), errors.Is(err, client.ErrForbidden):
		return ExitDenied
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrRateLimited):
		return ExitUnavailable
	case errors.Is(err, client.ErrConflict), errors.Is(err, client.ErrNotEnded), errors.Is(err, client.ErrChanged):
		return ExitNotReady
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return ExitUnavailable
	}
	return ExitFailed
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: must-gather-functions <command> [flags]\n\ncommands:\n")
	for _, name := range []string{"gather", "get", "list", "download", "cancel", "delete"} {
		fmt.Fprintf(&b, "  %-9s %s\n", name, commands[name])
	}
	b.WriteString("\n`must-gather-functions <command> -h` lists a command's flags. Without a command, or with\n" +
		"a list of functions (api,runner,...), the binary runs the service.\n\n" + exitCodesHelp)
	return b.String()
}

const exitCodesHelp = `exit codes: 0 done; 1 the gathering ended in error, or another failure; 2 usage, or a request
the API refused (400); 3 not found; 4 unauthorized or forbidden; 5 service unavailable,
unreachable or rate-limiting; 6 the gathering has no archive yet, has ended (cancel), or has not
ended or changed meanwhile (delete)
`

// flags makes the flag set of a command, with the connection flags.
func (e *env) flags(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: must-gather-functions %s %s\n\n%s\n\nflags:\n", name, args, commands[name])
		fs.PrintDefaults()
		fmt.Fprint(e.stderr, "\n"+exitCodesHelp)
	}
	e.conn.register(fs)
	return fs
}

// parse parses args with fs, taking flags before and after the positional
// arguments, of which it wants exactly want.
func parse(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != want {
		fs.Usage()
		return nil, &usageError{fmt.Sprintf("want %d argument(s), got %d", want, len(pos))}
	}
	return pos, nil
}

func gather(ctx context.Context, e *env, args []string) error {
	var r client.Request
	var wait, dl bool
	var output string
	fs := e.flags("gather", "[flags]")
	fs.StringVar(&r.Plan, "plan", "", "Forklift `plan` to gather (targeted gathering)")
	fs.StringVar(&r.Namespace, "namespace", "", "`namespace` of the plan")
	fs.StringVar(&r.VM, "vm", "", "`id` of a VM of the plan")
	fs.StringVar(&r.Image, "image", "", "must-gather `image` (or a comma-separated list)")
	fs.StringVar(&r.Timeout, "timeout", "", "how long the gathering may run (Go `duration`)")
	fs.StringVar(&r.Command, "command", "", "`command` to run in the image; not with --plan")
	fs.StringVar(&r.CustomName, "name", "", "custom-`name` to find the gathering by")
	fs.StringVar(&r.Server, "server", "", "target `cluster` as the service names it; empty is its default cluster")
	fs.StringVar(&r.ImageStream, "image-stream", "", "OpenShift image stream tag `namespace/name:tag` whose image to run, as oc's --image-stream")
	fs.StringVar(&r.NodeName, "node-name", "", "`node` to run the gather pod on, as oc's --node-name")
	fs.StringVar(&r.NodeSelector, "node-selector", "", "run one pod per Ready node this label `selector` matches, as oc's --node-selector; not with --node-name")
	fs.BoolVar(&r.HostNetwork, "host-network", false, "run the pods in the host's network, as oc's --host-network")
	fs.BoolFunc("redact", "redact secrets from the archive (--redact=false: not even when the service redacts by default); without it, the service's default", func(s string) error {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		r.Redact = &b
		return nil
	})
	fs.StringVar(&r.SourceDir, "source-dir", "", "`folder` in the pod the gathered output is copied from (default /must-gather/), as oc's --source-dir")
	fs.StringVar(&r.Since, "since", "", "only logs newer than this relative `duration` (5s, 2m, 3h), as oc's --since")
	fs.StringVar(&r.SinceTime, "since-time", "", "only logs after this RFC3339 `time`, as oc's --since-time")
	fs.BoolVar(&wait, "wait", false, "wait until the gathering ends; exit 1 if it ends in error")
	fs.BoolVar(&dl, "download", false, "wait, then save the archive (with an error, what was gathered)")
	fs.StringVar(&output, "output", "", "`file` for --download (default: the archive's name; - for stdout)")
	fs.StringVar(&output, "o", "", "short for --output")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	if output != "" && !dl {
		return &usageError{"--output goes with --download"}
	}
	c, err := e.conn.client(e.getenv)
	if err != nil {
		return err
	}
	g, err := c.Create(ctx, r)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, g.ID)
	if !wait && !dl {
		return nil
	}
	g, err = e.wait(ctx, c, g.ID)
	if err != nil {
		return err
	}
	var failed error
	if g.Status != client.StatusCompleted {
		failed = &gatheringError{g}
		e.progress.note(lastLines(g.ExecOutput, 10))
	}
	if dl && (failed == nil || g.ArchiveSize > 0) {
		if err := e.save(ctx, c, g, output, failed != nil); err != nil {
			return errors.Join(failed, err)
		}
	}
	return failed
}

// wait waits for gathering id to end, with a progress line.
func (e *env) wait(ctx context.Context, c *client.Client, id int64) (*client.Gathering, error) {
	start := time.Now()
	return c.Wait(ctx, strconv.FormatInt(id, 10), client.WaitOptions{Progress: func(g *client.Gathering) {
		line := fmt.Sprintf("gathering %d: %s (%s)", g.ID, g.Status, time.Since(start).Round(time.Second))
		if out := lastLines(g.ExecOutput, 1); out != "" && !g.Status.Final() {
			line += ": " + out
		}
		e.progress.update(string(g.Status), line)
	}})
}

// lastLines is the last n non-empty lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func get(ctx context.Context, e *env, args []string) error {
	_, g, err := e.gathering(ctx, e.flags("get", "<id|custom-name> [flags]"), args)
	if err != nil {
		return err
	}
	return e.printJSON(g)
}

// gathering parses args with fs, wanting the one argument that names a
// gathering, and gets that gathering.
func (e *env) gathering(ctx context.Context, fs *flag.FlagSet, args []string) (*client.Client, *client.Gathering, error) {
	pos, err := parse(fs, args, 1)
	if err != nil {
		return nil, nil, err
	}
	c, err := e.conn.client(e.getenv)
	if err != nil {
		return nil, nil, err
	}
	g, err := c.Get(ctx, pos[0])
	return c, g, err
}

// printJSON writes v to stdout as indented JSON.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cancel cancels a gathering and prints it as the API answered: ended, if
// it was new, or still in progress while its runner stops it.
func cancel(ctx context.Context, e *env, args []string) error {
	pos, err := parse(e.flags("cancel", "<id|custom-name> [flags]"), args, 1)
	if err != nil {
		return err
	}
	c, err := e.conn.client(e.getenv)
	if err != nil {
		return err
	}
	g, err := c.Cancel(ctx, pos[0])
	if err != nil {
		return err
	}
	return e.printJSON(g)
}

// deleteEnded deletes a gathering that has ended, as the client's Delete
// does: never one that has not ended.
func deleteEnded(ctx context.Context, e *env, args []string) error {
	pos, err := parse(e.flags("delete", "<id|custom-name> [flags]"), args, 1)
	if err != nil {
		return err
	}
	c, err := e.conn.client(e.getenv)
	if err != nil {
		return err
	}
	return c.Delete(ctx, pos[0])
}

func list(ctx context.Context, e *env, args []string) error {
	var o client.ListOptions
	var status string
	var asJSON bool
	fs := e.flags("list", "[flags]")
	fs.StringVar(&o.CustomName, "name", "", "only gatherings with this custom-`name`")
	fs.StringVar(&status, "status", "", "only gatherings in this `status` (new, inprogress, completed, error)")
	fs.IntVar(&o.Limit, "limit", 0, "only the newest `n`, or with --after the n lowest ids above it")
	fs.Int64Var(&o.After, "after", 0, "only ids above `id`, a cursor: --after 0 --limit 100, then --after <last id> --limit 100 pages through every gathering")
	fs.BoolVar(&asJSON, "json", false, "print the gatherings as a JSON array")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { o.Paged = o.Paged || f.Name == "after" })
	o.Status = client.Status(status)
	c, err := e.conn.client(e.getenv)
	if err != nil {
		return err
	}
	gs, err := c.List(ctx, o)
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(gs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tCREATED\tSIZE\tNAME")
	for _, g := range gs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", g.ID, g.Status, g.CreatedAt.Local().Format(time.DateTime), g.ArchiveSize, g.CustomName)
	}
	return tw.Flush()
}

func download(ctx context.Context, e *env, args []string) error {
	var output string
	var partial bool
	fs := e.flags("download", "<id|custom-name> [flags]")
	fs.StringVar(&output, "output", "", "`file` to write (default: the archive's name; - for stdout)")
	fs.StringVar(&output, "o", "", "short for --output")
	fs.BoolVar(&partial, "partial", false, "download what a gathering that ended in error gathered")
	c, g, err := e.gathering(ctx, fs, args)
	if err != nil {
		return err
	}
	return e.save(ctx, c, g, output, partial)
}

// save downloads g's archive into output (its archive-name when empty,
// stdout for "-"), with a progress line; a download that fails leaves no
// file behind.
func (e *env) save(ctx context.Context, c *client.Client, g *client.Gathering, output string, partial bool) error {
	if output == "" {
		output = g.ArchiveName
		if output == "" {
			output = fmt.Sprintf("must-gather-%d.tar.gz", g.ID)
		}
	}
	var w io.Writer = e.stdout
	var f *os.File
	if output != "-" {
		var err error
		if f, err = os.Create(output); err != nil {
			return err
		}
		w = f
	}
	e.progress.update("downloading", fmt.Sprintf("gathering %d: downloading to %s", g.ID, output))
	start := time.Now()
	n, err := c.Download(ctx, strconv.FormatInt(g.ID, 10), w, client.DownloadOptions{Partial: partial, Progress: func(written, total int64) {
		e.progress.update("", downloadLine(g.ID, written, total, time.Since(start)))
	}})
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(output)
		}
	}
	if err != nil {
		return err
	}
	e.progress.update("saved", fmt.Sprintf("gathering %d: saved %s (%s)", g.ID, output, size(n)))
	return nil
}

func downloadLine(id int64, written, total int64, took time.Duration) string {
	line := fmt.Sprintf("gathering %d: downloading %s", id, size(written))
	if total > 0 {
		line += fmt.Sprintf(" of %s (%d%%)", size(total), written*100/total)
	}
	if s := took.Seconds(); s > 0.5 {
		line += fmt.Sprintf(", %s/s", size(int64(float64(written)/s)))
	}
	return line
}

// size is n bytes for a person to read.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
