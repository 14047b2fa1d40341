package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cliResult is what one run of `caddy echo3d-webhooks` produced.
type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs the built Caddy binary's echo3d-webhooks command with env
// added to a copy of this process's environment (without CADDY_ADMIN).
func runCLI(t *testing.T, bin string, env []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"echo3d-webhooks"}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CADDY_ADMIN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running %v: %v", args, err)
	}
	return cliResult{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

// TestCLI drives every subcommand of `caddy echo3d-webhooks` (the built
// binary) against a real Caddy admin endpoint: table and JSON output, the
// admin address from --address, --config and $CADDY_ADMIN, error messages
// on stderr and the exit status (0 success, 1 failed request, 2 usage).
func TestCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Caddy binary")
	}
	bin := buildCaddy(t)
	rc := newReceiver(t)
	upstream := httptest.NewServer(http.NotFoundHandler())
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, siteConfig(`
		storage memory
		retry 50ms
		allow_private_targets
		trusted_ca_file `+writeCA(t, rc), upstream.Listener.Addr().String()))

	addr := fmt.Sprintf("localhost:%d", adminPort)
	caddyfile := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte("{\n\tadmin "+addr+"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const key = "cli-key-0001"
	var hook webhook
	var deliveryID string

	// Arguments may name {hook} (the webhook created by "add"), {delivery}
	// (the delivery listed by "deliveries"), {receiver} and {key}; every
	// case but those with own gets --address.
	cases := []struct {
		name   string
		args   []string
		own    bool     // the case picks the admin address itself
		env    []string // added to the environment
		before func(t *testing.T)
		code   int
		stdout []string // substrings, in order
		stderr []string
		check  func(t *testing.T, r cliResult)
	}{
		{name: "list empty", args: []string{"list"}, stderr: []string{"No webhooks."}},
		{name: "add missing flags", args: []string{"add", "--name", "n"},
			code: 2, stderr: []string{"error: missing --url, --api-key, --trigger", "Run 'caddy echo3d-webhooks add --help'"}},
		{name: "add unknown trigger", args: []string{"add", "--name", "n", "--url", "{receiver}", "--api-key", "{key}", "--trigger", "Uploaded"},
			code: 1, stderr: []string{`error: triggers: "Uploaded" is not a trigger name`}},
		{name: "add http url", args: []string{"add", "--name", "n", "--url", "http://example.com/h", "--api-key", "{key}", "--trigger", "Upload"},
			code: 1, stderr: []string{"error: url: "}},
		{name: "add", args: []string{"add", "--name", "cli hook", "--url", "{receiver}", "--api-key", "{key}",
			"--trigger", "Upload,Processed", "--trigger", "Delete", "--description", "from the CLI", "--json"},
			stdout: []string{`"secret":"whsec_`}, check: func(t *testing.T, r cliResult) {
				if err := json.Unmarshal([]byte(r.stdout), &hook); err != nil || hook.ID == "" {
					t.Fatalf("add --json printed %q: %v", r.stdout, err)
				}
				if got := strings.Join(hook.Triggers, ","); got != "Upload,Processed,Delete" {
					t.Errorf("triggers %s, want Upload,Processed,Delete", got)
				}
			}},
		{name: "list table", args: []string{"list"},
			stdout: []string{"ID", "NAME", "API KEY", "TRIGGERS", "ENABLED", "URL\n", "{hook}", "cli hook", "{key}", "Upload,Processed,Delete", "yes", "{receiver}"},
			check: func(t *testing.T, r cliResult) {
				if strings.Contains(r.stdout, "whsec_") {
					t.Error("list shows a secret")
				}
			}},
		{name: "list other collection", args: []string{"list", "--api-key", "other"},
			stderr: []string{"No webhooks."}, check: func(t *testing.T, r cliResult) {
				if r.stdout != "" {
					t.Errorf("stdout %q, want nothing", r.stdout)
				}
			}},
		{name: "list json", args: []string{"list", "--api-key", "{key}", "--json"},
			check: func(t *testing.T, r cliResult) {
				var hooks []webhook
				if err := json.Unmarshal([]byte(r.stdout), &hooks); err != nil || len(hooks) != 1 || hooks[0].ID != hook.ID {
					t.Errorf("list --json printed %q (%v), want the one webhook", r.stdout, err)
				}
			}},
		{name: "get", args: []string{"get", "{hook}"},
			stdout: []string{"ID:", "{hook}", "Name:", "cli hook", "Description:", "from the CLI", "API key:", "{key}",
				"Triggers:", "Upload, Processed, Delete", "Enabled:", "yes", "Secret:", "whsec_"}},
		{name: "get unknown", args: []string{"get", "wh_missing"}, code: 1, stderr: []string{"error: webhook wh_missing not found\n"}},
		{name: "get without id", args: []string{"get"}, code: 2, stderr: []string{"error: missing argument <webhook-id>"}},
		{name: "get with two ids", args: []string{"get", "a", "b"}, code: 2, stderr: []string{`error: unexpected argument "b"`}},
		{name: "test", args: []string{"test", "{hook}", "--event", "Upload"},
			stdout: []string{"Queued test delivery msg_", "to webhook {hook}"}, check: func(t *testing.T, r cliResult) {
				got := rc.waitFor(t, 1, waitWithin)
				verify(t, hook.Secret, got[0])
				if want := `{"event":"Upload","apiKey":"` + key + `","entryIds":["test-entry"],"metadataKeys":[],"metadataValues":[]}`; string(got[0].Body) != want {
					t.Errorf("test delivery %s, want %s", got[0].Body, want)
				}
			}},
		{name: "test unknown event", args: []string{"test", "{hook}", "--event", "Nope"},
			code: 1, stderr: []string{`error: event: "Nope" is not a trigger name`}},
		{name: "deliveries", args: []string{"deliveries", "{hook}"}, before: func(t *testing.T) { waitForAttempts(t, hook.ID, 1) },
			stdout: []string{"TIME", "DELIVERY", "ATTEMPT", "STATUS", "DURATION", "ERROR\n", "msg_", " 1 ", "200"},
			check: func(t *testing.T, r cliResult) {
				deliveryID = strings.Fields(strings.Split(r.stdout, "\n")[1])[2]
			}},
		{name: "deliveries bad limit", args: []string{"deliveries", "{hook}", "--limit", "0"},
			code: 2, stderr: []string{"error: --limit must be from 1 to 500, got 0"}},
		{name: "deliveries limit not a number", args: []string{"deliveries", "{hook}", "--limit", "x"},
			code: 2, stderr: []string{`error: invalid argument "x" for "--limit"`}},
		{name: "redeliver", args: []string{"redeliver", "{delivery}"},
			stdout: []string{"Queued delivery msg_", "again the event of {delivery}", "{hook}"}, check: func(t *testing.T, r cliResult) {
				for _, d := range rc.waitFor(t, 2, waitWithin) {
					verify(t, hook.Secret, d)
				}
			}},
		{name: "redeliver unknown", args: []string{"redeliver", "msg_missing"}, code: 1, stderr: []string{"error: delivery msg_missing not found"}},
		{name: "deliveries paged", args: []string{"deliveries", "{hook}", "--limit", "1"}, before: func(t *testing.T) { waitForAttempts(t, hook.ID, 2) },
			stdout: []string{"msg_"}, stderr: []string{"More: caddy echo3d-webhooks deliveries {hook} --cursor "}},
		{name: "deliveries json", args: []string{"deliveries", "{hook}", "--json"}, stdout: []string{`{"attempts":[{"deliveryId":"msg_`}},
		{name: "rotate secret", args: []string{"rotate-secret", "{hook}", "--overlap", "1h"},
			stdout: []string{"Secret:", "whsec_"}, check: func(t *testing.T, r cliResult) {
				if strings.Contains(r.stdout, hook.Secret) {
					t.Error("rotate-secret kept the old secret")
				}
			}},
		{name: "rotate bad overlap", args: []string{"rotate-secret", "{hook}", "--overlap", "1y"}, code: 1, stderr: []string{"error: overlap: "}},
		{name: "address from --config", args: []string{"list", "--config", caddyfile, "--adapter", "caddyfile"}, own: true, stdout: []string{"{hook}"}},
		{name: "address from CADDY_ADMIN", args: []string{"list"}, own: true, env: []string{"CADDY_ADMIN=" + addr}, stdout: []string{"{hook}"}},
		{name: "delete", args: []string{"delete", "{hook}"}, stdout: []string{"Deleted webhook {hook}."}},
		{name: "delete again", args: []string{"delete", "{hook}"}, code: 1, stderr: []string{"error: webhook {hook} not found"}},
		{name: "unreachable", args: []string{"list", "--address", fmt.Sprintf("localhost:%d", freePort(t))}, own: true,
			code: 1, stderr: []string{"error: cannot reach Caddy's admin API at localhost:", "connection refused"}},
		{name: "no subcommand", own: true, code: 2, stderr: []string{"error: a subcommand is required"}},
		{name: "unknown subcommand", args: []string{"lst"}, own: true, code: 2, stderr: []string{`error: unknown subcommand "lst"; did you mean "list"?`}},
		{name: "unknown flag", args: []string{"list", "--bogus"}, own: true,
			code: 2, stderr: []string{"error: unknown flag: --bogus", "Run 'caddy echo3d-webhooks list --help' for usage."}},
		{name: "help", args: []string{"deliveries", "--help"}, own: true,
			stdout: []string{"Lists the HTTP attempts", "Usage:", "caddy echo3d-webhooks deliveries <webhook-id>", "--limit", "--cursor", "--address"}},
	}
	for _, tc := range cases {
		ok := t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before(t)
			}
			fill := strings.NewReplacer("{hook}", hook.ID, "{delivery}", deliveryID, "{receiver}", rc.url("/cli"), "{key}", key).Replace
			var args []string
			for _, a := range tc.args {
				args = append(args, fill(a))
			}
			if !tc.own {
				args = append(args, "--address", addr)
			}
			r := runCLI(t, bin, tc.env, args...)
			if r.code != tc.code {
				t.Fatalf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			if tc.code != 0 && r.stdout != "" {
				t.Errorf("failure printed to stdout: %q", r.stdout)
			}
			for _, out := range []struct {
				name, got string
				want      []string
			}{{"stdout", r.stdout, tc.stdout}, {"stderr", r.stderr, tc.stderr}} {
				want := make([]string, len(out.want))
				for i, w := range out.want {
					want[i] = fill(w)
				}
				containsInOrder(t, out.name, out.got, want)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
		if !ok && hook.ID == "" {
			t.FailNow() // later cases need the webhook
		}
	}
}

// containsInOrder checks that out holds every string of want, in order.
func containsInOrder(t *testing.T, name, out string, want []string) {
	t.Helper()
	rest := out
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Errorf("%s lacks %q (in order):\n%s", name, w, out)
			return
		}
		rest = rest[i+len(w):]
	}
}
