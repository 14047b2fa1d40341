package echo3dtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// send performs req and returns the status, headers and body.
func send(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func TestReplayerAnswersFixtures(t *testing.T) {
	rp := NewReplayer()
	srv := httptest.NewServer(rp)
	defer srv.Close()

	for _, f := range loadAll(t) {
		t.Run(f.Name, func(t *testing.T) {
			rp.Set(f)
			req, err := f.NewRequest(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			status, header, body := send(t, req)
			if status != f.Response.Status {
				t.Errorf("status = %d, want %d", status, f.Response.Status)
			}
			if !bytes.Equal(body, f.ResponseBody()) {
				t.Errorf("body = %q, want %q", body, f.ResponseBody())
			}
			for k, v := range f.Response.Headers {
				if header.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, header.Get(k), v)
				}
			}

			got := rp.Requests()
			if len(got) != 1 {
				t.Fatalf("recorded %d requests, want 1", len(got))
			}
			wantBody, wantType, err := f.BodyBytes()
			if err != nil {
				t.Fatal(err)
			}
			rec := got[0]
			sum := sha256.Sum256(wantBody)
			if !bytes.Equal(rec.Body, wantBody) || rec.BodySHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("recorded body %q (sha %s), want %q", rec.Body, rec.BodySHA256, wantBody)
			}
			if rec.Method != f.Request.Method || rec.Path != f.Request.Path || rec.RawQuery != req.URL.RawQuery {
				t.Errorf("recorded %s %s?%s", rec.Method, rec.Path, rec.RawQuery)
			}
			if wantType != "" && rec.Header.Get("Content-Type") != wantType {
				t.Errorf("recorded Content-Type %q, want %q", rec.Header.Get("Content-Type"), wantType)
			}
		})
	}
}

func TestReplayerRouting(t *testing.T) {
	remove := fixtureNamed(t, "entry_metadata_remove")
	query := fixtureNamed(t, "query_read_only")
	tests := []struct {
		name       string
		fixture    *Fixture
		method     string
		path       string
		wantStatus int
		wantBody   string
	}{
		{name: "nothing set", method: "GET", path: "/query", wantStatus: 404, wantBody: "Data not found"},
		{name: "prior value lookup", fixture: &remove, method: "GET", path: "/get?key=k&data=material", wantStatus: 200, wantBody: "oak"},
		{name: "lookup path case-insensitive", fixture: &remove, method: "GET", path: "/GET?data=material", wantStatus: 200, wantBody: "oak"},
		{name: "lookup only by GET", fixture: &remove, method: "POST", path: "/get", wantStatus: 404, wantBody: "Data not found"},
		{name: "main path case-insensitive", fixture: &remove, method: "POST", path: "/Remove", wantStatus: 200, wantBody: "material"},
		{name: "main path other method", fixture: &remove, method: "GET", path: "/remove", wantStatus: 200, wantBody: "material"},
		{name: "other path", fixture: &remove, method: "POST", path: "/post", wantStatus: 404, wantBody: "Data not found"},
		{name: "no lookup in fixture", fixture: &query, method: "GET", path: "/get", wantStatus: 404, wantBody: "Data not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := NewReplayer()
			if tt.fixture != nil {
				rp.Set(*tt.fixture)
			}
			w := httptest.NewRecorder()
			rp.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
			if w.Code != tt.wantStatus || w.Body.String() != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Body.String(), tt.wantStatus, tt.wantBody)
			}
			if n := len(rp.Requests()); n != 1 {
				t.Errorf("recorded %d requests, want 1", n)
			}
		})
	}
}

func TestReplayerSetResetsRequests(t *testing.T) {
	rp := NewReplayer()
	f := fixtureNamed(t, "delete_single")
	rp.Set(f)
	for range 3 {
		rp.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/delete", strings.NewReader("x")))
	}
	if n := len(rp.Requests()); n != 3 {
		t.Fatalf("recorded %d requests, want 3", n)
	}
	rp.Set(f)
	if n := len(rp.Requests()); n != 0 {
		t.Fatalf("after Set: %d requests, want 0", n)
	}
}

func TestReplayerConcurrent(t *testing.T) {
	rp := NewReplayer()
	srv := httptest.NewServer(rp)
	defer srv.Close()
	rp.Set(fixtureNamed(t, "entry_metadata_post"))

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(srv.URL+"/post", "text/plain", strings.NewReader(fmt.Sprint(i)))
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
		go func() { _ = rp.Requests() }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for _, r := range rp.Requests() {
		seen[string(r.Body)] = true
	}
	if len(seen) != n {
		t.Errorf("recorded %d distinct bodies, want %d", len(seen), n)
	}
}
