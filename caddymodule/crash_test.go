package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// built is the Caddy binary built for this test process, once.
var built struct {
	once     sync.Once
	dir, bin string
	out      []byte
	err      error
}

// buildCaddy builds ./cmd/caddy (Caddy with the standard modules and this
// plugin) into a temporary directory, once per test process; TestMain
// removes it.
func buildCaddy(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "echo3d-caddy-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "caddy")
		built.out, built.err = exec.Command("go", "build", "-o", built.bin, "../cmd/caddy").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("building caddy: %v\n%s", built.err, built.out)
	}
	return built.bin
}

// removeBuiltCaddy deletes the binary buildCaddy made, if any.
func removeBuiltCaddy() {
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	p, err := pickPort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// caddyProc is a Caddy process started from the built binary.
type caddyProc struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan error
}

func startCaddy(t *testing.T, bin, config, home string, adminPort int) *caddyProc {
	t.Helper()
	cmd := exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	logs := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &caddyProc{cmd: cmd, logs: logs, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("caddy output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://localhost:%d/config/", adminPort))
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("caddy exited at start: %v\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy admin endpoint not up after 30s\n%s", logs.String())
		}
	}
}

// kill sends SIGKILL and waits for the process to end.
func (p *caddyProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-p.done
	p.done <- err
}

// TestCrashLosesNothing enqueues events while the receiver is down, kills
// the Caddy process with SIGKILL, restarts it on the same store and checks
// that every event is delivered afterwards (at least once, signed).
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a Caddy binary")
	}
	const events_ = 200
	bin := buildCaddy(t)
	home := t.TempDir()
	caSource := newReceiver(t)
	ca := writeCA(t, caSource)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, r.URL.Query().Get("value"))
	}))
	defer upstream.Close()

	adminPort, httpPort, hookPort := freePort(t), freePort(t), freePort(t)
	retries := "100ms 200ms 300ms" + strings.Repeat(" 500ms", 60)
	config := filepath.Join(home, "Caddyfile")
	err := os.WriteFile(config, []byte(fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	echo3d_webhooks {
		storage %s
		retry %s
		timeout 2s
		allow_private_targets
		trusted_ca_file %s
		breaker {
			pause 100ms
			max_pause 500ms
		}
	}
}
http://:%d {
	echo3d_webhooks
	reverse_proxy %s
}
`, adminPort, filepath.Join(home, "store"), retries, ca, httpPort, upstream.Listener.Addr())), 0o600)
	if err != nil {
		t.Fatal(err)
	}

	first := startCaddy(t, bin, config, home, adminPort)
	hook := createWebhookAt(t, fmt.Sprintf("http://localhost:%d", adminPort), "crash",
		fmt.Sprintf("https://127.0.0.1:%d/hook", hookPort), "crash-key", "CollectionMetadataAdd")

	// The receiver's port is closed: every attempt is refused and retried.
	for i := range events_ {
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/post?key=crash-key&data=n&value=%d", httpPort, i), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("proxied request %d: %d", i, resp.StatusCode)
		}
	}
	first.kill(t)

	// Receiver up, Caddy restarted on the same store.
	rc := &receiver{status: http.StatusOK, notify: make(chan struct{}, 1)}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", hookPort))
	if err != nil {
		t.Fatal(err)
	}
	rc.srv.Listener = ln
	rc.srv.StartTLS()
	defer rc.srv.Close()
	startCaddy(t, bin, config, home, adminPort)

	seen := map[string]int{}
	deadline := time.Now().Add(90 * time.Second)
	for len(seen) < events_ {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		select {
		case <-rc.notify:
		case <-ctx.Done():
		}
		cancel()
		seen = map[string]int{}
		for _, d := range rc.deliveries() {
			var p events.Payload
			if err := json.Unmarshal(d.Body, &p); err != nil {
				t.Fatalf("bad payload %q: %v", d.Body, err)
			}
			seen[p.MetadataValues[0]]++
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart %d of %d events delivered within 90s", len(seen), events_)
		}
	}
	got := rc.deliveries()
	for _, d := range got {
		verify(t, hook.Secret, d)
	}
	t.Logf("crash test: %d events enqueued before SIGKILL, %d distinct delivered after restart, %d deliveries in all (%d duplicates)",
		events_, len(seen), len(got), len(got)-len(seen))
}
