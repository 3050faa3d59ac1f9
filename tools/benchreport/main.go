// Command benchreport runs the project's benchmarks and writes
// docs/benchmarks.md with tables and SVG charts, every figure set against a
// baseline measured in the same run. `make bench` runs
//
//	go run ./tools/benchreport -run [-quick]
//
// Each benchmark that reports memory runs in a test process of its own,
// with MGF_BENCH_OUT naming the folder where the benchmarks keep their
// generated trees and write their memory samples (rss/*.tsv); the output
// of each run is kept there as <name>.txt. Without -run it only reads that
// folder and writes the report, so that a report can be made again from
// the figures of an earlier run. Standard library only.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	runBench := fs.Bool("run", false, "run the benchmarks before writing the report")
	quick := fs.Bool("quick", os.Getenv("BENCH_QUICK") != "", "the quick run: smaller sizes, fewer repetitions (default from BENCH_QUICK)")
	out := fs.String("out", "bin/bench", "folder of the benchmarks' output")
	only := fs.String("only", "", "run only the benchmark runs whose name matches this regular expression, keeping the output of the others")
	reportPath := fs.String("report", "docs/benchmarks.md", "the report to write; its charts go into a folder of the same name without .md")
	notes := fs.String("notes", "docs/benchmarks-notes.md", "Markdown appended to the report as its Notes, if the file exists")
	if err := fs.Parse(args); err != nil {
		return err
	}
	abs, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	mode := "full"
	if *quick {
		mode = "quick"
	}
	if *runBench {
		filter, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("-only: %w", err)
		}
		if err := runAll(ctx, plan(*quick), filter, abs, stdout); err != nil {
			return err
		}
		// The quick run reads the sizes of the last `make images`: a
		// build of both platforms takes minutes.
		if filter.MatchString("images") {
			if err := images(ctx, !*quick, abs, stdout); err != nil {
				return err
			}
		}
	}
	results, env, series, err := ReadDir(abs)
	if err != nil {
		return err
	}
	if len(results) == 0 {
		return fmt.Errorf("no benchmark results in %s", abs)
	}
	// The date of the figures: when the last output was written.
	var last time.Time
	txts, _ := filepath.Glob(filepath.Join(abs, "*.txt"))
	for _, p := range txts {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(last) {
			last = fi.ModTime()
		}
	}
	r := Run{Date: last.UTC().Format("2006-01-02 15:04 UTC"), Mode: mode, GoVersion: runtime.Version(), Env: env}
	if b, err := os.ReadFile(*notes); err == nil {
		r.Notes = string(b)
	}
	chartDir := strings.TrimSuffix(*reportPath, ".md")
	rep := Build(r, results, series, filepath.Base(chartDir))
	if err := Write(rep, *reportPath, chartDir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %d charts in %s\n", *reportPath, len(rep.Charts), chartDir)
	return nil
}

// Write writes the report's document to path and its charts, replacing
// those of an earlier report, into chartDir.
func Write(rep Report, path, chartDir string) error {
	old, _ := filepath.Glob(filepath.Join(chartDir, "*.svg"))
	for _, p := range old {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(chartDir, 0o755); err != nil {
		return err
	}
	for name, svg := range rep.Charts {
		if err := os.WriteFile(filepath.Join(chartDir, name), []byte(svg), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(path, []byte(rep.Markdown), 0o644)
}

// benchRun is one `go test -bench` process.
type benchRun struct {
	name      string // of its output file
	pkg       string
	bench     string
	benchtime string
	env       []string
	benchmem  bool
}

// plan lists the runs of a quick or a full bench.
func plan(quick bool) []benchRun {
	sizes := []string{"256", "2048"}
	streamTimes := map[string]string{"256": "3x", "2048": "1x"}
	gzipTime, downloadTime, copyMiB, copyTime, gatherings, starts := "3x", "3s", "1024", "2x", "1000", "10"
	api := "^BenchmarkAPI$"
	if quick {
		sizes = []string{"256"}
		streamTimes["256"] = "1x"
		gzipTime, downloadTime, copyMiB, copyTime, gatherings, starts = "1x", "1s", "256", "1x", "100", "5"
		api = "^BenchmarkAPI$/./^records=(1000|10000)$"
	}
	runs := []benchRun{{name: "gzip", pkg: "./internal/archive", bench: "^BenchmarkGzip$", benchtime: gzipTime}}
	for _, content := range []string{"text", "random"} {
		for _, size := range sizes {
			sub := fmt.Sprintf("^content=%s$/^size=%sMiB$", content, size)
			env := []string{"MGF_BENCH_ARCHIVE_MIB=" + size}
			for _, v := range []string{"pipeline", "raw"} {
				runs = append(runs, benchRun{name: fmt.Sprintf("upload-%s-%s-%s", content, size, v), pkg: "./internal/s3store",
					bench: "^BenchmarkArchiveStream$/" + sub + "/^" + v + "$", benchtime: streamTimes[size], env: env})
			}
			for _, v := range []string{"data", "raw-getobject"} {
				runs = append(runs, benchRun{name: fmt.Sprintf("download-%s-%s-%s", content, size, v), pkg: "./functions/api",
					bench: "^BenchmarkDownload$/" + sub + "/^" + v + "$", benchtime: downloadTime, env: env})
			}
		}
	}
	for _, v := range []string{"on", "off"} {
		runs = append(runs, benchRun{name: "redact-" + v, pkg: "./internal/redact",
			bench: "^BenchmarkRedactStream$/^content=text$/^size=256MiB$/^" + v + "$", benchtime: streamTimes["256"]})
	}
	for _, v := range []string{"exec-pipeline", "raw-putobject"} {
		runs = append(runs, benchRun{name: "exec-" + v, pkg: "./internal/kubegather", bench: "^BenchmarkCopyFromExec$/^" + v + "$",
			benchtime: copyTime, env: []string{"MGF_BENCH_COPY_MIB=" + copyMiB}})
	}
	runs = append(runs,
		benchRun{name: "eventpath", pkg: "./cmd/must-gather-functions", bench: "^BenchmarkEventPath$", benchtime: "1x", env: []string{"MGF_BENCH_GATHERINGS=" + gatherings}},
		benchRun{name: "coldstart", pkg: "./cmd/must-gather-functions", bench: "^BenchmarkColdStart$", benchtime: "1x", env: []string{"MGF_BENCH_STARTS=" + starts}},
		benchRun{name: "api", pkg: "./functions/api", bench: api, benchtime: "1s", benchmem: true},
	)
	if !quick {
		runs = append(runs,
			benchRun{name: "api-downloads", pkg: "./functions/api", bench: "^BenchmarkAPIDownloads$", benchtime: "1s", benchmem: true},
			benchRun{name: "view-memory", pkg: "./internal/view", bench: "^BenchmarkViewMemory$", benchtime: "1x"},
			benchRun{name: "jsstore", pkg: "./internal/jsstore", bench: ".", benchtime: "1s", benchmem: true},
			benchRun{name: "notifier", pkg: "./functions/notifier", bench: ".", benchtime: "1s", benchmem: true},
			benchRun{name: "presign", pkg: "./internal/s3store", bench: "^BenchmarkPresignGet$", benchtime: "1s", benchmem: true},
			benchRun{name: "sinks", pkg: "./functions/notifier/sinks", bench: "^BenchmarkDelivery$", benchtime: "1000x", benchmem: true},
		)
	}
	return runs
}

// runAll builds each package's test binary once and runs the benchmarks,
// each in a process of its own, with their output in out/<name>.txt. It
// starts from an empty out, unless only some runs are asked for (-only):
// then their output replaces theirs of the earlier run and the rest is
// kept. It removes the generated trees at the end.
func runAll(ctx context.Context, runs []benchRun, filter *regexp.Regexp, out string, stdout io.Writer) error {
	if filter.String() == "" {
		if err := os.RemoveAll(out); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(out, "bin"), 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Join(out, "trees"))
	built := map[string]string{}
	for _, r := range runs {
		if !filter.MatchString(r.name) {
			continue
		}
		if _, err := os.Stat(r.pkg); err != nil {
			fmt.Fprintf(stdout, "== %s: skipped, no package %s\n", r.name, r.pkg)
			continue
		}
		bin, ok := built[r.pkg]
		if !ok {
			bin = filepath.Join(out, "bin", strings.NewReplacer("./", "", "/", "_").Replace(r.pkg)+".test")
			fmt.Fprintf(stdout, "== building %s\n", r.pkg)
			cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, r.pkg)
			cmd.Stdout, cmd.Stderr = stdout, stdout
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("build %s: %w", r.pkg, err)
			}
			built[r.pkg] = bin
		}
		fmt.Fprintf(stdout, "== %s: %s -bench '%s' -benchtime %s %s\n", r.name, r.pkg, r.bench, r.benchtime, strings.Join(r.env, " "))
		f, err := os.Create(filepath.Join(out, r.name+".txt"))
		if err != nil {
			return err
		}
		args := []string{"-test.run=^$", "-test.bench=" + r.bench, "-test.benchtime=" + r.benchtime, "-test.timeout=60m"}
		if r.benchmem {
			args = append(args, "-test.benchmem")
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = r.pkg
		cmd.Env = append(append(os.Environ(), "MGF_BENCH_OUT="+out), r.env...)
		w := io.MultiWriter(f, stdout)
		cmd.Stdout, cmd.Stderr = w, w
		err = cmd.Run()
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
	}
	return nil
}
