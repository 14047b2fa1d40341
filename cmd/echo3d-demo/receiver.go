package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// console serialises the demo's output lines.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, format, args...)
}

// received is one delivery as the receiver saw it.
type received struct {
	payload  events.Payload
	verified bool
}

// receiver is the demo's HTTPS webhook receiver. It verifies each delivery
// with the Standard Webhooks reference library against the secrets of the
// registered webhooks, prints it, and answers 200, or the status named by a
// /status/<code> path (to watch retries, or a 410 disabling a webhook).
type receiver struct {
	out *console
	// secrets returns the signing secrets of every registered webhook; it
	// is asked again when no known secret verifies a delivery.
	secrets func(context.Context) ([]string, error)

	mu      sync.Mutex
	known   []string
	got     []received
	changed chan struct{} // closed and replaced on every delivery
}

func newReceiver(out *console, secrets func(context.Context) ([]string, error)) *receiver {
	return &receiver{out: out, secrets: secrets, changed: make(chan struct{})}
}

// ServeHTTP handles one delivery.
func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "webhook deliveries are POSTs", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	status := http.StatusOK
	if code, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
		if n, err := strconv.Atoi(code); err == nil && n >= 200 && n <= 599 {
			status = n
		}
	}
	verified, why := rc.verify(r.Context(), body, r.Header)
	var p events.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		p.Event = events.Trigger(fmt.Sprintf("(not a payload: %v)", err))
	}
	rc.out.printf("%s\n", deliveryLine(p, verified, why, status))

	rc.mu.Lock()
	rc.got = append(rc.got, received{p, verified})
	close(rc.changed)
	rc.changed = make(chan struct{})
	rc.mu.Unlock()
	w.WriteHeader(status)
}

// verify checks the signature against the known secrets, refreshing them
// once if none matches.
func (rc *receiver) verify(ctx context.Context, body []byte, h http.Header) (bool, string) {
	rc.mu.Lock()
	known := slices.Clone(rc.known)
	rc.mu.Unlock()
	if matches(known, body, h) {
		return true, ""
	}
	fresh, err := rc.secrets(ctx)
	if err != nil {
		return false, "cannot read the webhooks' secrets: " + err.Error()
	}
	rc.mu.Lock()
	rc.known = fresh
	rc.mu.Unlock()
	if matches(fresh, body, h) {
		return true, ""
	}
	return false, "no registered webhook's secret matches"
}

// matches reports whether any secret verifies the delivery.
func matches(secrets []string, body []byte, h http.Header) bool {
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err == nil && wh.Verify(body, h) == nil {
			return true
		}
	}
	return false
}

// deliveryLine formats one delivery for the console.
func deliveryLine(p events.Payload, verified bool, why string, status int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "      receiver <- %-24s", p.Event)
	if len(p.EntryIDs) > 0 {
		fmt.Fprintf(&b, "  entryIds=[%s]", strings.Join(p.EntryIDs, ","))
	}
	if len(p.MetadataKeys) > 0 {
		pairs := make([]string, len(p.MetadataKeys))
		for i, k := range p.MetadataKeys {
			v := ""
			if i < len(p.MetadataValues) {
				v = p.MetadataValues[i]
			}
			pairs[i] = k + "=" + strconv.Quote(v)
		}
		fmt.Fprintf(&b, "  metadata{%s}", strings.Join(pairs, " "))
	}
	if verified {
		b.WriteString("  signature verified: yes")
	} else {
		b.WriteString("  signature verified: NO (" + why + ")")
	}
	if status != http.StatusOK {
		fmt.Fprintf(&b, "  answered %d", status)
	}
	return b.String()
}

// waitFor waits until a verified delivery of every trigger of want for
// apiKey has arrived, or ctx ends. It reports whether all arrived.
func (rc *receiver) waitFor(ctx context.Context, apiKey string, want ...events.Trigger) bool {
	for {
		rc.mu.Lock()
		missing := rc.missing(apiKey, want)
		ch := rc.changed
		rc.mu.Unlock()
		if len(missing) == 0 {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// missing returns the triggers of want without a verified delivery for
// apiKey. rc.mu must be held.
func (rc *receiver) missing(apiKey string, want []events.Trigger) []events.Trigger {
	var out []events.Trigger
	for _, t := range want {
		if !slices.ContainsFunc(rc.got, func(r received) bool {
			return r.verified && r.payload.Event == t && r.payload.APIKey == apiKey
		}) {
			out = append(out, t)
		}
	}
	return out
}

// selfSigned returns a TLS certificate for 127.0.0.1, ::1 and localhost,
// valid for a day, and its PEM encoding for Caddy's trusted_ca_file.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("generating serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "echo3d-demo receiver"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("creating certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("encoding key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("loading certificate: %w", err)
	}
	return cert, certPEM, nil
}
