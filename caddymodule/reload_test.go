package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// okUpstream answers every request with 200 "ok" after reading the body.
func okUpstream() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
}

// postMetadata sends a collection metadata add through the proxy.
func postMetadata(t *testing.T, key, data, value string) {
	t.Helper()
	resp, err := http.Post(fmt.Sprintf("%s/post?key=%s&data=%s&value=%s", proxyURL, key, data, value), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("proxy answered %d", resp.StatusCode)
	}
}

// TestReloadKeepsStore loads two configs on the same Badger directory, as a
// `caddy reload` does (the new config is provisioned and started before the
// old one stops): no lock error, webhooks kept, delivery still works. It
// also checks that validating a config against the running server does not
// take the lock.
func TestReloadKeepsStore(t *testing.T) {
	rc := newReceiver(t)
	upstream := okUpstream()
	defer upstream.Close()
	dir := filepath.Join(t.TempDir(), "store")
	opts := func(timeout string) string {
		return fmt.Sprintf(`
		storage %s
		timeout %s
		retry 50ms
		allow_private_targets
		trusted_ca_file %s`, dir, timeout, writeCA(t, rc))
	}
	tester := newTester(t)
	load(t, tester, siteConfig(opts("5s"), upstream.Listener.Addr().String()))
	hook := createWebhook(t, "kept", rc.url("/kept"), "reload-key", "CollectionMetadataAdd")
	postMetadata(t, "reload-key", "before", "reload")
	rc.waitFor(t, 1, waitWithin)

	// Reload with a changed option on the same directory.
	cfg2 := siteConfig(opts("6s"), upstream.Listener.Addr().String())
	tester.InitServer(cfg2, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	status, body := adminCall(t, http.MethodGet, "/echo3d/webhooks/"+hook.ID, nil)
	if status != http.StatusOK {
		t.Fatalf("webhook lost across reload: %d %s", status, body)
	}
	postMetadata(t, "reload-key", "after", "reload")
	got := rc.waitFor(t, 2, waitWithin)
	want, _ := json.Marshal(events.Payload{Event: events.CollectionMetadataAdd, APIKey: "reload-key", MetadataKeys: []string{"after"}, MetadataValues: []string{"reload"}})
	if string(got[1].Body) != string(want) {
		t.Errorf("after reload got %s, want %s", got[1].Body, want)
	}
	verify(t, hook.Secret, got[1])

	// caddy validate provisions without starting: it must not open Badger,
	// or it would fail on the running server's lock.
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg2), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Admin = &caddy.AdminConfig{Disabled: true}
	if err := caddy.Validate(&cfg); err != nil && strings.Contains(err.Error(), "lock") {
		t.Errorf("validate against a running server hit the store lock: %v", err)
	} else if err != nil {
		t.Errorf("validate: %v", err)
	}
}
