package caddymodule_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/internal/echo3dtest"
)

// credentials are the secret request parameters of one fixture run.
type credentials struct {
	email, userKey, secKey string
	inURL                  bool // the client itself put them in the request URL
}

// values returns every form in which the credentials could leak: as sent
// and URL-encoded.
func (c credentials) values() []string {
	var out []string
	for _, v := range []string{c.email, c.userKey, c.secKey} {
		out = append(out, v)
		if e := url.QueryEscape(v); e != v {
			out = append(out, e)
		}
	}
	return out
}

// withCredentials returns f with its email, userKey and secKey values
// replaced by fresh ones unique to this run, everywhere they appear
// (query, body, multipart fields, the lookup the proxy is expected to
// make), and the new values.
func withCredentials(f echo3dtest.Fixture, tag string) (echo3dtest.Fixture, credentials) {
	c := credentials{
		email:   "fx-" + tag + "@example.com",
		userKey: "uk_fx_" + tag,
		secKey:  "sk_fx_" + tag,
	}
	params := f.Request.Params()
	old := map[string]string{}
	for name, repl := range map[string]string{"email": c.email, "userKey": c.userKey, "secKey": c.secKey} {
		if v := params.Get(name); v != "" {
			old[v] = repl
		}
	}
	swap := func(m map[string]string) map[string]string {
		if m == nil {
			return nil
		}
		m = maps.Clone(m)
		for k, v := range m {
			for o, n := range old {
				v = strings.ReplaceAll(v, o, n)
			}
			m[k] = v
		}
		return m
	}
	swapRequest := func(r *echo3dtest.FixtureRequest) {
		r.Query = swap(r.Query)
		r.Body = swap(r.Body)
		r.Fields = swap(r.Fields)
		for o, n := range old {
			r.BodyRaw = strings.ReplaceAll(r.BodyRaw, url.QueryEscape(o), url.QueryEscape(n))
			r.BodyRaw = strings.ReplaceAll(r.BodyRaw, o, n)
		}
	}
	for name := range map[string]bool{"email": true, "userKey": true, "secKey": true} {
		if _, ok := f.Request.Query[name]; ok {
			c.inURL = true
		}
	}
	swapRequest(&f.Request)
	if lk := f.Context.PriorValueLookup; lk != nil {
		cp := *lk
		swapRequest(&cp.Request)
		f.Context.PriorValueLookup = &cp
	}
	return f, c
}

// ourLogger reports whether a log line comes from this plugin.
func ourLogger(name string) bool {
	for _, p := range []string{"echo3d_webhooks", "http.handlers.echo3d_webhooks", "admin.api.echo3d_webhooks"} {
		if name == p || strings.HasPrefix(name, p+".") {
			return true
		}
	}
	return false
}

// TestNoSecretsInLogsOrStore replays every fixture, with credentials unique
// to each, through Caddy logging at DEBUG into a file and keeping its store
// in a Badger directory on disk, then creates, reads, rotates and tests
// webhooks. Afterwards:
//
//   - no line logged by the plugin holds an email, userKey, secKey or
//     webhook secret (current or rotated out);
//   - no line at all (Caddy's own debug logs included) holds a webhook
//     secret, nor the credentials of a call whose client sent them only in
//     the body: the /remove lookup, which puts them in a URL, must not
//     expose them. (Credentials a client puts in its own URL appear in
//     Caddy's reverse_proxy debug lines; that is Caddy, not the plugin.)
//   - no file of the Badger directory holds a credential, and no record
//     but the webhook's own holds its secret (every version of every key
//     is decoded, so compression cannot hide one).
func TestNoSecretsInLogsOrStore(t *testing.T) {
	dir, err := echo3dtest.FixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	fixtures, err := echo3dtest.LoadFixtures(dir)
	if err != nil {
		t.Fatal(err)
	}
	replayer := echo3dtest.NewReplayer()
	upstream := httptest.NewServer(replayer)
	defer upstream.Close()
	rc := newReceiver(t)
	storeDir := filepath.Join(t.TempDir(), "store")
	logFile := filepath.Join(t.TempDir(), "debug.log")
	tester := newTester(t)
	load(t, tester, fmt.Sprintf(`{
	%s
	log {
		output file %s
		format json
		level DEBUG
	}
	echo3d_webhooks {
		storage %s
		retry 50ms
		allow_private_targets
		trusted_ca_file %s
	}
}
%s {
	echo3d_webhooks
	reverse_proxy %s
}
`, globalHead(), logFile, storeDir, writeCA(t, rc), proxyURL, upstream.Listener.Addr()))

	key := fixtures[0].Request.APIKey()
	hook := createWebhook(t, "secrets", rc.url("/secrets"), key, allTriggers()...)
	other := createWebhook(t, "other", rc.url("/other"), "other-collection", "Upload")
	secrets := []string{hook.Secret, other.Secret}

	nonce := make([]byte, 6)
	_, _ = rand.Read(nonce)
	var creds []credentials
	client := &http.Client{Timeout: 30 * time.Second}
	wantDeliveries := 0
	for i, fx := range fixtures {
		f, c := withCredentials(fx, fmt.Sprintf("%02d%s", i, hex.EncodeToString(nonce)))
		creds = append(creds, c)
		replayer.Set(f)
		req, err := f.NewRequest(proxyURL)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if f.Request.APIKey() == key {
			wantDeliveries += len(f.ExpectedEvents)
		}
		rc.waitFor(t, wantDeliveries, waitWithin)
	}

	// Manage the webhooks: read (secrets in responses), rotate (old and
	// new secret in the record), test deliveries signed with both.
	for _, h := range []webhook{hook, other} {
		if status, body := adminCall(t, http.MethodGet, "/echo3d/webhooks/"+h.ID, nil); status != http.StatusOK {
			t.Fatalf("get: %d %s", status, body)
		}
		status, body := adminCall(t, http.MethodPost, "/echo3d/webhooks/"+h.ID+"/rotate-secret?overlap=1h", nil)
		var rotated webhook
		if status != http.StatusOK || json.Unmarshal(body, &rotated) != nil {
			t.Fatalf("rotate: %d %s", status, body)
		}
		secrets = append(secrets, rotated.Secret)
		if status, body := adminCall(t, http.MethodPost, "/echo3d/webhooks/"+h.ID+"/test", nil); status != http.StatusAccepted {
			t.Fatalf("test: %d %s", status, body)
		}
	}
	rc.waitFor(t, wantDeliveries+2, waitWithin)
	if status, body := adminCall(t, http.MethodGet, "/echo3d/webhooks/"+hook.ID+"/deliveries", nil); status != http.StatusOK {
		t.Fatalf("deliveries: %d %s", status, body)
	}

	// Release the store so its files are complete and can be opened here.
	tester.InitServer(baseConfig(), "caddyfile")

	// Logs.
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	ours, debugOurs := 0, 0
	for _, line := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		logger, _ := e["logger"].(string)
		mine := ourLogger(logger)
		if mine {
			ours++
			if e["level"] == "debug" {
				debugOurs++
			}
		}
		for _, s := range secrets {
			if strings.Contains(line, s) || strings.Contains(line, strings.TrimPrefix(s, "whsec_")) {
				t.Errorf("a webhook secret is logged by %s: %s", logger, line)
			}
		}
		for i, c := range creds {
			if !mine && c.inURL {
				continue
			}
			for _, v := range c.values() {
				if strings.Contains(line, v) {
					t.Errorf("fixture %s: credential %q logged by %s: %s", fixtures[i].Name, v, logger, line)
				}
			}
		}
	}
	if ours == 0 || debugOurs == 0 {
		t.Fatalf("%d lines from the plugin, %d at debug level, in %d lines: is debug logging on?", ours, debugOurs, len(lines))
	}
	t.Logf("checked %d log lines, %d from the plugin (%d at debug)", len(lines), ours, debugOurs)

	// Badger's files, raw.
	files := 0
	err = filepath.WalkDir(storeDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for i, c := range creds {
			for _, v := range c.values() {
				if bytes.Contains(b, []byte(v)) {
					t.Errorf("fixture %s: credential %q is in %s", fixtures[i].Name, v, path)
				}
			}
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("walking %s: %v (%d files)", storeDir, err, files)
	}

	// Badger's records, every version, decoded.
	db, err := badger.Open(badger.DefaultOptions(storeDir).WithReadOnly(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	owner := map[string]string{hook.Secret: hook.ID, secrets[2]: hook.ID, other.Secret: other.ID, secrets[3]: other.ID}
	records, holding := 0, map[string]int{}
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := string(item.KeyCopy(nil))
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("reading %q: %w", k, err)
			}
			records++
			for s, id := range owner {
				if bytes.Contains(v, []byte(s)) || strings.Contains(k, s) {
					if k != "wh/"+id {
						t.Errorf("the secret of %s is in record %q", id, k)
					} else {
						holding[s]++
					}
				}
			}
			for i, c := range creds {
				for _, cv := range c.values() {
					if bytes.Contains(v, []byte(cv)) || strings.Contains(k, cv) {
						t.Errorf("fixture %s: credential %q is in record %q", fixtures[i].Name, cv, k)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for s, id := range owner {
		if holding[s] == 0 {
			t.Errorf("the record of %s does not hold its secret: the decoding check saw nothing", id)
		}
	}
	t.Logf("checked %d files and %d record versions", files, records)
}
