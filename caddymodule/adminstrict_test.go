package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// apiErrorOf decodes an admin API error body.
func apiErrorOf(t *testing.T, body []byte) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not {\"error\": ...}: %v", body, err)
	}
	return e.Error
}

// TestAdminInputStrict sends malformed and oversized inputs to the create
// and replace routes: each is refused with a status and an error that
// starts with the field at fault and says why.
func TestAdminInputStrict(t *testing.T) {
	rc := newReceiver(t)
	upstream := httptest.NewServer(http.NotFoundHandler())
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, siteConfig(`
		storage memory
		allow_private_targets
		trusted_ca_file `+writeCA(t, rc), upstream.Listener.Addr().String()))
	hook := createWebhook(t, "strict", rc.url("/h"), "strict-key", "Upload")

	valid := `"name":"n","url":"` + rc.url("/h") + `","apiKey":"k","triggers":["Upload"]`
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		prefix string // the error must start with it
	}{
		{"array body", "POST", "/echo3d/webhooks", `[]`, 400, "body: must be a JSON object"},
		{"string body", "POST", "/echo3d/webhooks", `"webhook"`, 400, "body: must be a JSON object"},
		{"trailing data", "POST", "/echo3d/webhooks", `{` + valid + `} {}`, 400, "body: unexpected data"},
		{"trigger not a string", "POST", "/echo3d/webhooks", `{` + valid + `,"triggers":[1]}`, 400, "triggers: must be an array of strings"},
		{"enabled not a boolean", "POST", "/echo3d/webhooks", `{` + valid + `,"enabled":"yes"}`, 400, "enabled: must be a boolean"},
		{"name an object", "POST", "/echo3d/webhooks", `{"name":{"x":1}}`, 400, "name: must be a string"},
		{"unknown field", "POST", "/echo3d/webhooks", `{` + valid + `,"secret":"whsec_mine"}`, 400, "secret: unknown field"},
		{"duplicate trigger of another case", "POST", "/echo3d/webhooks", `{` + valid + `,"triggers":["upload"]}`, 400, "triggers:"},
		{"long description", "POST", "/echo3d/webhooks", `{` + valid + `,"description":"` + strings.Repeat("d", 2001) + `"}`, 400, "description: longer than 2000"},
		{"long url", "POST", "/echo3d/webhooks", `{` + valid + `,"url":"https://h.example/` + strings.Repeat("u", 2048) + `"}`, 400, "url: longer than 2048"},
		{"long apiKey", "POST", "/echo3d/webhooks", `{` + valid + `,"apiKey":"` + strings.Repeat("k", 257) + `"}`, 400, "apiKey: longer than 256"},
		{"url with user", "POST", "/echo3d/webhooks", `{` + valid + `,"url":"https://u:p@h.example/"}`, 400, "url:"},
		{"body over 64 KiB", "POST", "/echo3d/webhooks", `{` + valid + `,"description":"` + strings.Repeat("d", 70<<10) + `"}`, 413, "body: larger than"},
		{"put of a missing id", "PUT", "/echo3d/webhooks/wh_missing", `{` + valid + `}`, 404, "webhook wh_missing not found"},
		{"put without triggers", "PUT", "/echo3d/webhooks/" + hook.ID, `{"name":"n","url":"` + rc.url("/h") + `"}`, 400, "triggers:"},
		{"put with an unknown field", "PUT", "/echo3d/webhooks/" + hook.ID, `{"name":"n","id":"wh_other"}`, 400, "id: unknown field"},
		{"test with a bad event", "POST", "/echo3d/webhooks/" + hook.ID + "/test", `{"event":"Uploaded"}`, 400, "event:"},
		{"rotate with a bad overlap", "POST", "/echo3d/webhooks/" + hook.ID + "/rotate-secret?overlap=forever", ``, 400, "overlap:"},
		{"deliveries with a bad limit", "GET", "/echo3d/webhooks/" + hook.ID + "/deliveries?limit=9999", ``, 400, "limit:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			status, out := adminCall(t, tc.method, tc.path, body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, out)
			}
			if msg := apiErrorOf(t, out); !strings.HasPrefix(msg, tc.prefix) {
				t.Errorf("error %q, want it to start with %q", msg, tc.prefix)
			}
		})
	}
}

// TestAdminWebhooksPerCollection checks max_webhooks_per_collection: the
// bound holds per apiKey, under concurrent creates too, and a delete makes
// room again.
func TestAdminWebhooksPerCollection(t *testing.T) {
	rc := newReceiver(t)
	upstream := httptest.NewServer(http.NotFoundHandler())
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, siteConfig(`
		storage memory
		allow_private_targets
		max_webhooks_per_collection 3
		trusted_ca_file `+writeCA(t, rc), upstream.Listener.Addr().String()))

	create := func(key string) (int, []byte) {
		return adminCall(t, http.MethodPost, "/echo3d/webhooks", map[string]any{
			"name": "n", "url": rc.url("/h"), "apiKey": key, "triggers": []string{"Upload"},
		})
	}
	var wg sync.WaitGroup
	statuses := make(chan int, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _ := create("crowded-key")
			statuses <- status
		}()
	}
	wg.Wait()
	close(statuses)
	created := 0
	for s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusBadRequest:
		default:
			t.Errorf("concurrent create answered %d", s)
		}
	}
	if created != 3 {
		t.Fatalf("%d concurrent creates succeeded, want 3", created)
	}
	status, body := create("crowded-key")
	if msg := apiErrorOf(t, body); status != http.StatusBadRequest || !strings.HasPrefix(msg, "apiKey:") || !strings.Contains(msg, "max_webhooks_per_collection") {
		t.Errorf("fourth create: %d %q, want 400 naming apiKey and the option", status, msg)
	}
	if status, body := create("roomy-key"); status != http.StatusCreated {
		t.Errorf("another collection: %d %s", status, body)
	}

	status, body = adminCall(t, http.MethodGet, "/echo3d/webhooks?apiKey=crowded-key", nil)
	var list []webhook
	if status != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list) != 3 {
		t.Fatalf("list: %d %s", status, body)
	}
	if status, _ := adminCall(t, http.MethodDelete, "/echo3d/webhooks/"+list[0].ID, nil); status != http.StatusNoContent {
		t.Fatalf("delete: %d", status)
	}
	if status, body := create("crowded-key"); status != http.StatusCreated {
		t.Errorf("create after a delete: %d %s", status, body)
	}
}

// TestAllowTargets runs without allow_private_targets but with an
// allow-list naming the loopback receiver's address: that receiver can be
// registered and is delivered to (the dial-time check honours the list),
// while other private targets stay refused at creation.
func TestAllowTargets(t *testing.T) {
	rc := newReceiver(t)
	upstream := okUpstream()
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, siteConfig(`
		storage memory
		retry 50ms
		allow_targets 127.0.0.1 10.99.0.0/16
		trusted_ca_file `+writeCA(t, rc), upstream.Listener.Addr().String()))

	host, port, _ := net.SplitHostPort(strings.TrimPrefix(rc.srv.URL, "https://"))
	if host != "127.0.0.1" {
		t.Fatalf("receiver listens on %s, want 127.0.0.1", host)
	}
	hook := createWebhook(t, "allowed", rc.url("/allowed"), "allow-key", "CollectionMetadataAdd")
	for _, u := range []string{
		"https://" + net.JoinHostPort("::1", port) + "/h",
		"https://127.0.0.2/h",
		"https://10.98.0.1/h",
		"https://169.254.169.254/latest/meta-data",
		"https://localhost:" + port + "/h",
	} {
		status, body := adminCall(t, http.MethodPost, "/echo3d/webhooks", map[string]any{
			"name": "n", "url": u, "apiKey": "allow-key", "triggers": []string{"Upload"},
		})
		if msg := apiErrorOf(t, body); status != http.StatusBadRequest || !strings.HasPrefix(msg, "url:") {
			t.Errorf("%s: %d %q, want 400 naming url", u, status, msg)
		}
	}
	if status, body := adminCall(t, http.MethodPost, "/echo3d/webhooks", map[string]any{
		"name": "n", "url": "https://10.99.3.4/h", "apiKey": "allow-key", "triggers": []string{"Upload"},
	}); status != http.StatusCreated {
		t.Errorf("a target inside an allowed prefix: %d %s", status, body)
	}

	postMetadata(t, "allow-key", "color", "red")
	got := rc.waitFor(t, 1, waitWithin)
	checkDeliveries(t, hook.Secret, got, []events.Payload{{Event: events.CollectionMetadataAdd, APIKey: "allow-key", MetadataKeys: []string{"color"}, MetadataValues: []string{"red"}}})
}

// TestAdminRefusesForeignHostAndOrigin shows the protection Caddy's admin
// endpoint gives the /echo3d/ routes (which can make Caddy send requests):
// a request whose Host is not the listener's (DNS rebinding) or whose Origin
// is another site (a browser tricked into calling it) is refused before
// the route runs.
func TestAdminRefusesForeignHostAndOrigin(t *testing.T) {
	upstream := httptest.NewServer(http.NotFoundHandler())
	defer upstream.Close()
	tester := newTester(t)
	load(t, tester, siteConfig("\t\tstorage memory", upstream.Listener.Addr().String()))

	body := `{"name":"n","url":"https://hooks.example.com/h","apiKey":"origin-key","triggers":["Upload"]}`
	for _, tc := range []struct {
		name         string
		host, origin string
		want         int
	}{
		{"listener host", "", "", http.StatusCreated},
		{"rebound host", "evil.example:" + fmt.Sprint(adminPort), "", http.StatusForbidden},
		{"cross-site origin", "", "https://evil.example", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, adminURL+"/echo3d/webhooks", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.want, out)
			}
		})
	}
	status, out := adminCall(t, http.MethodGet, "/echo3d/webhooks?apiKey="+url.QueryEscape("origin-key"), nil)
	var list []webhook
	if status != http.StatusOK || json.Unmarshal(out, &list) != nil || len(list) != 1 {
		t.Errorf("refused requests created webhooks: %d %s", status, out)
	}
}
