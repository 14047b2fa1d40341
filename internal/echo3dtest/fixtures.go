package echo3dtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

// FixturesEnv names the environment variable that, when set, points
// FixturesDir at a fixture directory.
const FixturesEnv = "ECHO3D_FIXTURES"

// Body kinds of a FixtureRequest.
const (
	BodyNone       = "none"
	BodyURLEncoded = "urlencoded"
	BodyMultipart  = "multipart"
)

// Fixture is one recorded echo3D exchange together with the webhook events
// the proxy is expected to derive from it. Its JSON form is described in
// echo3d-api.md §8.
type Fixture struct {
	// Name is the scenario name (the file name without ".json").
	Name string `json:"name"`
	// Description says what the scenario shows.
	Description string `json:"description"`
	// Request is the client's request as it reaches the proxy.
	Request FixtureRequest `json:"request"`
	// Response is the upstream's answer.
	Response FixtureResponse `json:"response"`
	// ExpectedEvents lists every event the exchange must produce, in order.
	// LoadFixtures fills APIKey with the request's "key" parameter, which
	// the files omit.
	ExpectedEvents []events.Payload `json:"expected_events"`
	// Unconfirmed lists the parts of the scenario that are assumptions.
	Unconfirmed []string `json:"unconfirmed"`
	// Context holds optional extra traffic (lookups, polls, known entries).
	Context FixtureContext `json:"context"`
	// File is the path the fixture was loaded from.
	File string `json:"-"`
}

// FixtureRequest is a recorded request. Exactly one of the body
// representations is used, according to BodyKind.
type FixtureRequest struct {
	// Method is the HTTP method.
	Method string
	// Path is the request path, for example "/upload".
	Path string
	// Query holds the decoded query string; comma lists stay one string.
	Query map[string]string
	// Headers holds the recorded request headers (one value each).
	Headers map[string]string
	// BodyKind is BodyNone, BodyURLEncoded or BodyMultipart.
	BodyKind string
	// Body holds the decoded fields of an urlencoded body.
	Body map[string]string
	// BodyRaw is the exact encoded urlencoded body, when recorded.
	BodyRaw string
	// Fields holds the text fields of a multipart body.
	Fields map[string]string
	// Files holds the file parts of a multipart body, in order.
	Files []FixtureFile
}

// FixtureFile is one file part of a multipart request body.
type FixtureFile struct {
	// Field is the form field name, for example "file" or "file_model".
	Field string `json:"field"`
	// Filename is the file name sent in the part's Content-Disposition.
	Filename string `json:"filename"`
	// ContentType is the part's Content-Type.
	ContentType string `json:"content_type"`
	// ContentBase64 is the file's content, base64 (standard) encoded.
	ContentBase64 string `json:"content_base64"`
	// Size is the decoded content's length in bytes.
	Size int64 `json:"size"`
}

// FixtureResponse is a recorded upstream response.
type FixtureResponse struct {
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Headers holds the recorded response headers (one value each).
	Headers map[string]string `json:"headers"`
	// Body is the raw JSON of the recorded body: a JSON object for JSON
	// responses, a JSON string for text responses. See ResponseBody.
	Body json.RawMessage `json:"body"`
}

// FixtureContext holds the optional traffic around a fixture's exchange.
type FixtureContext struct {
	// PriorValueLookup is the /get the proxy makes before forwarding a
	// /remove, to learn the value being removed.
	PriorValueLookup *Exchange `json:"prior_value_lookup"`
	// PollForProcessed describes the /query poll that detects processing
	// after a noProcessingWait upload. It is kept raw.
	PollForProcessed json.RawMessage `json:"poll_for_processed"`
	// KnownEntriesBeforeRequest lists entries that exist before the request.
	KnownEntriesBeforeRequest []string `json:"known_entries_before_request"`
}

// Exchange is one request and its response.
type Exchange struct {
	// Request is the request sent upstream.
	Request FixtureRequest `json:"request"`
	// Response is the upstream's answer.
	Response FixtureResponse `json:"response"`
}

// fixtureRequestJSON is the file form of a FixtureRequest, whose body has a
// different shape for each body kind.
type fixtureRequestJSON struct {
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Query    map[string]string `json:"query"`
	Headers  map[string]string `json:"headers"`
	BodyKind string            `json:"body_kind"`
	Body     json.RawMessage   `json:"body"`
	BodyRaw  string            `json:"body_raw"`
}

// multipartBodyJSON is the file form of a multipart body.
type multipartBodyJSON struct {
	Fields map[string]string `json:"fields"`
	Files  []FixtureFile     `json:"files"`
}

// UnmarshalJSON decodes the fixture file form of a request, whose "body"
// depends on "body_kind".
func (r *FixtureRequest) UnmarshalJSON(data []byte) error {
	var raw fixtureRequestJSON
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	req := FixtureRequest{
		Method:   raw.Method,
		Path:     raw.Path,
		Query:    raw.Query,
		Headers:  raw.Headers,
		BodyKind: raw.BodyKind,
		BodyRaw:  raw.BodyRaw,
	}
	if req.BodyKind == "" {
		req.BodyKind = BodyNone
	}
	hasBody := len(raw.Body) > 0 && string(raw.Body) != "null"
	switch req.BodyKind {
	case BodyNone:
		if hasBody || raw.BodyRaw != "" {
			return errors.New(`body_kind "none" with a body`)
		}
	case BodyURLEncoded:
		if hasBody {
			if err := json.Unmarshal(raw.Body, &req.Body); err != nil {
				return fmt.Errorf("urlencoded body: %w", err)
			}
		}
	case BodyMultipart:
		if hasBody {
			var mp multipartBodyJSON
			if err := json.Unmarshal(raw.Body, &mp); err != nil {
				return fmt.Errorf("multipart body: %w", err)
			}
			req.Fields, req.Files = mp.Fields, mp.Files
		}
	default:
		return fmt.Errorf("unknown body_kind %q", req.BodyKind)
	}
	*r = req
	return nil
}

// Header returns the recorded request header name, matched
// case-insensitively, or "".
func (r FixtureRequest) Header(name string) string {
	return lookupFold(r.Headers, name)
}

// Params returns the request's parameters merged the way echo3D clients
// spread them: the query string first, then the urlencoded body or the
// multipart text fields. Keys within each source are in sorted order.
func (r FixtureRequest) Params() url.Values {
	params := url.Values{}
	appendSorted(params, r.Query)
	switch r.BodyKind {
	case BodyURLEncoded:
		if r.BodyRaw != "" {
			if body, err := url.ParseQuery(r.BodyRaw); err == nil {
				for _, k := range sortedKeys(body) {
					params[k] = append(params[k], body[k]...)
				}
				return params
			}
		}
		appendSorted(params, r.Body)
	case BodyMultipart:
		appendSorted(params, r.Fields)
	}
	return params
}

// APIKey returns the collection key of the request (its "key" parameter).
func (r FixtureRequest) APIKey() string {
	return r.Params().Get("key")
}

// FixturesDir returns the directory holding the echo3D fixtures: the
// directory named by the ECHO3D_FIXTURES environment variable if it is set;
// otherwise the first "shared/fixtures/echo3d" found beside the working
// directory or any of its parents; otherwise the copy committed in this
// package's testdata/fixtures.
func FixturesDir() (string, error) {
	if dir := os.Getenv(FixturesEnv); dir != "" {
		if !isDir(dir) {
			return "", fmt.Errorf("%s=%q is not a directory", FixturesEnv, dir)
		}
		return dir, nil
	}
	if dir, ok := sharedFixturesDir(); ok {
		return dir, nil
	}
	if dir, ok := testdataFixturesDir(); ok {
		return dir, nil
	}
	return "", errors.New("echo3D fixtures not found: set " + FixturesEnv)
}

// sharedFixturesDir walks up from the working directory looking for
// shared/fixtures/echo3d next to the directory or one of its parents.
func sharedFixturesDir() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	return walkUpFrom(dir)
}

// walkUpFrom looks for shared/fixtures/echo3d beside dir and each of its
// parents.
func walkUpFrom(dir string) (string, bool) {
	for {
		candidate := filepath.Join(dir, "shared", "fixtures", "echo3d")
		if isDir(candidate) {
			return candidate, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// testdataFixturesDir returns the fixture copy committed beside this source
// file, if the source tree is available.
func testdataFixturesDir() (string, bool) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", false
	}
	dir := filepath.Join(filepath.Dir(file), "testdata", "fixtures")
	return dir, isDir(dir)
}

// LoadFixtures reads every *.json file in dir, in file name order.
func LoadFixtures(dir string) ([]Fixture, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("listing fixtures in %s: %w", dir, err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no fixtures (*.json) in %s", dir)
	}
	slices.Sort(paths)
	fixtures := make([]Fixture, 0, len(paths))
	for _, path := range paths {
		f, err := LoadFixture(path)
		if err != nil {
			return nil, err
		}
		fixtures = append(fixtures, f)
	}
	return fixtures, nil
}

// LoadFixture reads one fixture file.
func LoadFixture(path string) (Fixture, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Fixture{}, fmt.Errorf("reading fixture: %w", err)
	}
	var f Fixture
	if err := json.Unmarshal(data, &f); err != nil {
		return Fixture{}, fmt.Errorf("decoding fixture %s: %w", path, err)
	}
	if f.Request.Path == "" {
		return Fixture{}, fmt.Errorf("fixture %s: request has no path", path)
	}
	f.File = path
	key := f.Request.APIKey()
	for i := range f.ExpectedEvents {
		f.ExpectedEvents[i].APIKey = key
	}
	return f, nil
}

// lookupFold returns m[name] with name matched case-insensitively.
func lookupFold(m map[string]string, name string) string {
	if v, ok := m[name]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// appendSorted appends the pairs of m to params in key order.
func appendSorted(params url.Values, m map[string]string) {
	for _, k := range sortedKeys(m) {
		params.Add(k, m[k])
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// isDir reports whether path names a directory.
func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
