package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzSettings sets one variable of the settings table to any value and
// checks that the configuration is read or refused with an error naming
// that variable, never a panic; that a secret's value appears in no error;
// and that a duration read is positive and shows in the README's form as
// the same duration.
func FuzzSettings(f *testing.F) {
	c := defaultConfig()
	rows := c.settings()
	values := []string{"30s", "0", "-1", "1e9", "99999999999999999999", "true", "a=b,c", " ", "1h1ns", "\x00"}
	for i := range rows {
		f.Add(uint8(i), values[i%len(values)])
	}
	f.Fuzz(func(t *testing.T, row uint8, value string) {
		s := rows[int(row)%len(rows)]
		// A secret's value carries markers, so that an error that echoes
		// it is found however short the value is.
		if s.Secret {
			value = "sEcReT" + value + "tErCeS"
		}
		env := map[string]string{s.Var: value}
		cfg, err := loadConfig([]string{"must-gather-functions"}, func(k string) string { return env[k] })
		if err != nil {
			if se, ok := errors.AsType[*settingError](err); (ok && se.Var != s.Var) || !strings.Contains(err.Error(), s.Var) {
				t.Fatalf("%s=%q: the error does not name it: %v", s.Var, value, err)
			}
			if s.Secret && strings.Contains(err.Error(), "sEcReT") {
				t.Fatalf("%s=%q: the error shows the secret: %v", s.Var, value, err)
			}
			return
		}
		for _, got := range cfg.settings() {
			d, ok := got.Field.(*time.Duration)
			if !ok || got.Var != s.Var || strings.TrimSpace(value) == "" {
				continue
			}
			if *d <= 0 {
				t.Fatalf("%s=%q read as %s", s.Var, value, *d)
			}
			if back, err := time.ParseDuration(formatDuration(*d)); err != nil || back != *d {
				t.Fatalf("%s=%q: %s shows as %q, which reads as %s, %v", s.Var, value, *d, formatDuration(*d), back, err)
			}
		}
	})
}
