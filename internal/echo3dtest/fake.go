package echo3dtest

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
)

// DefaultProcessingDelay is how long an upload made with
// noProcessingWait=true stays unprocessed when Options.ProcessingDelay is 0.
const DefaultProcessingDelay = 2 * time.Second

// Plain-text messages of the fake API. The first three are echo3D's
// documented wording; the others follow the same style.
const (
	msgDataNotFound  = "Data not found"
	msgNoDataValue   = "Invalid request! No data value found in request."
	msgNoFileOrURL   = "Invalid request! No file or url found in request."
	msgNoKey         = "Invalid request! No key found in request."
	msgNoUserKey     = "Invalid request! No userKey found in request."
	msgNoEntry       = "Invalid request! No entry found in request."
	msgEntryNotFound = "Entry not found"
	msgNotFound      = "Not found"
)

// Options configures a fake echo3D Server.
type Options struct {
	// ProcessingDelay is how long an upload made with noProcessingWait=true
	// stays unprocessed. 0 means DefaultProcessingDelay.
	ProcessingDelay time.Duration
	// RequireKey makes every endpoint also require the user's personal
	// authentication key ("userKey"), as the current docs revision does;
	// requests without it get 401. The collection key ("key") is always
	// required.
	RequireKey bool
	// Now is the clock; nil means time.Now. Processing is evaluated lazily
	// against it whenever an entry is read.
	Now func() time.Time
}

// Server is a small, stateful fake of the echo3D REST API, for end-to-end
// tests and local demos. It implements /upload, /query, /get, /post,
// /remove, /batchpost and /delete, keeps one collection per "key", and is
// safe for concurrent use. Paths match case-insensitively and ignore a
// trailing slash; parameters are merged from the query string, an
// urlencoded body and multipart text fields, the query string first.
// Uploaded files are counted and discarded, never buffered.
type Server struct {
	opts Options

	mu          sync.Mutex
	collections map[string]*collection
}

// collection is the state kept for one collection key.
type collection struct {
	entries map[string]*entry
	data    map[string]string
}

// route is one endpoint of the fake API.
type route struct {
	methods []string
	handle  func(s *Server, w http.ResponseWriter, c *call)
}

// routes maps normalized paths to endpoints.
var routes = map[string]route{
	"/upload":    {[]string{http.MethodPost}, (*Server).upload},
	"/query":     {[]string{http.MethodGet, http.MethodPost}, (*Server).query},
	"/get":       {[]string{http.MethodGet}, (*Server).get},
	"/post":      {[]string{http.MethodPost}, (*Server).post},
	"/remove":    {[]string{http.MethodPost}, (*Server).remove},
	"/batchpost": {[]string{http.MethodPost}, (*Server).batchPost},
	"/delete":    {[]string{http.MethodGet, http.MethodPost, http.MethodDelete}, (*Server).delete},
}

// NewServer returns an empty fake echo3D API.
func NewServer(o Options) *Server {
	if o.ProcessingDelay <= 0 {
		o.ProcessingDelay = DefaultProcessingDelay
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Server{opts: o, collections: map[string]*collection{}}
}

// ServeHTTP answers one echo3D API call. Unknown paths get 404, a known
// path with the wrong method 405, unreadable parameters or a missing "key"
// 400.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := routes[normalizePath(r.URL.Path)]
	if !ok {
		writeText(w, http.StatusNotFound, msgNotFound)
		return
	}
	if !methodAllowed(rt.methods, r.Method) {
		w.Header().Set("Allow", strings.Join(rt.methods, ", "))
		writeText(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}
	c, err := readCall(r)
	if err != nil {
		writeText(w, http.StatusBadRequest, "Invalid request! "+err.Error())
		return
	}
	if c.key == "" {
		writeText(w, http.StatusBadRequest, msgNoKey)
		return
	}
	if s.opts.RequireKey && c.params.Get("userKey") == "" {
		writeText(w, http.StatusUnauthorized, msgNoUserKey)
		return
	}
	rt.handle(s, w, c)
}

// Entry returns the entry id of collection key as /query would show it
// now, and whether it exists.
func (s *Server) Entry(key, id string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.lookupEntry(key, id)
	if e == nil {
		return nil, false
	}
	body, err := json.Marshal(e.render())
	if err != nil {
		return nil, false
	}
	return body, true
}

// collectionFor returns the collection for key, creating it when create is
// set; otherwise it may return nil. s.mu must be held.
func (s *Server) collectionFor(key string, create bool) *collection {
	col := s.collections[key]
	if col == nil && create {
		col = &collection{entries: map[string]*entry{}, data: map[string]string{}}
		s.collections[key] = col
	}
	return col
}

// lookupEntry returns the entry id of collection key with its processing
// state brought up to date, or nil. s.mu must be held.
func (s *Server) lookupEntry(key, id string) *entry {
	col := s.collections[key]
	if col == nil {
		return nil
	}
	e := col.entries[id]
	if e == nil {
		return nil
	}
	e.settle(s.opts.Now())
	return e
}

// normalizePath lowercases a path and drops one trailing slash.
func normalizePath(p string) string {
	p = strings.ToLower(p)
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

// methodAllowed reports whether method is one of methods.
func methodAllowed(methods []string, method string) bool {
	for _, m := range methods {
		if m == method {
			return true
		}
	}
	return false
}

// writeText writes a plain-text response, echo3D's error and metadata
// format.
func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

// writeJSON writes v as a JSON response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "encoding response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
