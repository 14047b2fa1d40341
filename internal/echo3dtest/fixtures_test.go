package echo3dtest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

const fixtureKey = "quiet-river-1234"

// loadAll loads every fixture from FixturesDir.
func loadAll(t *testing.T) []Fixture {
	t.Helper()
	dir, err := FixturesDir()
	if err != nil {
		t.Fatalf("FixturesDir: %v", err)
	}
	fixtures, err := LoadFixtures(dir)
	if err != nil {
		t.Fatalf("LoadFixtures: %v", err)
	}
	return fixtures
}

// fixtureNamed returns the fixture with the given name.
func fixtureNamed(t *testing.T, name string) Fixture {
	t.Helper()
	for _, f := range loadAll(t) {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no fixture %q", name)
	return Fixture{}
}

func TestLoadFixtures(t *testing.T) {
	fixtures := loadAll(t)
	if len(fixtures) < 16 {
		t.Fatalf("loaded %d fixtures, want at least 16", len(fixtures))
	}
	for i, f := range fixtures {
		t.Run(f.Name, func(t *testing.T) {
			if i > 0 && fixtures[i-1].File >= f.File {
				t.Errorf("fixtures not sorted: %s after %s", f.File, fixtures[i-1].File)
			}
			if want := strings.TrimSuffix(filepath.Base(f.File), ".json"); f.Name != want {
				t.Errorf("Name = %q, file %q", f.Name, want)
			}
			if got := f.Request.APIKey(); got != fixtureKey {
				t.Errorf("request key = %q, want %q", got, fixtureKey)
			}
			if f.Response.Status == 0 || len(f.Response.Body) == 0 {
				t.Errorf("response not loaded: %+v", f.Response)
			}
			for _, p := range f.ExpectedEvents {
				if p.APIKey != fixtureKey {
					t.Errorf("event %s apiKey = %q, want %q", p.Event, p.APIKey, fixtureKey)
				}
				if !events.ValidTrigger(string(p.Event)) {
					t.Errorf("unknown trigger %q", p.Event)
				}
				if len(p.MetadataKeys) != len(p.MetadataValues) {
					t.Errorf("event %s: %d keys, %d values", p.Event, len(p.MetadataKeys), len(p.MetadataValues))
				}
			}
			checkExpectedEvent(t, f)
		})
	}
}

// checkExpectedEvent checks that the file's expected_event is the first of
// its expected_events (or null when there are none).
func checkExpectedEvent(t *testing.T, f Fixture) {
	t.Helper()
	data, err := os.ReadFile(f.File)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		ExpectedEvent *events.Payload `json:"expected_event"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if len(f.ExpectedEvents) == 0 {
		if raw.ExpectedEvent != nil {
			t.Errorf("expected_event %+v but no expected_events", raw.ExpectedEvent)
		}
		return
	}
	if raw.ExpectedEvent == nil {
		t.Fatal("expected_event is null but expected_events is not empty")
	}
	raw.ExpectedEvent.APIKey = fixtureKey
	if !reflect.DeepEqual(*raw.ExpectedEvent, f.ExpectedEvents[0]) {
		t.Errorf("expected_event %+v != expected_events[0] %+v", *raw.ExpectedEvent, f.ExpectedEvents[0])
	}
}

func TestLoadFixtureContext(t *testing.T) {
	tests := []struct {
		name       string
		lookup     string // value the prior lookup answers, "" for none
		poll       bool
		knownCount int
	}{
		{name: "collection_metadata_remove", lookup: "night"},
		{name: "entry_metadata_remove", lookup: "oak"},
		{name: "upload_no_processing_wait", poll: true},
		{name: "upload_new_version_edit", knownCount: 1},
		{name: "delete_single"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fixtureNamed(t, tt.name)
			ctx := f.Context
			switch {
			case tt.lookup == "" && ctx.PriorValueLookup != nil:
				t.Errorf("unexpected prior lookup")
			case tt.lookup != "":
				if ctx.PriorValueLookup == nil {
					t.Fatal("no prior lookup")
				}
				lk := ctx.PriorValueLookup
				if lk.Request.Method != "GET" || lk.Request.Path != "/get" {
					t.Errorf("lookup request = %s %s", lk.Request.Method, lk.Request.Path)
				}
				if got := string(lk.Response.BodyBytes()); got != tt.lookup {
					t.Errorf("lookup response = %q, want %q", got, tt.lookup)
				}
			}
			if got := len(ctx.PollForProcessed) > 0; got != tt.poll {
				t.Errorf("poll present = %v, want %v", got, tt.poll)
			}
			if len(ctx.KnownEntriesBeforeRequest) != tt.knownCount {
				t.Errorf("known entries = %v, want %d", ctx.KnownEntriesBeforeRequest, tt.knownCount)
			}
		})
	}
}

func TestFixtureCopyInSync(t *testing.T) {
	shared, ok := sharedFixturesDir()
	if !ok {
		t.Skip("shared/fixtures/echo3d not found beside the working directory")
	}
	copyDir, ok := testdataFixturesDir()
	if !ok {
		t.Fatal("testdata/fixtures missing")
	}
	names := func(dir string) []string {
		paths, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(paths))
		for i, p := range paths {
			out[i] = filepath.Base(p)
		}
		return out
	}
	sharedNames, copyNames := names(shared), names(copyDir)
	if !reflect.DeepEqual(sharedNames, copyNames) {
		t.Fatalf("file sets differ:\nshared:   %v\ntestdata: %v\n(cp %s/*.json internal/echo3dtest/testdata/fixtures/)",
			sharedNames, copyNames, shared)
	}
	for _, name := range sharedNames {
		a, err := os.ReadFile(filepath.Join(shared, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(copyDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("testdata/fixtures/%s differs from %s", name, filepath.Join(shared, name))
		}
	}
}

func TestFixturesDir(t *testing.T) {
	tmp := t.TempDir()
	tests := []struct {
		name    string
		env     string
		chdir   string
		want    string
		wantErr bool
	}{
		{name: "env directory", env: tmp, want: tmp},
		{name: "env not a directory", env: filepath.Join(tmp, "missing"), wantErr: true},
		{name: "no env", env: ""},
		{name: "testdata fallback", env: "", chdir: tmp, want: mustTestdataDir(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(FixturesEnv, tt.env)
			if tt.chdir != "" {
				if _, found := walkUpFrom(tt.chdir); found {
					t.Skip("a shared/fixtures/echo3d exists above the temp dir")
				}
				t.Chdir(tt.chdir)
			}
			got, err := FixturesDir()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("FixturesDir() = %q, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("FixturesDir: %v", err)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("FixturesDir() = %q, want %q", got, tt.want)
			}
			if !isDir(got) {
				t.Errorf("FixturesDir() = %q is not a directory", got)
			}
		})
	}
}

// mustTestdataDir returns this package's testdata/fixtures.
func mustTestdataDir(t *testing.T) string {
	t.Helper()
	dir, ok := testdataFixturesDir()
	if !ok {
		t.Fatal("testdata/fixtures missing")
	}
	return dir
}

func TestLoadFixturesErrors(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{name: "empty dir", wantErr: "no fixtures"},
		{name: "bad json", files: map[string]string{"a.json": "{"}, wantErr: "a.json"},
		{name: "bad body kind", files: map[string]string{
			"b.json": `{"request":{"path":"/x","body_kind":"xml"}}`}, wantErr: "b.json"},
		{name: "no path", files: map[string]string{"c.json": `{"request":{}}`}, wantErr: "c.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadFixtures(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadFixtures error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestBodyBytes(t *testing.T) {
	for _, f := range loadAll(t) {
		t.Run(f.Name, func(t *testing.T) {
			body, contentType, err := f.BodyBytes()
			if err != nil {
				t.Fatalf("BodyBytes: %v", err)
			}
			switch f.Request.BodyKind {
			case BodyNone:
				if body != nil || contentType != "" {
					t.Errorf("BodyBytes() = %q, %q; want nil, empty", body, contentType)
				}
			case BodyURLEncoded:
				checkURLEncoded(t, f, body, contentType)
			case BodyMultipart:
				checkMultipart(t, f, body, contentType)
			default:
				t.Fatalf("unexpected body kind %q", f.Request.BodyKind)
			}
		})
	}
}

// checkURLEncoded checks an urlencoded body against the fixture.
func checkURLEncoded(t *testing.T, f Fixture, body []byte, contentType string) {
	t.Helper()
	if f.Request.BodyRaw == "" {
		t.Fatal("urlencoded fixture without body_raw")
	}
	if string(body) != f.Request.BodyRaw {
		t.Errorf("body = %q, want body_raw %q", body, f.Request.BodyRaw)
	}
	if contentType != "application/x-www-form-urlencoded" {
		t.Errorf("content type = %q", contentType)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k := range form {
		got[k] = form.Get(k)
	}
	if !reflect.DeepEqual(got, f.Request.Body) {
		t.Errorf("decoded body %v, want %v", got, f.Request.Body)
	}
}

// checkMultipart parses a multipart body back and compares it with the
// fixture's fields and files.
func checkMultipart(t *testing.T, f Fixture, body []byte, contentType string) {
	t.Helper()
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != "multipart/form-data" {
		t.Fatalf("content type %q: %v", contentType, err)
	}
	if want := recordedBoundary(f.Request.Header("Content-Type")); params["boundary"] != want {
		t.Errorf("boundary = %q, want recorded %q", params["boundary"], want)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	fields := map[string]string{}
	var files []FixtureFile
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("NextPart: %v", err)
		}
		data, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		if part.FileName() == "" {
			fields[part.FormName()] = string(data)
			continue
		}
		files = append(files, FixtureFile{
			Field:         part.FormName(),
			Filename:      part.FileName(),
			ContentType:   part.Header.Get("Content-Type"),
			ContentBase64: base64.StdEncoding.EncodeToString(data),
			Size:          int64(len(data)),
		})
	}
	if !reflect.DeepEqual(fields, nonNil(f.Request.Fields)) {
		t.Errorf("fields = %v, want %v", fields, f.Request.Fields)
	}
	if len(files) != len(f.Request.Files) {
		t.Fatalf("got %d files, want %d", len(files), len(f.Request.Files))
	}
	for i, want := range f.Request.Files {
		if files[i] != want {
			t.Errorf("file %d = %+v, want %+v", i, files[i], want)
		}
	}
}

// nonNil returns m, or an empty map for nil.
func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func TestBodyBytesBuilt(t *testing.T) {
	tests := []struct {
		name     string
		req      FixtureRequest
		wantBody string
		wantType string
	}{
		{
			name:     "urlencoded without raw sorts keys",
			req:      FixtureRequest{BodyKind: BodyURLEncoded, Body: map[string]string{"key": "k", "data": "a b", "value": "x&y"}},
			wantBody: "data=a+b&key=k&value=x%26y",
			wantType: "application/x-www-form-urlencoded",
		},
		{
			name:     "urlencoded keeps recorded content type",
			req:      FixtureRequest{BodyKind: BodyURLEncoded, BodyRaw: "b=1&a=2", Headers: map[string]string{"content-type": "application/x-www-form-urlencoded; charset=utf-8"}},
			wantBody: "b=1&a=2",
			wantType: "application/x-www-form-urlencoded; charset=utf-8",
		},
		{
			name:     "multipart with own boundary",
			req:      FixtureRequest{BodyKind: BodyMultipart, Fields: map[string]string{"b": "2", "a": "1"}, Headers: map[string]string{"Content-Type": "multipart/form-data; boundary=XyZ"}},
			wantBody: "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2\r\n--XyZ--\r\n",
			wantType: "multipart/form-data; boundary=XyZ",
		},
		{
			name: "none",
			req:  FixtureRequest{BodyKind: BodyNone},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, ct, err := tt.req.BodyBytes()
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tt.wantBody || ct != tt.wantType {
				t.Errorf("BodyBytes() = %q, %q; want %q, %q", body, ct, tt.wantBody, tt.wantType)
			}
		})
	}
}

func TestBodyBytesBadBase64(t *testing.T) {
	req := FixtureRequest{BodyKind: BodyMultipart, Files: []FixtureFile{{Field: "file", Filename: "a.glb", ContentBase64: "!!"}}}
	if _, _, err := req.BodyBytes(); err == nil || !strings.Contains(err.Error(), "a.glb") {
		t.Fatalf("BodyBytes error = %v, want one naming the file", err)
	}
}

func TestFixtureFileSizes(t *testing.T) {
	for _, f := range loadAll(t) {
		for _, file := range f.Request.Files {
			data, err := base64.StdEncoding.DecodeString(file.ContentBase64)
			if err != nil {
				t.Errorf("%s: %s: %v", f.Name, file.Filename, err)
				continue
			}
			if int64(len(data)) != file.Size {
				t.Errorf("%s: %s: %d bytes, size says %d", f.Name, file.Filename, len(data), file.Size)
			}
		}
	}
}

func TestNewRequest(t *testing.T) {
	const base = "http://127.0.0.1:9/prefix/"
	for _, f := range loadAll(t) {
		t.Run(f.Name, func(t *testing.T) {
			req, err := f.NewRequest(base)
			if err != nil {
				t.Fatalf("NewRequest: %v", err)
			}
			if req.Method != f.Request.Method {
				t.Errorf("method = %s, want %s", req.Method, f.Request.Method)
			}
			if want := "/prefix" + f.Request.Path; req.URL.Path != want {
				t.Errorf("path = %q, want %q", req.URL.Path, want)
			}
			if req.Host != "127.0.0.1:9" {
				t.Errorf("Host = %q, want the base URL's host", req.Host)
			}
			q := url.Values{}
			for k, v := range f.Request.Query {
				q.Set(k, v)
			}
			if req.URL.RawQuery != q.Encode() {
				t.Errorf("query = %q, want %q", req.URL.RawQuery, q.Encode())
			}
			if req.Header.Get("Host") != "" || req.Header.Get("Content-Length") != "" {
				t.Errorf("Host or Content-Length copied into headers: %v", req.Header)
			}
			if want := f.Request.Header("Content-Type"); req.Header.Get("Content-Type") != want {
				t.Errorf("Content-Type = %q, want %q", req.Header.Get("Content-Type"), want)
			}
			wantBody, _, err := f.BodyBytes()
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(req.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantBody) || req.ContentLength != int64(len(wantBody)) {
				t.Errorf("body = %q (length %d), want %q", got, req.ContentLength, wantBody)
			}
		})
	}
}

func TestResponseBody(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want string
	}{
		{name: "text", raw: `"Data not found"`, want: "Data not found"},
		{name: "escaped text", raw: `"a \"b\"\n"`, want: "a \"b\"\n"},
		{name: "object as is", raw: `{"id": "x",  "db": {}}`, want: `{"id": "x",  "db": {}}`},
		{name: "null", raw: `null`, want: ""},
		{name: "empty", raw: ``, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Fixture{Response: FixtureResponse{Body: json.RawMessage(tt.raw)}}
			if got := string(f.ResponseBody()); got != tt.want {
				t.Errorf("ResponseBody() = %q, want %q", got, tt.want)
			}
		})
	}
	for _, f := range loadAll(t) {
		body := f.ResponseBody()
		if strings.HasPrefix(strings.TrimSpace(string(f.Response.Body)), "{") && !json.Valid(body) {
			t.Errorf("%s: JSON response body is not valid JSON", f.Name)
		}
	}
}

func TestParams(t *testing.T) {
	tests := []struct {
		name string
		req  FixtureRequest
		want url.Values
	}{
		{
			name: "query before urlencoded body",
			req:  FixtureRequest{Query: map[string]string{"key": "q"}, BodyKind: BodyURLEncoded, BodyRaw: "key=b&data=d"},
			want: url.Values{"key": {"q", "b"}, "data": {"d"}},
		},
		{
			name: "urlencoded map without raw",
			req:  FixtureRequest{BodyKind: BodyURLEncoded, Body: map[string]string{"entry": "e"}},
			want: url.Values{"entry": {"e"}},
		},
		{
			name: "multipart fields",
			req:  FixtureRequest{Query: map[string]string{"a": "1"}, BodyKind: BodyMultipart, Fields: map[string]string{"key": "k"}},
			want: url.Values{"a": {"1"}, "key": {"k"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.req.Params(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Params() = %v, want %v", got, tt.want)
			}
		})
	}
}
