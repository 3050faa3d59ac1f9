package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Result is one benchmark's figures: the median of each metric over the
// times it ran.
type Result struct {
	Name    string             // without the -GOMAXPROCS suffix
	Pkg     string             // import path, from the pkg: line before it
	Runs    int                // how many result lines were merged
	N       float64            // iterations (the median of the runs')
	Metrics map[string]float64 // by unit: ns/op, MB/s, p50-ms, ...
}

// Env is what the bench output says about the machine.
type Env struct {
	GOOS, GOARCH, CPU string
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// Parse reads `go test -bench` output, plain or as test2json (go test
// -json) events, and returns its results in the order first seen, each
// the median of its repeated runs.
func Parse(r io.Reader) ([]Result, Env, error) {
	lines, err := outputLines(r)
	if err != nil {
		return nil, Env{}, err
	}
	var env Env
	var order []string
	runs := map[string][]map[string]float64{}
	iters := map[string][]float64{}
	pkgs := map[string]string{}
	pkg := ""
	for _, line := range lines {
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "pkg: "))
		case strings.HasPrefix(line, "goos: "):
			env.GOOS = strings.TrimSpace(strings.TrimPrefix(line, "goos: "))
		case strings.HasPrefix(line, "goarch: "):
			env.GOARCH = strings.TrimSpace(strings.TrimPrefix(line, "goarch: "))
		case strings.HasPrefix(line, "cpu: "):
			env.CPU = strings.TrimSpace(strings.TrimPrefix(line, "cpu: "))
		case strings.HasPrefix(line, "Benchmark"):
			name, n, metrics, ok := parseResult(line)
			if !ok {
				continue
			}
			if _, seen := runs[name]; !seen {
				order = append(order, name)
				pkgs[name] = pkg
			}
			runs[name] = append(runs[name], metrics)
			iters[name] = append(iters[name], n)
		}
	}
	results := make([]Result, 0, len(order))
	for _, name := range order {
		res := Result{Name: name, Pkg: pkgs[name], Runs: len(runs[name]), N: median(iters[name]), Metrics: map[string]float64{}}
		units := map[string][]float64{}
		for _, m := range runs[name] {
			for u, v := range m {
				units[u] = append(units[u], v)
			}
		}
		for u, vs := range units {
			res.Metrics[u] = median(vs)
		}
		results = append(results, res)
	}
	return results, env, nil
}

// parseResult reads a line such as
//
//	BenchmarkX/y-2   	  3	 123 ns/op	 45.6 MB/s	 7.0 peak-RSS-MiB
//
// A line without an iteration count (a benchmark's name printed before
// its log, or a SKIP) is not a result.
func parseResult(line string) (string, float64, map[string]float64, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 {
		return "", 0, nil, false
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return "", 0, nil, false
	}
	metrics := map[string]float64{}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return "", 0, nil, false
		}
		metrics[f[i+1]] = v
	}
	return procsSuffix.ReplaceAllString(f[0], ""), float64(n), metrics, true
}

// outputLines returns the lines of plain output, or of the output events
// of test2json, whose events may split a line.
func outputLines(r io.Reader) ([]string, error) {
	br := bufio.NewReader(r)
	var text strings.Builder
	for {
		line, err := br.ReadString('\n')
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "{") {
			var ev struct{ Action, Output string }
			if json.Unmarshal([]byte(t), &ev) == nil {
				if ev.Action == "output" {
					text.WriteString(ev.Output)
				}
				line = ""
			}
		}
		text.WriteString(line)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return strings.Split(text.String(), "\n"), nil
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Series is the resident memory of the processes of one benchmark over
// time, as archivetest.RSSRecorder writes it.
type Series struct {
	Bench  string
	Points map[string][][2]float64 // by process: seconds, MiB
}

// ParseRSS reads one file of RSS samples.
func ParseRSS(r io.Reader) (Series, error) {
	s := Series{Points: map[string][][2]float64{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "# "); ok {
			s.Bench = name
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[0] == "ms" {
			continue
		}
		ms, err1 := strconv.ParseFloat(f[0], 64)
		kib, err2 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil {
			return s, fmt.Errorf("bad sample %q", line)
		}
		s.Points[f[1]] = append(s.Points[f[1]], [2]float64{ms / 1000, kib / 1024})
	}
	if s.Bench == "" {
		return s, fmt.Errorf("no benchmark name")
	}
	return s, sc.Err()
}

// ReadDir reads every *.txt bench output and rss/*.tsv sample file in dir.
func ReadDir(dir string) ([]Result, Env, []Series, error) {
	var results []Result
	var env Env
	txts, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
	sort.Strings(txts)
	for _, p := range txts {
		f, err := os.Open(p)
		if err != nil {
			return nil, env, nil, err
		}
		rs, e, err := Parse(f)
		f.Close()
		if err != nil {
			return nil, env, nil, fmt.Errorf("%s: %w", p, err)
		}
		results = append(results, rs...)
		if e.CPU != "" {
			env = e
		}
	}
	tsvs, _ := filepath.Glob(filepath.Join(dir, "rss", "*.tsv"))
	sort.Strings(tsvs)
	var series []Series
	for _, p := range tsvs {
		f, err := os.Open(p)
		if err != nil {
			return nil, env, nil, err
		}
		s, err := ParseRSS(f)
		f.Close()
		if err != nil {
			return nil, env, nil, fmt.Errorf("%s: %w", p, err)
		}
		series = append(series, s)
	}
	return results, env, series, nil
}
