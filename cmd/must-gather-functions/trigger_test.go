package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func TestTheTriggerIsRequestedByThePodsServiceAccount(t *testing.T) {
	jwt := func(payload string) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(payload)) + ".c2ln"
	}
	for _, tc := range []struct{ name, token, want string }{
		{"a ServiceAccount token names its user", jwt(`{"sub":"system:serviceaccount:mtv:must-gather-functions-trigger"}`), "system:serviceaccount:mtv:must-gather-functions-trigger"},
		{"another subject is not a ServiceAccount", jwt(`{"sub":"alice"}`), ""},
		{"a token that is no JWT names nobody", "opaque", ""},
		{"no token outside a pod", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token")
			if tc.token != "" {
				if err := os.WriteFile(path, []byte(tc.token+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := podServiceAccount(path); got != tc.want {
				t.Errorf("podServiceAccount = %q, want %q", got, tc.want)
			}
		})
	}
}
