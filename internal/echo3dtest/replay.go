package echo3dtest

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Replayer is an http.Handler that answers with the recorded traffic of one
// fixture at a time and records every request it receives. It is safe for
// concurrent use.
type Replayer struct {
	mu       sync.Mutex
	fixture  *Fixture
	received []Received
}

// Received is one request as a Replayer got it. The body is read fully,
// so tests can check that a proxy forwarded it byte for byte.
type Received struct {
	// Method is the request method.
	Method string
	// Path is the request's URL path.
	Path string
	// RawQuery is the request's encoded query string.
	RawQuery string
	// Header is a copy of the request headers.
	Header http.Header
	// Body is the full request body.
	Body []byte
	// BodySHA256 is the hex SHA-256 of Body.
	BodySHA256 string
}

// NewReplayer returns a Replayer that answers 404 to everything until Set
// is called.
func NewReplayer() *Replayer {
	return &Replayer{}
}

// Set makes the Replayer answer from f and forgets the requests received so
// far. A request whose method and path match f.Request gets f.Response; a
// GET to the path of f.Context.PriorValueLookup gets that lookup's
// response; any other request to f.Request's path gets f.Response too.
// Paths match case-insensitively. Everything else gets 404 "Data not found".
func (r *Replayer) Set(f Fixture) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fixture = &f
	r.received = nil
}

// Requests returns the requests received since the last Set, in arrival
// order.
func (r *Replayer) Requests() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Received, len(r.received))
	copy(out, r.received)
	return out
}

// ServeHTTP records the request and answers it from the current fixture.
func (r *Replayer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, "reading request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(body)
	rec := Received{
		Method:     req.Method,
		Path:       req.URL.Path,
		RawQuery:   req.URL.RawQuery,
		Header:     req.Header.Clone(),
		Body:       body,
		BodySHA256: hex.EncodeToString(sum[:]),
	}

	r.mu.Lock()
	r.received = append(r.received, rec)
	resp, ok := r.match(req.Method, req.URL.Path)
	r.mu.Unlock()

	if !ok {
		writeText(w, http.StatusNotFound, msgDataNotFound)
		return
	}
	writeRecorded(w, resp)
}

// match picks the recorded response for a request. r.mu must be held.
func (r *Replayer) match(method, path string) (FixtureResponse, bool) {
	f := r.fixture
	if f == nil {
		return FixtureResponse{}, false
	}
	main := strings.EqualFold(path, f.Request.Path)
	if main && strings.EqualFold(method, f.Request.Method) {
		return f.Response, true
	}
	if lookup := f.Context.PriorValueLookup; lookup != nil &&
		method == http.MethodGet && strings.EqualFold(path, lookup.Request.Path) {
		return lookup.Response, true
	}
	if main {
		return f.Response, true
	}
	return FixtureResponse{}, false
}

// writeRecorded writes a recorded response: headers, status and body.
func writeRecorded(w http.ResponseWriter, resp FixtureResponse) {
	body := resp.BodyBytes()
	for _, k := range sortedKeys(resp.Headers) {
		if http.CanonicalHeaderKey(k) == "Content-Length" {
			continue
		}
		w.Header().Set(k, resp.Headers[k])
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
