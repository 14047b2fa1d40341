package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// receiverRole is the environment variable that makes the bench binary
// run as the HTTPS receiver (serveReceiver) instead of the benchmark.
const receiverRole = "ECHO3D_BENCH_ROLE=receiver"

// The receiver runs in a process of its own, as a real webhook receiver
// would. It still shares the machine's cores with Caddy, so its CPU counts
// against the plugin; but its goroutines and garbage collections no longer
// share the load generator's Go runtime. In one process, the receiver's
// work during the plugin's rounds delayed the load generator's own reads
// of Caddy's responses, and that delay was reported as latency the plugin
// added.

// receiverInfo is what the receiver process prints, as one JSON line, once
// it listens.
type receiverInfo struct {
	URL     string `json:"url"`     // the HTTPS receiver
	Control string `json:"control"` // plain-HTTP control endpoint on loopback
	Cert    []byte `json:"cert"`    // the receiver's certificate, DER
}

// receiverStats is the control endpoint's GET /stats.
type receiverStats struct {
	Count int64 `json:"count"` // requests received
	Conns int64 `json:"conns"` // connections accepted, each a TLS handshake
}

// arrival is one recorded /post event: the metadata value the upstream
// answered with, and when the webhook carrying it arrived (Unix nanos; one
// machine, so the two processes' wall clocks agree).
type arrival struct {
	Value string `json:"v"`
	At    int64  `json:"t"`
}

// serveReceiver runs the receiver process: an HTTPS server that offers h2
// and http/1.1, counts requests and, once told to record, keeps each
// event's value and arrival time. It serves until its standard input
// closes, so it never outlives the benchmark.
func serveReceiver() {
	var (
		count, conns atomic.Int64
		record       atomic.Bool
		mu           sync.Mutex
		arrivals     []arrival
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		body, _ := io.ReadAll(r.Body)
		count.Add(1)
		if record.Load() {
			var p struct {
				MetadataValues []string `json:"metadataValues"`
			}
			if json.Unmarshal(body, &p) == nil && len(p.MetadataValues) == 1 {
				mu.Lock()
				arrivals = append(arrivals, arrival{Value: p.MetadataValues[0], At: now.UnixNano()})
				mu.Unlock()
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	// Offer h2 and http/1.1, as http.Server.ServeTLS does (httptest alone
	// offers only h2): the plugin's client picks (see its versions option).
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(receiverStats{Count: count.Load(), Conns: conns.Load()})
	})
	mux.HandleFunc("POST /record", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		arrivals = nil
		mu.Unlock()
		record.Store(true)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /record", func(w http.ResponseWriter, _ *http.Request) {
		record.Store(false)
		mu.Lock()
		arrivals = nil
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /arrivals", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		out := append([]arrival(nil), arrivals...)
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(out)
	})
	ctl := httptest.NewServer(mux)
	defer ctl.Close()

	info := receiverInfo{URL: srv.URL, Control: ctl.URL, Cert: srv.Certificate().Raw}
	must(json.NewEncoder(os.Stdout).Encode(info), "announcing the receiver")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// receiver is the benchmark's handle on the receiver process.
type receiver struct {
	cmd   *exec.Cmd
	stdin io.Closer
	info  receiverInfo
	cert  *x509.Certificate
	up    *upstream
	ctl   *http.Client
}

// startReceiver starts this binary again as the receiver process. up is
// the upstream whose response times the event latencies are measured from.
func startReceiver(up *upstream) *receiver {
	exe, err := os.Executable()
	must(err, "finding the bench binary")
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), receiverRole)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	must(err, "receiver stdin")
	stdout, err := cmd.StdoutPipe()
	must(err, "receiver stdout")
	must(cmd.Start(), "starting the receiver process")
	rc := &receiver{cmd: cmd, stdin: stdin, up: up, ctl: &http.Client{Timeout: 30 * time.Second}}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	must(err, "reading the receiver's address")
	must(json.Unmarshal(line, &rc.info), "decoding the receiver's address")
	rc.cert, err = x509.ParseCertificate(rc.info.Cert)
	must(err, "parsing the receiver's certificate")
	return rc
}

// close stops the receiver process.
func (rc *receiver) close() {
	_ = rc.stdin.Close()
	_ = rc.cmd.Wait()
}

// url is the receiver's HTTPS base URL.
func (rc *receiver) url() string { return rc.info.URL }

// stats returns how many requests and connections the receiver has had.
func (rc *receiver) stats() receiverStats {
	resp, err := rc.ctl.Get(rc.info.Control + "/stats")
	must(err, "reading the receiver's counts")
	defer resp.Body.Close()
	var s receiverStats
	must(json.NewDecoder(resp.Body).Decode(&s), "decoding the receiver's counts")
	return s
}

// count returns how many requests the receiver has had.
func (rc *receiver) count() int64 { return rc.stats().Count }

// reset clears the recorded arrivals and starts recording, in the
// receiver and in the upstream.
func (rc *receiver) reset() {
	rc.up.recording(true)
	resp, err := rc.ctl.Post(rc.info.Control+"/record", "", nil)
	must(err, "starting the receiver's recording")
	resp.Body.Close()
}

// stopRecording stops recording, in the receiver and in the upstream, and
// forgets what was recorded: the phases after the latencies' do not pay
// for it (the receiver would decode every delivery's JSON).
func (rc *receiver) stopRecording() {
	rc.up.recording(false)
	req, err := http.NewRequest(http.MethodDelete, rc.info.Control+"/record", nil)
	must(err, "stopping the receiver's recording")
	resp, err := rc.ctl.Do(req)
	must(err, "stopping the receiver's recording")
	resp.Body.Close()
}

// latencies returns the event latency of each recorded arrival whose value
// the upstream answered with: upstream response → webhook arrival.
func (rc *receiver) latencies() []time.Duration {
	resp, err := rc.ctl.Get(rc.info.Control + "/arrivals")
	must(err, "reading the receiver's arrivals")
	defer resp.Body.Close()
	var arr []arrival
	must(json.NewDecoder(resp.Body).Decode(&arr), "decoding the receiver's arrivals")
	lat := make([]time.Duration, 0, len(arr))
	for _, a := range arr {
		if t0, ok := rc.up.responded.Load(a.Value); ok {
			lat = append(lat, time.Unix(0, a.At).Sub(t0.(time.Time)))
		}
	}
	return lat
}

// cpu returns the CPU time the receiver process has used.
func (rc *receiver) cpu() (time.Duration, bool) { return procCPU(rc.cmd.Process.Pid) }

// pool returns a pool that trusts the receiver's certificate.
func (rc *receiver) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(rc.cert)
	return pool
}

// writeCA writes the receiver's certificate as a PEM file in dir.
func (rc *receiver) writeCA(dir string) (string, error) {
	path := filepath.Join(dir, "receiver-ca.pem")
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.cert.Raw})
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return "", fmt.Errorf("writing the receiver's CA: %w", err)
	}
	return path, nil
}

// cpuSample is the CPU time this process and the receiver process have
// used so far: a drain's or a ceiling's cost covers both ends.
type cpuSample struct {
	ours, receiver time.Duration
	ok             bool
}

// cpuWithOurs samples the CPU time of both processes.
func (rc *receiver) cpuWithOurs() cpuSample {
	ours, ok1 := cpuTime()
	theirs, ok2 := rc.cpu()
	return cpuSample{ours: ours, receiver: theirs, ok: ok1 && ok2}
}
