package caddymodule_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// transparencyUpstream serves the behaviours the proxy must pass through
// untouched, on echo3D paths the plugin watches (so its writer wrapper and
// request tee are in play) and on one it ignores.
type transparencyUpstream struct {
	release chan struct{} // lets the streaming handlers finish
	bodies  chan string   // "<method> <path> <len> <sha256>" of each request body
}

func (u *transparencyUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	select {
	case u.bodies <- fmt.Sprintf("%s %s %d %x", r.Method, r.URL.Path, n, h.Sum(nil)):
	default:
	}
	switch r.URL.Query().Get("mode") {
	case "fixed":
		body := strings.Repeat("fixed-length ", 1000)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = io.WriteString(w, body)
	case "chunked":
		for i := range 5 {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
		}
	case "gzip":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		fmt.Fprintf(zw, `{"id":"gz-%s","additionalData":{}}`, r.URL.Query().Get("n"))
		_ = zw.Close()
	case "sse":
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-u.release
		_, _ = io.WriteString(w, "data: last\n\n")
	case "early":
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"early-1","additionalData":{}}`)
	case "ws":
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString("echo: " + line)
		_ = brw.Flush()
	default:
		_, _ = io.WriteString(w, "ok")
	}
}

// TestTransparency runs the same requests through a site with the plugin
// and a site with plain reverse_proxy, in one Caddy, and requires identical
// responses and identical request bodies upstream; it also checks that
// streams are not held back and that upgrades and 1xx pass.
func TestTransparency(t *testing.T) {
	up := &transparencyUpstream{release: make(chan struct{}), bodies: make(chan string, 64)}
	upstream := httptest.NewServer(up)
	defer upstream.Close()
	defer close(up.release)
	rc := newReceiver(t)
	plainPort := freePort(t)
	plainURL := fmt.Sprintf("http://localhost:%d", plainPort)
	tester := newTester(t)
	load(t, tester, fmt.Sprintf(`{
	%s
	servers {
		protocols h1 h2c
	}
	echo3d_webhooks {
		storage memory
		allow_private_targets
		trusted_ca_file %s
	}
}
%s {
	echo3d_webhooks
	reverse_proxy %s {
		flush_interval -1
	}
}
%s {
	reverse_proxy %s {
		flush_interval -1
	}
}
`, globalHead(), writeCA(t, rc), proxyURL, upstream.Listener.Addr(), plainURL, upstream.Listener.Addr()))
	hook := createWebhook(t, "transparency", rc.url("/t"), "transparent-key", "Upload")

	plainClient := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(base, path string) (int, http.Header, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := plainClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		resp.Header.Del("Date")
		// The framing too: the plugin must not turn a
		// length-delimited response into a chunked one, nor the reverse.
		resp.Header["X-Framing"] = []string{fmt.Sprint(resp.ContentLength, resp.TransferEncoding)}
		return resp.StatusCode, resp.Header, body
	}
	for _, path := range []string{
		"/upload?mode=fixed&key=transparent-key",
		"/upload?mode=chunked&key=transparent-key",
		"/upload?mode=gzip&n=1&key=transparent-key",
		"/query?mode=fixed&key=transparent-key",
		"/download?mode=chunked",
	} {
		t.Run("response"+path, func(t *testing.T) {
			s1, h1, b1 := get(proxyURL, path)
			s2, h2, b2 := get(plainURL, path)
			if s1 != s2 || !bytes.Equal(b1, b2) || fmt.Sprint(h1) != fmt.Sprint(h2) {
				t.Errorf("with plugin %d %v %q\nwithout     %d %v %q", s1, h1, b1, s2, h2, b2)
			}
		})
	}
	// The gzip-encoded /upload response was decoded for the event, while
	// the client got the compressed bytes (compared above).
	got := rc.waitFor(t, 1, waitWithin)
	want, _ := jsonPayload(events.Upload, "transparent-key", "gz-1")
	if len(got) != 1 || string(got[0].Body) != want {
		t.Errorf("deliveries %d, first %q; want one Upload from the gzip-encoded response", len(got), got[0].Body)
	} else {
		verify(t, hook.Secret, got[0])
	}

	t.Run("request bodies", func(t *testing.T) {
		var mp bytes.Buffer
		mw := multipart.NewWriter(&mp)
		_ = mw.WriteField("key", "transparent-key")
		fw, _ := mw.CreateFormFile("file", "m.glb")
		_, _ = fw.Write(bytes.Repeat([]byte{0, 1, 2, 250}, 300000))
		_ = mw.Close()
		for _, tc := range []struct {
			name, ct string
			body     []byte
			chunked  bool
		}{
			{"multipart fixed", mw.FormDataContentType(), mp.Bytes(), false},
			{"multipart chunked", mw.FormDataContentType(), mp.Bytes(), true},
			{"urlencoded chunked", "application/x-www-form-urlencoded", []byte("key=transparent-key&data=a&value=" + strings.Repeat("v", 100000)), true},
			{"binary", "application/octet-stream", bytes.Repeat([]byte("xyz"), 100000), false},
		} {
			var seen []string
			for drained := false; !drained; {
				select {
				case <-up.bodies: // earlier requests' records
				default:
					drained = true
				}
			}
			for _, base := range []string{proxyURL, plainURL} {
				var rd io.Reader = bytes.NewReader(tc.body)
				if tc.chunked {
					rd = io.MultiReader(rd) // unknown length: sent chunked
				}
				req, _ := http.NewRequest(http.MethodPost, base+"/post", rd)
				req.Header.Set("Content-Type", tc.ct)
				resp, err := plainClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				seen = append(seen, <-up.bodies)
			}
			if seen[0] != seen[1] || !strings.Contains(seen[0], fmt.Sprint(len(tc.body))) {
				t.Errorf("%s: upstream saw %q with the plugin, %q without", tc.name, seen[0], seen[1])
			}
		}
	})

	t.Run("event stream not held back", func(t *testing.T) {
		for _, base := range []string{proxyURL, plainURL} {
			resp, err := plainClient.Post(base+"/upload?mode=sse&key=transparent-key", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			first := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(resp.Body).ReadString('\n')
				first <- line
			}()
			select {
			case line := <-first:
				if line != "data: first\n" {
					t.Errorf("%s: first line %q", base, line)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("%s: the first event did not arrive while the stream stayed open", base)
			}
			resp.Body.Close()
		}
	})

	t.Run("informational responses", func(t *testing.T) {
		var early []int
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			early = append(early, code)
			return nil
		}}
		req, _ := http.NewRequest(http.MethodPost, proxyURL+"/upload?mode=early&key=transparent-key", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, err := plainClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(early) != 1 || early[0] != http.StatusEarlyHints || resp.StatusCode != http.StatusOK {
			t.Errorf("client saw 1xx %v then %d, want [103] then 200", early, resp.StatusCode)
		}
		want, _ := jsonPayload(events.Upload, "transparent-key", "early-1")
		got := rc.waitFor(t, 2, waitWithin)
		found := false
		for _, d := range got {
			found = found || string(d.Body) == want
		}
		if !found {
			t.Errorf("no Upload for the response after a 103 (body %s)", body)
		}
	})

	t.Run("websocket upgrade", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /upload?mode=ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		fmt.Fprintf(conn, "hello\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "echo: hello\n" {
			t.Errorf("through the upgraded connection: %q %v", line, err)
		}
	})

	t.Run("HTTP/2", func(t *testing.T) {
		tr := &http.Transport{DisableCompression: true, Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		h2 := &http.Client{Transport: tr}
		for _, base := range []string{proxyURL, plainURL} {
			resp, err := h2.Post(base+"/upload?mode=chunked&key=transparent-key", "", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || !strings.HasPrefix(string(body), "chunk 0\n") {
				t.Errorf("%s: %s %q", base, resp.Proto, body)
			}
		}
	})
}

// jsonPayload is the exact delivery body of a one-entry event.
func jsonPayload(ev events.Trigger, key, id string) (string, error) {
	b, err := events.Payload{Event: ev, APIKey: key, EntryIDs: []string{id}}.MarshalJSON()
	return string(b), err
}
