package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// setting is one row of the settings table: an environment variable and
// the configuration field it sets.
type setting struct {
	// Var is the environment variable.
	Var string
	// Field points at the field the variable sets; its type says how the
	// value is read: *string, *int, *uint64, *bool, *time.Duration,
	// *[]string (comma-separated) or *map[string]string (key=value,…).
	// Its value before reading is the default.
	Field any
	// Also points at more fields of the same type that always take the
	// value of Field, set or not, for a setting that more than one
	// package uses.
	Also []any
	// Default, if set, describes the default in the README instead of the
	// field's value, for a field whose zero value stands for a rule that
	// loadConfig applies after reading.
	Default string
	// Help says what the setting means, in the README's words.
	Help string
	// Secret marks a value that must never be logged or echoed in an
	// error. It may also come from the file that Var+"_FILE" names (a
	// mounted Kubernetes Secret); setting both is an error.
	Secret bool
}

// fileVar is the variable that names the file of a secret setting.
func (s setting) fileVar() string { return s.Var + "_FILE" }

// settingError is a variable whose value cannot be read as its type.
type settingError struct {
	Var   string
	Value string
	Want  string // what the value is not, such as "a whole number"
	Err   error  // the parser's error, if any
	// Secret hides Value from Error, and Err, which may quote it.
	Secret bool
}

func (e *settingError) Error() string {
	if e.Secret {
		return fmt.Sprintf("%s: the value (not shown: it is secret) is not %s", e.Var, e.Want)
	}
	return fmt.Sprintf("%s: %q is not %s", e.Var, e.Value, e.Want)
}

func (e *settingError) Unwrap() error { return e.Err }

// read sets the field from the variable, if it is set to more than
// blanks, or, for a secret, from the file its _FILE variable names, and
// then the Also fields from the field. A value that cannot be read leaves
// the default in place.
func (s setting) read(getenv func(string) string) error {
	v, err := s.value(getenv)
	if err == nil {
		err = s.parse(v)
	}
	from := reflect.ValueOf(s.Field).Elem()
	for _, to := range s.Also {
		reflect.ValueOf(to).Elem().Set(from)
	}
	return err
}

// value is the variable's value without surrounding blanks or, for a
// secret whose _FILE variable is set, the file's content without its
// trailing newline, as editors and `kubectl create secret --from-file`
// leave one.
func (s setting) value(getenv func(string) string) (string, error) {
	v := strings.TrimSpace(getenv(s.Var))
	if !s.Secret {
		return v, nil
	}
	file := strings.TrimSpace(getenv(s.fileVar()))
	switch {
	case file == "":
		return v, nil
	case v != "":
		return "", fmt.Errorf("%s and %s are both set; set one", s.Var, s.fileVar())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The path is not secret; os's error names it.
		return "", fmt.Errorf("%s: %w", s.fileVar(), err)
	}
	v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return "", fmt.Errorf("%s: %s is empty", s.fileVar(), file)
	}
	return v, nil
}

func (s setting) parse(v string) error {
	if v == "" {
		return nil
	}
	bad := func(want string, err error) error {
		if s.Secret {
			err = nil
		}
		return &settingError{Var: s.Var, Value: v, Want: want, Err: err, Secret: s.Secret}
	}
	switch f := s.Field.(type) {
	case *string:
		*f = v
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return bad("a whole number", err)
		}
		*f = n
	case *uint64:
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return bad("a whole number", err)
		}
		*f = n
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return bad("true or false", err)
		}
		*f = b
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return bad("a positive duration such as 30s or 10m", err)
		}
		*f = d
	case *[]string:
		*f = splitList(v)
	case *map[string]string:
		m := map[string]string{}
		var errs []error
		for _, p := range splitList(v) {
			k, val, ok := strings.Cut(p, "=")
			if !ok || strings.TrimSpace(k) == "" {
				errs = append(errs, &settingError{Var: s.Var, Value: p, Want: "key=value"})
				continue
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		if len(m) > 0 {
			*f = m
		}
		return errors.Join(errs...)
	default:
		panic(fmt.Sprintf("setting %s: fields of type %T cannot be read", s.Var, s.Field))
	}
	return nil
}

// splitList splits a comma-separated list, dropping blank entries.
func splitList(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// defaultText is the setting's default as the README shows it.
func (s setting) defaultText() string {
	if s.Default != "" {
		return s.Default
	}
	code := func(v string) string { return "`" + v + "`" }
	switch f := s.Field.(type) {
	case *string:
		if *f == "" {
			return "empty"
		}
		return code(*f)
	case *int:
		return code(strconv.Itoa(*f))
	case *uint64:
		return code(strconv.FormatUint(*f, 10))
	case *bool:
		return code(strconv.FormatBool(*f))
	case *time.Duration:
		return code(formatDuration(*f))
	case *[]string:
		if len(*f) == 0 {
			return "empty"
		}
		return code(strings.Join(*f, ","))
	case *map[string]string:
		if len(*f) == 0 {
			return "empty"
		}
	}
	panic(fmt.Sprintf("setting %s: no default text for %T; give Default", s.Var, s.Field))
}

// formatDuration writes d in its largest whole unit, as people write
// settings: 72h, 10m, 90s, 100ms.
func formatDuration(d time.Duration) string {
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if d != 0 && d%u.unit == 0 {
			return strconv.FormatInt(int64(d/u.unit), 10) + u.name
		}
	}
	return d.String()
}

// settingsMarkdown is the README's settings table: one row per setting,
// with its default.
func settingsMarkdown(settings []setting) string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, s := range settings {
		vars, help := "`"+s.Var+"`", s.Help
		if s.Secret {
			vars += " or `" + s.fileVar() + "`"
			help += "; secret: may come from a file, and is kept out of logs and errors (see [Secrets and TLS](#secrets-and-tls))"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", vars, s.defaultText(), help)
	}
	return b.String()
}
