package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/caddymodule"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/internal/echo3dtest"
)

// waitWithin bounds every wait for a delivery.
const waitWithin = 15 * time.Second

// The in-process Caddy's ports, picked free at start so that several test
// processes can run side by side.
var (
	adminPort, httpPort, httpsPort int
	adminURL, proxyURL             string
)

func TestMain(m *testing.M) {
	var err error
	for _, p := range []*int{&adminPort, &httpPort, &httpsPort} {
		if *p, err = pickPort(); err != nil {
			fmt.Fprintln(os.Stderr, "picking a free port:", err)
			os.Exit(1)
		}
	}
	adminURL = fmt.Sprintf("http://localhost:%d", adminPort)
	proxyURL = fmt.Sprintf("http://localhost:%d", httpPort)
	code := m.Run()
	removeBuiltCaddy()
	os.Exit(code)
}

// pickPort returns a port that was free a moment ago, on every address,
// from below the kernel's range of ephemeral ports where it can. The
// in-process Caddy's ports are held for the whole run, and go test runs
// packages in parallel: a port from the ephemeral range could be taken
// meanwhile by any process's outgoing connection or port-0 listener, which
// once failed a config load with "address already in use".
func pickPort() (int, error) {
	const from = 10000
	if below := ephemeralLow(); below > from+1000 {
		for range 100 {
			p := from + rand.IntN(below-from)
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
			if err != nil {
				continue
			}
			ln.Close()
			return p, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow returns the first port of Linux's ephemeral range, or 0
// where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return n
}

// newTester returns a caddytest tester bound to this process's admin port.
func newTester(t *testing.T) *caddytest.Tester {
	return caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
}

// globalHead is the start of every test config's global options block.
func globalHead() string {
	return fmt.Sprintf("admin localhost:%d\n\thttp_port %d\n\thttps_port %d\n\tgrace_period 1ns", adminPort, httpPort, httpsPort)
}

// baseConfig is loaded after each test so the store it used is released.
func baseConfig() string {
	return fmt.Sprintf("{\n\tadmin localhost:%d\n}\n", adminPort)
}

// siteConfig returns a Caddyfile with the plugin in front of upstream.
func siteConfig(globalOpts, upstream string) string {
	return fmt.Sprintf(`{
	%s
	echo3d_webhooks {
%s
	}
}
%s {
	echo3d_webhooks
	reverse_proxy %s
}
`, globalHead(), globalOpts, proxyURL, upstream)
}

// load loads a Caddyfile into the in-process Caddy and, at the end of the
// test, loads the base config so the webhook store is released.
func load(t *testing.T, tester *caddytest.Tester, cfg string) {
	t.Helper()
	tester.InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() { tester.InitServer(baseConfig(), "caddyfile") })
}

// adminCall sends a JSON request to the admin API.
func adminCall(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	return adminCallAt(t, adminURL, method, path, body)
}

// adminCallAt sends a JSON request to the admin API at base.
func adminCallAt(t *testing.T, base, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			buf, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			rd = bytes.NewReader(buf)
		}
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// webhook is the admin API's view of a webhook.
type webhook struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	URL            string   `json:"url"`
	Description    string   `json:"description"`
	Triggers       []string `json:"triggers"`
	APIKey         string   `json:"apiKey"`
	Enabled        bool     `json:"enabled"`
	Secret         string   `json:"secret"`
	DisabledReason string   `json:"disabledReason"`
	Health         struct {
		Breaker       string    `json:"breaker"`
		HoldUntil     time.Time `json:"holdUntil"`
		Pause         string    `json:"pause"`
		FailingSince  time.Time `json:"failingSince"`
		LastFailureAt time.Time `json:"lastFailureAt"`
		DisabledAt    time.Time `json:"disabledAt"`
	} `json:"health"`
}

func createWebhook(t *testing.T, name, hookURL, apiKey string, triggers ...string) webhook {
	t.Helper()
	return createWebhookAt(t, adminURL, name, hookURL, apiKey, triggers...)
}

// createWebhookAt creates a webhook through the admin API at base.
func createWebhookAt(t *testing.T, base, name, hookURL, apiKey string, triggers ...string) webhook {
	t.Helper()
	status, body := adminCallAt(t, base, http.MethodPost, "/echo3d/webhooks", map[string]any{
		"name": name, "url": hookURL, "apiKey": apiKey, "triggers": triggers,
	})
	if status != http.StatusCreated {
		t.Fatalf("create webhook: status %d: %s", status, body)
	}
	var w webhook
	if err := json.Unmarshal(body, &w); err != nil {
		t.Fatal(err)
	}
	if w.ID == "" || !strings.HasPrefix(w.Secret, "whsec_") {
		t.Fatalf("created webhook lacks id or secret: %s", body)
	}
	return w
}

func allTriggers() []string {
	out := make([]string, 0, len(events.AllTriggers))
	for _, tr := range events.AllTriggers {
		out = append(out, string(tr))
	}
	return out
}

// TestFixturesEndToEnd replays every echo3D fixture through a real Caddy
// with the plugin in front of an upstream that answers with the fixture's
// recorded response, and checks what three HTTPS receivers get: the exact
// payloads and valid signatures for the collection's webhook, only Delete
// for a Delete-only webhook, nothing for another collection's webhook.
func TestFixturesEndToEnd(t *testing.T) {
	dir, err := echo3dtest.FixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	fixtures, err := echo3dtest.LoadFixtures(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(fixtures) < 16 {
		t.Fatalf("found %d fixtures in %s, want at least 16", len(fixtures), dir)
	}
	replayer := echo3dtest.NewReplayer()
	upstream := httptest.NewServer(replayer)
	defer upstream.Close()

	all, deletes, other := newReceiver(t), newReceiver(t), newReceiver(t)
	tester := newTester(t)
	load(t, tester, siteConfig(fmt.Sprintf(`
		storage memory
		retry 50ms 100ms
		timeout 5s
		allow_private_targets
		trusted_ca_file %s`, writeCA(t, all)), upstream.Listener.Addr().String()))

	key := fixtures[0].Request.APIKey()
	hookAll := createWebhook(t, "all", all.url("/hooks/all"), key, allTriggers()...)
	hookDel := createWebhook(t, "deletes", deletes.url("/hooks/deletes"), key, "Delete")
	hookOther := createWebhook(t, "other", other.url("/hooks/other"), "some-other-collection", allTriggers()...)

	client := &http.Client{Timeout: 30 * time.Second}
	var wantAll, wantDel []events.Payload
	for _, f := range fixtures {
		t.Run(f.Name, func(t *testing.T) {
			replayer.Set(f)
			req, err := f.NewRequest(proxyURL)
			if err != nil {
				t.Fatal(err)
			}
			sent, _, err := f.BodyBytes()
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()

			// The client sees exactly what the upstream answered.
			if resp.StatusCode != f.Response.Status {
				t.Errorf("status %d, want %d", resp.StatusCode, f.Response.Status)
			}
			if !bytes.Equal(got, f.ResponseBody()) {
				t.Errorf("client got body %q, want %q", got, f.ResponseBody())
			}

			// The upstream got the request unchanged, preceded by the
			// value lookup for /remove.
			recv := replayer.Requests()
			if lk := f.Context.PriorValueLookup; lk != nil {
				if len(recv) != 2 {
					t.Fatalf("upstream got %d requests, want lookup + request", len(recv))
				}
				checkLookup(t, recv[0], lk.Request)
				recv = recv[1:]
			}
			if len(recv) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(recv))
			}
			if !bytes.Equal(recv[0].Body, sent) {
				t.Errorf("upstream got a body of %d bytes that differs from the %d bytes sent", len(recv[0].Body), len(sent))
			}
			if recv[0].RawQuery != req.URL.RawQuery || recv[0].Method != f.Request.Method {
				t.Errorf("upstream got %s ?%s, want %s ?%s", recv[0].Method, recv[0].RawQuery, f.Request.Method, req.URL.RawQuery)
			}

			// Every expected event reaches the collection's webhook, in
			// order, signed; nothing else does.
			wantAll = append(wantAll, f.ExpectedEvents...)
			for _, p := range f.ExpectedEvents {
				if p.Event == events.Delete {
					wantDel = append(wantDel, p)
				}
			}
			gotAll := all.waitFor(t, len(wantAll), waitWithin)
			checkDeliveries(t, hookAll.Secret, gotAll, wantAll)
		})
	}

	// A test event sent last must be the next delivery of each webhook, so
	// nothing unexpected is queued before it.
	for _, h := range []webhook{hookAll, hookDel, hookOther} {
		if status, body := adminCall(t, http.MethodPost, "/echo3d/webhooks/"+h.ID+"/test", nil); status != http.StatusAccepted {
			t.Fatalf("test event for %s: %d %s", h.Name, status, body)
		}
	}
	testEvent := func(key string) events.Payload { return events.Payload{Event: "Test", APIKey: key} }
	checkDeliveries(t, hookAll.Secret, all.waitFor(t, len(wantAll)+1, waitWithin), append(wantAll, testEvent(key)))
	checkDeliveries(t, hookDel.Secret, deletes.waitFor(t, len(wantDel)+1, waitWithin), append(wantDel, testEvent(key)))
	checkDeliveries(t, hookOther.Secret, other.waitFor(t, 1, waitWithin), []events.Payload{testEvent("some-other-collection")})
	if len(wantDel) != 2 {
		t.Errorf("fixtures hold %d Delete events, want 2", len(wantDel))
	}
}

// checkLookup compares the lookup the plugin sent with the fixture's.
func checkLookup(t *testing.T, got echo3dtest.Received, want echo3dtest.FixtureRequest) {
	t.Helper()
	if got.Method != http.MethodGet || !strings.EqualFold(got.Path, want.Path) {
		t.Errorf("lookup was %s %s, want GET %s", got.Method, got.Path, want.Path)
	}
	q, err := url.ParseQuery(got.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	gotQ := map[string]string{}
	for k, v := range q {
		gotQ[k] = strings.Join(v, ",")
	}
	if fmt.Sprint(sortedPairs(gotQ)) != fmt.Sprint(sortedPairs(want.Query)) {
		t.Errorf("lookup query %v, want %v", sortedPairs(gotQ), sortedPairs(want.Query))
	}
}

func sortedPairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// checkDeliveries asserts the exact bodies, in order, their headers and
// their signatures.
func checkDeliveries(t *testing.T, secret string, got []delivery, want []events.Payload) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d deliveries, want %d", len(got), len(want))
	}
	ids := map[string]bool{}
	for i := 0; i < len(got) && i < len(want); i++ {
		wantBody, err := json.Marshal(want[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[i].Body, wantBody) {
			t.Errorf("delivery %d body\n got %s\nwant %s", i, got[i].Body, wantBody)
		}
		if ct := got[i].Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("delivery %d Content-Type %q", i, ct)
		}
		id := got[i].Header.Get("webhook-id")
		if id == "" || ids[id] || strings.Contains(id, ".") {
			t.Errorf("delivery %d webhook-id %q is empty, repeated or holds a dot", i, id)
		}
		ids[id] = true
		verify(t, secret, got[i])
	}
}
