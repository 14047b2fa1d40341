package caddymodule_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestCaddyfileAdapt compares `caddy adapt` output with the golden files in
// testdata/caddyfile_adapt: a Caddyfile, a line of ten dashes, then the
// expected JSON (or, for a file whose name starts with "error_", the
// expected error text).
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	split := regexp.MustCompile(`(?m)^----------$`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			parts := split.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), 2)
			if len(parts) != 2 {
				t.Fatalf("%s lacks the dashes separator", f)
			}
			input, want := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			if strings.HasPrefix(filepath.Base(f), "error_") {
				_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("adapting %s: error %v, want one containing %q", f, err, want)
				}
				return
			}
			if !caddytest.CompareAdapt(t, f, input, "caddyfile", want) {
				t.Errorf("adapt output of %s differs from its golden JSON", f)
			}
		})
	}
}
