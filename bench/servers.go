package main

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is a minimal echo3D stand-in: it answers as fast as it can and,
// for /post, remembers when it answered each value so the receiver can
// compute the event latency (upstream response → webhook arrival).
type upstream struct {
	srv       *httptest.Server
	responded sync.Map // value -> time.Time
}

func newUpstream() *upstream {
	u := &upstream{}
	entry := []byte(`{"id":"bench-entry","target":{"id":"t","type":"BRICK_TARGET","holograms":["h"]},"hologram":{"id":"h","type":"MODEL_HOLOGRAM","filename":"m.glb","storageID":"s"},"additionalData":{"glbHologramStorageID":"s.glb"}}`)
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/upload":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(entry)
		case "/post":
			v := r.URL.Query().Get("value")
			u.responded.Store(v, time.Now())
			_, _ = io.WriteString(w, v)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"apiKey":"bench-key","db":{}}`)
		}
	}))
	u.srv.Config.MaxHeaderBytes = 1 << 20
	u.srv.Start()
	return u
}

// receiver counts deliveries and records the latency of /post events.
type receiver struct {
	srv       *httptest.Server
	up        *upstream
	count     atomic.Int64
	conns     atomic.Int64 // connections accepted (each a TLS handshake)
	mu        sync.Mutex
	latencies []time.Duration
	arrivals  []time.Time
	record    atomic.Bool
}

func newReceiver(up *upstream) *receiver {
	rc := &receiver{up: up}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		body, _ := io.ReadAll(r.Body)
		rc.count.Add(1)
		if rc.record.Load() {
			var p struct {
				MetadataValues []string `json:"metadataValues"`
			}
			if json.Unmarshal(body, &p) == nil && len(p.MetadataValues) == 1 {
				if t0, ok := up.responded.Load(p.MetadataValues[0]); ok {
					rc.mu.Lock()
					rc.latencies = append(rc.latencies, now.Sub(t0.(time.Time)))
					rc.mu.Unlock()
				}
			}
			rc.mu.Lock()
			rc.arrivals = append(rc.arrivals, now)
			rc.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	// Offer h2 and http/1.1, as http.Server.ServeTLS does (httptest alone
	// offers only h2): the plugin's client picks (see its versions option).
	rc.srv.EnableHTTP2 = true
	rc.srv.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	rc.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.conns.Add(1)
		}
	}
	rc.srv.StartTLS()
	return rc
}

// reset clears the recorded latencies and arrivals and starts recording.
func (rc *receiver) reset() {
	rc.mu.Lock()
	rc.latencies, rc.arrivals = nil, nil
	rc.mu.Unlock()
	rc.record.Store(true)
}

// snapshot returns copies of the recorded latencies and arrival times.
func (rc *receiver) snapshot() ([]time.Duration, []time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]time.Duration(nil), rc.latencies...), append([]time.Time(nil), rc.arrivals...)
}

// writeCA writes the receiver's certificate as a PEM file in dir.
func (rc *receiver) writeCA(dir string) (string, error) {
	path := filepath.Join(dir, "receiver-ca.pem")
	cert := rc.srv.TLS.Certificates[0]
	var out []byte
	for _, der := range cert.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return path, os.WriteFile(path, out, 0o600)
}

// itoa is strconv.Itoa, short.
func itoa(i int) string { return strconv.Itoa(i) }

// must panics on error; the benchmark is a tool, not a server.
func must(err error, what string) {
	if err != nil {
		panic(fmt.Sprintf("%s: %v", what, err))
	}
}
