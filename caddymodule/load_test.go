package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// loadGen sends CollectionMetadataAdd calls through the proxy from a few
// goroutines, each value once, and remembers which ones the proxy answered
// with 200: those events are in the outbox and must be delivered.
type loadGen struct {
	url, key string
	client   *http.Client
	pace     time.Duration // between two calls of one sender

	mu     sync.Mutex
	acked  map[string]bool
	errors int

	stop chan struct{}
	wg   sync.WaitGroup
}

func startLoad(proxyBase, key string, senders int) *loadGen {
	g := &loadGen{
		url: proxyBase, key: key, acked: map[string]bool{}, stop: make(chan struct{}), pace: 5 * time.Millisecond,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}},
	}
	for s := range senders {
		g.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-g.stop:
					return
				default:
				}
				value := fmt.Sprintf("s%d-%d", s, i)
				ok := g.send(value)
				g.mu.Lock()
				if ok {
					g.acked[value] = true
				} else {
					g.errors++
				}
				g.mu.Unlock()
				// A steady pace (and no spinning while the proxy is down),
				// so that the one webhook's ordered deliveries keep up even
				// under the race detector on a busy machine.
				time.Sleep(g.pace)
			}
		})
	}
	return g
}

func (g *loadGen) send(value string) bool {
	resp, err := g.client.Post(fmt.Sprintf("%s/post?key=%s&data=n&value=%s", g.url, g.key, value), "", nil)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// finish stops the senders and returns the acknowledged values and the
// number of calls that failed.
func (g *loadGen) finish() (map[string]bool, int) {
	close(g.stop)
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.acked, g.errors
}

// count returns how many calls were acknowledged so far.
func (g *loadGen) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.acked)
}

// tally counts what a receiver got: requests per value.
func tally(t *testing.T, got []delivery) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, d := range got {
		var p events.Payload
		if err := json.Unmarshal(d.Body, &p); err != nil || len(p.MetadataValues) != 1 {
			t.Fatalf("bad payload %q: %v", d.Body, err)
		}
		seen[p.MetadataValues[0]]++
	}
	return seen
}

// waitAllDelivered waits until every acknowledged value reached rc and
// returns the final tally, or fails listing what is missing.
func waitAllDelivered(t *testing.T, rc *receiver, acked map[string]bool, within time.Duration) map[string]int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		seen := tally(t, rc.deliveries())
		var missing []string
		for v := range acked {
			if seen[v] == 0 {
				missing = append(missing, v)
			}
		}
		if len(missing) == 0 {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged events not delivered within %s, e.g. %v", len(missing), len(acked), within, missing[:min(5, len(missing))])
		}
		select {
		case <-rc.notify:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// summarize returns the figures of a load test: distinct acknowledged
// events delivered, deliveries of values never acknowledged (the call
// failed after the event was stored), and duplicate deliveries.
func summarize(seen map[string]int, acked map[string]bool) (delivered, unacked, duplicates int) {
	for v, n := range seen {
		if acked[v] {
			delivered++
		} else {
			unacked++
		}
		duplicates += n - 1
	}
	return delivered, unacked, duplicates
}

// TestReloadUnderLoad reloads the config several times while events keep
// coming: every event the proxy acknowledged is delivered, and the old and
// new dispatchers, sharing the store, do not both send one.
func TestReloadUnderLoad(t *testing.T) {
	rc := newReceiver(t)
	upstream := okUpstream()
	defer upstream.Close()
	dir := filepath.Join(t.TempDir(), "store")
	cfg := func(timeout string) string {
		return siteConfig(fmt.Sprintf(`
		storage %s
		retry 50ms 100ms 200ms 400ms
		timeout %s
		allow_private_targets
		trusted_ca_file %s`, dir, timeout, writeCA(t, rc)), upstream.Listener.Addr().String())
	}
	tester := newTester(t)
	load(t, tester, cfg("5s"))
	hook := createWebhook(t, "reload", rc.url("/reload"), "reload-load", "CollectionMetadataAdd")

	gen := startLoad(proxyURL, "reload-load", 2)
	const reloads, perReload = 6, 60
	for i := range reloads {
		waitUntil(t, "more load", 30*time.Second, func() bool { return gen.count() >= perReload*(i+1) })
		tester.InitServer(cfg([]string{"6s", "5s"}[i%2]), "caddyfile")
		if t.Failed() {
			gen.finish()
			t.FailNow()
		}
	}
	waitUntil(t, "load after the last reload", 30*time.Second, func() bool { return gen.count() >= perReload*(reloads+1) })
	acked, failedCalls := gen.finish()
	seen := waitAllDelivered(t, rc, acked, 60*time.Second)
	delivered, unacked, duplicates := summarize(seen, acked)
	t.Logf("reload under load: %d reloads, %d events acknowledged by the proxy, %d delivered at least once, %d delivered though their call failed, %d calls failed, %d duplicate deliveries",
		reloads, len(acked), delivered, unacked, failedCalls, duplicates)
	if duplicates > len(acked)/100 {
		t.Errorf("%d duplicate deliveries across %d reloads", duplicates, reloads)
	}
	for _, d := range rc.deliveries()[:5] {
		verify(t, hook.Secret, d)
	}
}

// TestCrashUnderLoad kills a real Caddy process with SIGKILL while events
// keep coming and are being delivered, restarts it on the same store, keeps
// the load up, and checks that every event the proxy acknowledged, before
// or after the crash, is delivered at least once. It reports the
// duplicates (deliveries in flight at the crash are sent again).
func TestCrashUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a Caddy binary")
	}
	bin := buildCaddy(t)
	home := t.TempDir()
	upstream := okUpstream()
	defer upstream.Close()

	// The receiver listens on a fixed port for the whole test, and takes
	// 10ms per delivery, so that a backlog builds up and deliveries are in
	// flight when the process is killed.
	rc := &receiver{status: http.StatusOK, notify: make(chan struct{}, 1)}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond)
		rc.serve(w, r)
	}))
	hookPort := freePort(t)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", hookPort))
	if err != nil {
		t.Fatal(err)
	}
	rc.srv.Listener = ln
	rc.srv.StartTLS()
	defer rc.srv.Close()

	adminPort, httpPort := freePort(t), freePort(t)
	config := filepath.Join(home, "Caddyfile")
	err = os.WriteFile(config, []byte(fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	echo3d_webhooks {
		storage %s
		retry 100ms 200ms 400ms 800ms
		timeout 2s
		allow_private_targets
		trusted_ca_file %s
	}
}
http://:%d {
	echo3d_webhooks
	reverse_proxy %s
}
`, adminPort, filepath.Join(home, "store"), writeCA(t, rc), httpPort, upstream.Listener.Addr())), 0o600)
	if err != nil {
		t.Fatal(err)
	}

	first := startCaddy(t, bin, config, home, adminPort)
	hook := createWebhookAt(t, fmt.Sprintf("http://localhost:%d", adminPort), "crash-load",
		fmt.Sprintf("https://127.0.0.1:%d/hook", hookPort), "crash-load", "CollectionMetadataAdd")

	gen := startLoad(fmt.Sprintf("http://127.0.0.1:%d", httpPort), "crash-load", 3)
	waitUntil(t, "load before the crash", 30*time.Second, func() bool { return gen.count() >= 300 })
	beforeKill := len(rc.deliveries())
	first.kill(t)
	ackedAtKill := gen.count()

	startCaddy(t, bin, config, home, adminPort)
	waitUntil(t, "load after the restart", 30*time.Second, func() bool { return gen.count() >= ackedAtKill+300 })
	acked, failedCalls := gen.finish()
	seen := waitAllDelivered(t, rc, acked, 60*time.Second)
	delivered, unacked, duplicates := summarize(seen, acked)
	t.Logf("crash under load: %d events acknowledged (%d before SIGKILL, when %d deliveries had arrived), %d delivered at least once, %d delivered though their call failed, %d calls failed, %d duplicate deliveries",
		len(acked), ackedAtKill, beforeKill, delivered, unacked, failedCalls, duplicates)
	for _, d := range rc.deliveries()[:5] {
		verify(t, hook.Secret, d)
	}
}
