package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// scripted lists the triggers the scripted session must deliver: every
// trigger but the reserved AssetStatusUpdate.
var scripted = []events.Trigger{
	events.Upload, events.Processed, events.Edit, events.Delete,
	events.CollectionMetadataAdd, events.CollectionMetadataRemove,
	events.AssetMetadataAdd, events.AssetMetadataRemove,
}

// buildCaddy builds ../caddy (Caddy with the standard modules and the
// plugin) with plain go build, as the caddymodule tests do.
func buildCaddy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "caddy")
	if out, err := exec.Command("go", "build", "-o", bin, "../caddy").CombinedOutput(); err != nil {
		t.Fatalf("building caddy: %v\n%s", err, out)
	}
	return bin
}

// output is a concurrency-safe buffer that can wait for a substring.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	close(o.changed)
	o.changed = make(chan struct{})
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output matches re and returns the match.
func (o *output) waitFor(t *testing.T, re *regexp.Regexp, within time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		m := re.FindStringSubmatch(o.buf.String())
		ch := o.changed
		o.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("no output matching %s within %s:\n%s", re, within, o.String())
		}
	}
}

// checkScripted checks that the output shows a verified delivery of every
// scripted trigger, none unverified, and no credential in a delivery.
func checkScripted(t *testing.T, out string) {
	t.Helper()
	for _, tr := range scripted {
		re := regexp.MustCompile(`(?m)^ +receiver <- ` + string(tr) + ` .*signature verified: yes$`)
		if !re.MatchString(out) {
			t.Errorf("no verified %s delivery printed", tr)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "receiver <-") && (strings.Contains(line, "verified: NO") || strings.Contains(line, demoUserKey)) {
			t.Errorf("bad delivery line: %s", line)
		}
	}
}

// proxyClosed checks that nothing listens on the proxy's port any more,
// that is, the demo stopped Caddy.
func proxyClosed(t *testing.T, out string) {
	t.Helper()
	m := regexp.MustCompile(`clients here\)\s+http://(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no proxy address in the output:\n%s", out)
	}
	if c, err := net.DialTimeout("tcp", m[1], time.Second); err == nil {
		c.Close()
		t.Errorf("the proxy at %s still accepts connections after the demo returned", m[1])
	}
}

// TestDemo runs the demo against the plugin's Caddy built from this tree,
// with free ports: once non-interactively (-once), asserting that every
// scripted trigger was delivered and verified, and once interactively,
// sending a request of its own after the script and stopping the demo as
// Ctrl-C would.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a Caddy binary")
	}
	bin := buildCaddy(t)
	args := []string{"-caddy", bin, "-proxy-port", "0", "-admin-port", "0", "-timeout", "90s"}

	t.Run("once", func(t *testing.T) {
		o, err := parseFlags(append(args, "-once"), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		out := newOutput()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		rep, err := run(ctx, o, out)
		if err != nil {
			t.Fatalf("demo: %v\n%s", err, out)
		}
		if !rep.complete() || len(rep.want) != len(scripted) {
			t.Errorf("report: want %v, missing %v", rep.want, rep.missing)
		}
		for _, tr := range scripted {
			if !strings.Contains(joinTriggers(rep.want), string(tr)) {
				t.Errorf("the script does not cover %s", tr)
			}
		}
		got := out.String()
		checkScripted(t, got)
		if !strings.Contains(got, "All 8 scripted triggers were delivered and their signatures verified.") {
			t.Errorf("no success summary:\n%s", got)
		}
		proxyClosed(t, got)
		if m := regexp.MustCompile(`Caddy's log\s+(\S+)`).FindStringSubmatch(got); m == nil {
			t.Error("no log path printed")
		} else if _, err := os.Stat(filepath.Dir(m[1])); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the demo's directory %s is left behind: %v", filepath.Dir(m[1]), err)
		}
		if t.Failed() {
			t.Logf("output:\n%s", got)
		}
	})

	t.Run("interactive", func(t *testing.T) {
		o, err := parseFlags(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		out := newOutput()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := run(ctx, o, out)
			done <- err
		}()
		proxy := out.waitFor(t, regexp.MustCompile(`clients here\)\s+(http://\S+)`), time.Minute)[1]
		out.waitFor(t, regexp.MustCompile(`The demo keeps running`), 90*time.Second)

		// A request of the user's own, as in the printed curl lines.
		resp, err := http.PostForm(proxy+"/post", url.Values{"key": {"demo-key"}, "data": {"mood"}, "value": {"calm"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /post through the proxy: %d", resp.StatusCode)
		}
		out.waitFor(t, regexp.MustCompile(`receiver <- CollectionMetadataAdd +metadata\{mood="calm"\}  signature verified: yes`), 30*time.Second)

		cancel() // Ctrl-C
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("demo: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the demo did not stop within 30s of the interrupt")
		}
		got := out.String()
		checkScripted(t, got)
		if !strings.Contains(got, "Stopping Caddy") {
			t.Error("no stop message")
		}
		proxyClosed(t, got)
		if t.Failed() {
			t.Logf("output:\n%s", got)
		}
	})
}

// TestParseFlags checks the demo's flag handling.
func TestParseFlags(t *testing.T) {
	cases := []struct {
		args    []string
		wantErr string
		check   func(options) bool
	}{
		{nil, "", func(o options) bool {
			return o.caddy == "./bin/caddy" && o.proxyPort == defaultProxyPort && o.adminPort == defaultAdminPort && !o.once
		}},
		{[]string{"-once", "-proxy-port", "0", "-admin-port", "2020", "-api-key", "k"}, "", func(o options) bool {
			return o.once && o.proxyPort == 0 && o.adminPort == 2020 && o.apiKey == "k"
		}},
		{[]string{"-proxy-port", "70000"}, "not a port", nil},
		{[]string{"-api-key", ""}, "must not be empty", nil},
		{[]string{"-timeout", "0s"}, "must be positive", nil},
		{[]string{"extra"}, "unexpected argument", nil},
		{[]string{"-bogus"}, "not defined", nil},
		{[]string{"-h"}, flag.ErrHelp.Error(), nil},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			case tc.check != nil && !tc.check(o):
				t.Errorf("options %+v", o)
			}
		})
	}
}

// TestMissingCaddy checks that a missing binary is reported with the way
// to build it, and that nothing is left listening.
func TestMissingCaddy(t *testing.T) {
	o, err := parseFlags([]string{"-caddy", filepath.Join(t.TempDir(), "nope"), "-proxy-port", "0", "-admin-port", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = run(context.Background(), o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "./xcaddy.sh build") {
		t.Fatalf("error %v, want one that says how to build Caddy", err)
	}
}
