package caddymodule_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestVersionsPickTheDeliveryProtocol: by default deliveries go over
// HTTP/1.1, even to a receiver that offers HTTP/2; `versions 1.1 2` speaks
// HTTP/2 to it.
func TestVersionsPickTheDeliveryProtocol(t *testing.T) {
	var mu sync.Mutex
	protos := map[string]string{} // metadata value -> protocol it came over
	arrived := make(chan struct{}, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		protos[string(body)] = r.Proto
		mu.Unlock()
		arrived <- struct{}{}
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	srv.StartTLS()
	defer srv.Close()
	upstream := okUpstream()
	defer upstream.Close()
	ca := writeCA(t, &receiver{srv: srv})
	dir := filepath.Join(t.TempDir(), "store")
	tester := newTester(t)

	for i, tc := range []struct{ versions, want string }{
		{"", "HTTP/1.1"},
		{"versions 1.1 2", "HTTP/2.0"},
		{"versions 1.1", "HTTP/1.1"},
	} {
		opts := fmt.Sprintf("\t\tstorage %s\n\t\tallow_private_targets\n\t\ttrusted_ca_file %s\n\t\t%s", dir, ca, tc.versions)
		load(t, tester, configWith("", opts, upstream.Listener.Addr().String()))
		if i == 0 {
			createWebhook(t, "versions", srv.URL+"/hook", "versions-key", "CollectionMetadataAdd")
		}
		value := fmt.Sprint("v", i)
		postMetadata(t, "versions-key", "k", value)
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: no delivery arrived", tc.versions)
		}
		mu.Lock()
		var got string
		for body, proto := range protos {
			if want := fmt.Sprintf(`"metadataValues":["%s"]`, value); strings.Contains(body, want) {
				got = proto
			}
		}
		mu.Unlock()
		if got != tc.want {
			t.Errorf("%q: delivery came over %q, want %q", tc.versions, got, tc.want)
		}
	}
}
