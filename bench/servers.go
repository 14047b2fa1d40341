package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is a minimal echo3D stand-in: it answers as fast as it can and,
// for /post, remembers when it answered each value so the receiver can
// compute the event latency (upstream response → webhook arrival).
type upstream struct {
	srv *httptest.Server
	// record is set while the event latencies are measured: only then
	// does /post remember its values, so that the map does not grow with
	// every request of the other phases, and its size does not weigh on
	// this process's garbage collections during the drains.
	record    atomic.Bool
	responded sync.Map // value -> time.Time
}

// recording starts or stops remembering /post's answers; stopping forgets
// them.
func (u *upstream) recording(on bool) {
	u.record.Store(on)
	if !on {
		u.responded.Clear()
	}
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
			if u.record.Load() {
				u.responded.Store(v, time.Now())
			}
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

// itoa is strconv.Itoa, short.
func itoa(i int) string { return strconv.Itoa(i) }

// must panics on error; the benchmark is a tool, not a server.
func must(err error, what string) {
	if err != nil {
		panic(fmt.Sprintf("%s: %v", what, err))
	}
}
