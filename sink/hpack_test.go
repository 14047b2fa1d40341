package sink

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"

	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawH2Receiver is an HTTP/2 receiver at the frame level: it answers every
// request with 200 and sends the length of each request's header block
// (HPACK-encoded) on blocks.
func rawH2Receiver(t *testing.T) (url string, roots *httptest.Server, blocks <-chan int) {
	t.Helper()
	// Borrow httptest's certificate, then serve frames by hand.
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	cfg := srv.TLS.Clone()
	srv.Close()
	cfg.NextProtos = []string{"h2"}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan int, 16)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(conn, preface); err != nil || string(preface) != http2.ClientPreface {
			return
		}
		fr := http2.NewFramer(conn, conn)
		if fr.WriteSettings() != nil {
			return
		}
		var resp bytes.Buffer
		enc := hpack.NewEncoder(&resp)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			var ended bool
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() && fr.WriteSettingsAck() != nil {
					return
				}
			case *http2.HeadersFrame:
				out <- len(f.HeaderBlockFragment())
				ended = f.StreamEnded()
			case *http2.DataFrame:
				ended = f.StreamEnded()
			}
			if !ended {
				continue
			}
			resp.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			err = fr.WriteHeaders(http2.HeadersFrameParam{
				StreamID: f.Header().StreamID, BlockFragment: resp.Bytes(), EndStream: true, EndHeaders: true,
			})
			if err != nil {
				return
			}
		}
	}()
	return "https://" + ln.Addr().String(), srv, out
}

// TestClientDoesNotIndexHeaders: over HTTP/2 the client sends header fields
// without adding them to HPACK's dynamic table. Every delivery carries
// values seen once (webhook-id, webhook-timestamp, webhook-signature), so
// indexing them cost both ends CPU for entries never used again, and the
// churn evicted the fields that do repeat. So the second delivery's header
// block is as long as the first's (which alone carries the table size
// update), where indexing would have shrunk it to references.
func TestClientDoesNotIndexHeaders(t *testing.T) {
	url, srv, blocks := rawH2Receiver(t)
	c := NewClient(ClientOptions{Policy: Policy{AllowPrivate: true}, RootCAs: certPool(srv)})
	var lens []int
	for i := range 2 {
		req, err := http.NewRequest(http.MethodPost, url+"/hook", strings.NewReader(`{"event":"Upload"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "caddy-echo3d-webhooks")
		req.Header["webhook-id"] = []string{fmt.Sprintf("msg_%026d", i)}
		req.Header["webhook-timestamp"] = []string{fmt.Sprint(1795740000 + i)}
		req.Header["webhook-signature"] = []string{fmt.Sprintf("v1,%044d", i)}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
		}
		lens = append(lens, <-blocks)
	}
	t.Logf("header blocks of %d and %d bytes", lens[0], lens[1])
	if lens[1] < lens[0]-1 {
		t.Fatalf("header blocks of %d then %d bytes: the second refers to fields the first indexed", lens[0], lens[1])
	}
}
