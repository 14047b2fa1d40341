package caddymodule_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/internal/echo3dtest"
)

// countingUpstream wraps the fake echo3D API and records, per request, the
// size and SHA-256 of the body it received.
type countingUpstream struct {
	next   http.Handler
	bodies chan [2]string
}

func (c *countingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/upload" {
		c.next.ServeHTTP(w, r)
		return
	}
	h := sha256.New()
	pr, pw := io.Pipe()
	r2 := r.Clone(r.Context())
	r2.Body = pr
	go func() {
		n, err := io.Copy(io.MultiWriter(pw, h), r.Body)
		pw.CloseWithError(err)
		c.bodies <- [2]string{fmt.Sprint(n), fmt.Sprintf("%x", h.Sum(nil))}
	}()
	c.next.ServeHTTP(w, r2)
}

// multipartUpload streams a multipart body with the given text fields and
// one generated file part of size bytes; it returns the body reader, its
// content type, and a channel that yields the SHA-256 of every byte sent.
func multipartUpload(fields map[string]string, size int64) (io.Reader, string, <-chan [2]string) {
	pr, pw := io.Pipe()
	sum := make(chan [2]string, 1)
	h := sha256.New()
	counter := &countWriter{}
	mw2 := multipart.NewWriter(io.MultiWriter(pw, h, counter))
	go func() {
		for _, k := range []string{"key", "email", "userKey", "secKey", "entryId"} {
			if v, ok := fields[k]; ok {
				_ = mw2.WriteField(k, v)
			}
		}
		fw, _ := mw2.CreateFormFile("file", "big.glb")
		chunk := []byte(strings.Repeat("glTF-binary-", 4096))
		for written := int64(0); written < size; {
			n := min(int64(len(chunk)), size-written)
			_, _ = fw.Write(chunk[:n])
			written += n
		}
		err := mw2.Close()
		sum <- [2]string{fmt.Sprint(counter.n), fmt.Sprintf("%x", h.Sum(nil))}
		pw.CloseWithError(err)
	}()
	return pr, mw2.FormDataContentType(), sum
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestSessionAgainstFakeEcho3D runs a whole client session through Caddy in
// front of the stateful fake echo3D API: a 48 MiB streamed multipart
// upload, an edit, metadata add and remove at both levels (the removed
// value learned by a lookup through the proxy), a batch post and a delete.
func TestSessionAgainstFakeEcho3D(t *testing.T) {
	fake := &countingUpstream{next: echo3dtest.NewServer(echo3dtest.Options{}), bodies: make(chan [2]string, 4)}
	upstream := httptest.NewServer(fake)
	defer upstream.Close()
	rc := newReceiver(t)
	tester := newTester(t)
	load(t, tester, siteConfig(`
		storage memory
		retry 50ms
		allow_private_targets
		trusted_ca_file `+writeCA(t, rc), upstream.Listener.Addr().String()))

	const key = "session-key-0001"
	hook := createWebhook(t, "session", rc.url("/s"), key, allTriggers()...)
	creds := map[string]string{"key": key, "email": "a@example.com", "userKey": "uk_secret", "secKey": "sk_secret"}

	call := func(method, path string, query url.Values, form url.Values) (int, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, proxyURL+path+"?"+query.Encode(), body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	upload := func(fields map[string]string, size int64) string {
		t.Helper()
		body, ct, sent := multipartUpload(fields, size)
		resp, err := http.Post(proxyURL+"/upload", ct, body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var entry struct{ ID string }
		if err := json.NewDecoder(resp.Body).Decode(&entry); err != nil || resp.StatusCode != http.StatusOK || entry.ID == "" {
			t.Fatalf("upload: %d %v", resp.StatusCode, err)
		}
		if s, got := <-sent, <-fake.bodies; s != got {
			t.Errorf("upstream received %s bytes sha256 %s; client sent %s bytes sha256 %s", got[0], got[1], s[0], s[1])
		}
		return entry.ID
	}
	withCreds := func(kv ...string) url.Values {
		v := url.Values{}
		for k, val := range creds {
			v.Set(k, val)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}

	id := upload(creds, 48<<20)
	editFields := map[string]string{"entryId": id}
	for k, v := range creds {
		editFields[k] = v
	}
	if again := upload(editFields, 1<<20); again != id {
		t.Fatalf("edit returned entry %s, want %s", again, id)
	}
	steps := []struct {
		method, path string
		query, form  url.Values
		status       int
	}{
		{"POST", "/post", withCreds("entry", id, "data", "color", "value", "red"), nil, 200},
		{"POST", "/post", url.Values{}, withCreds("data", "theme", "value", "night"), 200},
		{"POST", "/remove", url.Values{}, withCreds("entry", id, "data", "color"), 200},
		{"POST", "/REMOVE/", withCreds("data", "theme"), nil, 200},
		{"POST", "/remove", withCreds("data", "never-set"), nil, 404},
		{"GET", "/query", withCreds("entry", id), nil, 200},
		{"POST", "/batchpost", withCreds("entries", id, "data", "season", "value", "spring"), nil, 200},
		{"DELETE", "/delete", withCreds("id", id), nil, 200},
	}
	for _, s := range steps {
		if status, body := call(s.method, s.path, s.query, s.form); status != s.status {
			t.Fatalf("%s %s: %d %s, want %d", s.method, s.path, status, body, s.status)
		}
	}

	want := []events.Payload{
		{Event: events.Upload, APIKey: key, EntryIDs: []string{id}},
		{Event: events.Processed, APIKey: key, EntryIDs: []string{id}},
		{Event: events.Edit, APIKey: key, EntryIDs: []string{id}},
		{Event: events.AssetMetadataAdd, APIKey: key, EntryIDs: []string{id}, MetadataKeys: []string{"color"}, MetadataValues: []string{"red"}},
		{Event: events.CollectionMetadataAdd, APIKey: key, MetadataKeys: []string{"theme"}, MetadataValues: []string{"night"}},
		{Event: events.AssetMetadataRemove, APIKey: key, EntryIDs: []string{id}, MetadataKeys: []string{"color"}, MetadataValues: []string{"red"}},
		{Event: events.CollectionMetadataRemove, APIKey: key, MetadataKeys: []string{"theme"}, MetadataValues: []string{"night"}},
		{Event: events.AssetMetadataAdd, APIKey: key, EntryIDs: []string{id}, MetadataKeys: []string{"season"}, MetadataValues: []string{"spring"}},
		{Event: events.Delete, APIKey: key, EntryIDs: []string{id}},
	}
	got := rc.waitFor(t, len(want), waitWithin)
	checkDeliveries(t, hook.Secret, got, want)
	for _, d := range got {
		for _, secret := range []string{"uk_secret", "sk_secret", "a@example.com"} {
			if strings.Contains(string(d.Body), secret) {
				t.Errorf("delivery carries a credential: %s", d.Body)
			}
		}
	}
}
