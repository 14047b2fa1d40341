package caddymodule_test

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// delivery is one webhook POST as a receiver saw it.
type delivery struct {
	Header http.Header
	Body   []byte
}

// receiver is a real HTTPS webhook receiver that records every POST and
// answers with status (200 unless set).
type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	got    []delivery
	status int
	notify chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{status: http.StatusOK, notify: make(chan struct{}, 1)}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.got = append(rc.got, delivery{Header: r.Header.Clone(), Body: body})
	status := rc.status
	rc.mu.Unlock()
	select {
	case rc.notify <- struct{}{}:
	default:
	}
	w.WriteHeader(status)
}

// url returns the receiver's URL for path.
func (rc *receiver) url(path string) string { return rc.srv.URL + path }

// deliveries returns a copy of what was received so far.
func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// waitFor waits until at least n deliveries arrived, or fails the test.
func (rc *receiver) waitFor(t *testing.T, n int, within time.Duration) []delivery {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		if got := rc.deliveries(); len(got) >= n {
			return got
		}
		select {
		case <-rc.notify:
		case <-deadline.C:
			t.Fatalf("receiver got %d deliveries, want %d within %s", len(rc.deliveries()), n, within)
		}
	}
}

// verify checks a delivery's Standard Webhooks signature with the reference
// library, as a receiver would.
func verify(t *testing.T, secret string, d delivery) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("reference library refused the secret: %v", err)
	}
	if err := wh.Verify(d.Body, d.Header); err != nil {
		t.Errorf("signature does not verify: %v (headers %v)", err, d.Header)
	}
}

// writeCA writes the certificate of the httptest TLS servers (they share
// one) to a PEM file for the app's trusted_ca_file option.
func writeCA(t *testing.T, rc *receiver) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "receivers-ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.srv.Certificate().Raw})
	if err := os.WriteFile(path, block, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
