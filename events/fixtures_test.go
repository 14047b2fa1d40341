package events

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixture is one file of shared/fixtures/echo3d (format: echo3d-api.md §8).
type fixture struct {
	Name    string `json:"name"`
	Request struct {
		Method   string            `json:"method"`
		Path     string            `json:"path"`
		Query    map[string]string `json:"query"`
		Headers  map[string]string `json:"headers"`
		BodyKind string            `json:"body_kind"`
		Body     json.RawMessage   `json:"body"`
		BodyRaw  string            `json:"body_raw"`
	} `json:"request"`
	Response       fixtureResponse `json:"response"`
	ExpectedEvents []struct {
		Event          string   `json:"event"`
		EntryIDs       []string `json:"entryIds"`
		MetadataKeys   []string `json:"metadataKeys"`
		MetadataValues []string `json:"metadataValues"`
	} `json:"expected_events"`
	Context struct {
		PriorValueLookup *struct {
			Request struct {
				Method string            `json:"method"`
				Path   string            `json:"path"`
				Query  map[string]string `json:"query"`
			} `json:"request"`
			Response fixtureResponse `json:"response"`
		} `json:"prior_value_lookup"`
	} `json:"context"`
}

// fixtureResponse is a recorded response; Body is JSON or a JSON string.
type fixtureResponse struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// bytes returns the body as the wire carried it: a text body as is, a JSON
// body re-marshalled.
func (r fixtureResponse) bytes(t *testing.T) []byte {
	t.Helper()
	raw := bytes.TrimSpace(r.Body)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		return []byte(s)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// text returns a text body, "" when it is not a JSON string.
func (r fixtureResponse) text() string {
	var s string
	if json.Unmarshal(r.Body, &s) != nil {
		return ""
	}
	return s
}

// fixtureDir finds shared/fixtures/echo3d beside the repository root by
// walking up from the working directory.
func fixtureDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		candidate := filepath.Join(dir, "shared", "fixtures", "echo3d")
		if fi, err := os.Stat(candidate); err == nil && fi.IsDir() {
			return candidate
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("shared/fixtures/echo3d not found above the working directory; skipping fixture tests")
		}
		dir = parent
	}
}

func TestFixtures(t *testing.T) {
	dir := fixtureDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no fixtures in %s", dir)
	}
	rs, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var fx fixture
			if err := json.Unmarshal(raw, &fx); err != nil {
				t.Fatalf("decoding fixture: %v", err)
			}
			runFixture(t, rs, &fx)
		})
	}
}

// runFixture checks one fixture end to end, the way the handler uses the
// package: match, capture parameters (lookup rules before forwarding,
// others through the tee), look up, derive.
func runFixture(t *testing.T, rs *RuleSet, fx *fixture) {
	rule := rs.Match(fx.Request.Method, fx.Request.Path)

	var params Params
	query := make(url.Values)
	for k, v := range fx.Request.Query {
		query.Set(k, v)
	}
	params.AddQuery(query.Encode())

	contentType := fx.Request.Headers["Content-Type"]
	body := fixtureBody(t, fx, contentType)
	if rule != nil && rule.NeedsLookup() {
		replay, complete, err := PreRead(io.NopCloser(bytes.NewReader(body)), contentType, Limits{}, &params)
		if err != nil || !complete {
			t.Fatalf("PreRead: complete=%v err=%v", complete, err)
		}
		got, err := readChunked(replay, 7)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("PreRead replay differs (err %v):\n got %q\nwant %q", err, got, body)
		}
	} else {
		tee := NewBodyTee(io.NopCloser(bytes.NewReader(body)), contentType, Limits{})
		got, err := readChunked(tee, 7)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("tee passed different bytes (err %v):\n got %q\nwant %q", err, got, body)
		}
		if err := tee.Close(); err != nil {
			t.Fatal(err)
		}
		if !tee.Finish(&params) {
			t.Fatal("tee: capture reported incomplete")
		}
	}
	checkFixtureParams(t, fx, &params)

	x := Exchange{
		Params:       &params,
		Status:       fx.Response.Status,
		Body:         fx.Response.bytes(t),
		BodyComplete: true,
	}
	if lk := fx.Context.PriorValueLookup; lk != nil {
		if rule == nil || !rule.NeedsLookup() {
			t.Fatal("fixture has a prior-value lookup but the rule needs none")
		}
		path, q, ok := rule.LookupQuery(&params)
		if !ok {
			t.Fatal("LookupQuery: ok = false")
		}
		want := make(url.Values)
		for k, v := range lk.Request.Query {
			want.Set(k, v)
		}
		if path != lk.Request.Path || !reflect.DeepEqual(q, want) {
			t.Fatalf("lookup = %s?%s, want %s?%s", path, q.Encode(), lk.Request.Path, want.Encode())
		}
		if lk.Request.Method != "GET" {
			t.Fatalf("fixture lookup method %q: the handler makes GET lookups", lk.Request.Method)
		}
		x.PriorValue = lk.Response.text()
	}

	var got []Payload
	if rule != nil {
		got = rule.Derive(x)
	}
	want := make([]Payload, 0, len(fx.ExpectedEvents))
	for _, e := range fx.ExpectedEvents {
		want = append(want, Payload{
			Event:          Trigger(e.Event),
			APIKey:         params.Get("key"),
			EntryIDs:       e.EntryIDs,
			MetadataKeys:   e.MetadataKeys,
			MetadataValues: e.MetadataValues,
		})
	}
	if len(want) == 0 {
		if len(got) != 0 {
			t.Fatalf("derived %+v, want nothing", got)
		}
		return
	}
	if params.Get("key") == "" {
		t.Fatal("fixture expects events but has no key")
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("derived\n %+v\nwant\n %+v", got, want)
	}
	for i := range got {
		gb, err := json.Marshal(got[i])
		if err != nil {
			t.Fatal(err)
		}
		wb, _ := json.Marshal(want[i])
		if !bytes.Equal(gb, wb) || !bytes.HasPrefix(gb, []byte(`{"event":`)) {
			t.Fatalf("payload JSON %s, want %s", gb, wb)
		}
	}
}

// fixtureBody builds the request body on the wire: body_raw for an
// urlencoded body, a real multipart body for a multipart one.
func fixtureBody(t *testing.T, fx *fixture, contentType string) []byte {
	t.Helper()
	switch fx.Request.BodyKind {
	case "", "none":
		return nil
	case "urlencoded":
		return []byte(fx.Request.BodyRaw)
	case "multipart":
		_, mp, err := mime.ParseMediaType(contentType)
		if err != nil || mp["boundary"] == "" {
			t.Fatalf("multipart fixture content type %q: %v", contentType, err)
		}
		var mb struct {
			Fields map[string]string `json:"fields"`
			Files  []struct {
				Field         string `json:"field"`
				Filename      string `json:"filename"`
				ContentType   string `json:"content_type"`
				ContentBase64 string `json:"content_base64"`
				Size          int    `json:"size"`
			} `json:"files"`
		}
		if err := json.Unmarshal(fx.Request.Body, &mb); err != nil {
			t.Fatal(err)
		}
		var files []testFile
		for _, f := range mb.Files {
			content, err := base64.StdEncoding.DecodeString(f.ContentBase64)
			if err != nil {
				t.Fatal(err)
			}
			if len(content) != f.Size {
				t.Fatalf("file %s: %d bytes, fixture says %d", f.Filename, len(content), f.Size)
			}
			files = append(files, testFile{f.Field, f.Filename, f.ContentType, content})
		}
		return buildMultipart(t, mp["boundary"], mb.Fields, files)
	}
	t.Fatalf("unknown body_kind %q", fx.Request.BodyKind)
	return nil
}

// checkFixtureParams checks that every query and body text field of the
// fixture reached params, and that no file part did.
func checkFixtureParams(t *testing.T, fx *fixture, params *Params) {
	t.Helper()
	want := make(map[string]string)
	for k, v := range fx.Request.Query {
		want[k] = v
	}
	switch fx.Request.BodyKind {
	case "urlencoded":
		var fields map[string]string
		if err := json.Unmarshal(fx.Request.Body, &fields); err != nil {
			t.Fatal(err)
		}
		for k, v := range fields {
			want[k] = v
		}
	case "multipart":
		var mb struct {
			Fields map[string]string `json:"fields"`
		}
		if err := json.Unmarshal(fx.Request.Body, &mb); err != nil {
			t.Fatal(err)
		}
		for k, v := range mb.Fields {
			want[k] = v
		}
	}
	if params.Len() != len(want) {
		t.Fatalf("captured %d params %q, want %d", params.Len(), paramList(params), len(want))
	}
	for k, v := range want {
		if got := params.Get(k); got != v {
			t.Fatalf("param %s = %q, want %q", k, got, v)
		}
	}
}
