package echo3dtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const testKey = "quiet-river-1234"

// fakeClock is an injectable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testFile is a file part of a test request.
type testFile struct {
	field, filename, content string
}

// apiCall describes one request to the fake API. Parameters go in the
// query string, an urlencoded body (form) or multipart text fields
// (fields, or whenever files are given).
type apiCall struct {
	method string
	path   string
	query  url.Values
	form   url.Values
	fields url.Values
	files  []testFile
}

// request builds the HTTP request of c.
func (c apiCall) request(t *testing.T) *http.Request {
	t.Helper()
	target := c.path
	if len(c.query) > 0 {
		target += "?" + c.query.Encode()
	}
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	switch {
	case c.fields != nil || c.files != nil:
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for k, vs := range c.fields {
			for _, v := range vs {
				if err := mw.WriteField(k, v); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, f := range c.files {
			pw, err := mw.CreateFormFile(f.field, f.filename)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pw.Write([]byte(f.content)); err != nil {
				t.Fatal(err)
			}
		}
		if err := mw.Close(); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(method, target, &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		return req
	case c.form != nil:
		req := httptest.NewRequest(method, target, strings.NewReader(c.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req
	default:
		return httptest.NewRequest(method, target, nil)
	}
}

// do sends c to h and returns the status and body.
func (c apiCall) do(t *testing.T, h http.Handler) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, c.request(t))
	return w.Code, w.Body.String()
}

// vals builds url.Values from pairs, always with the test key first.
func vals(pairs ...string) url.Values {
	v := url.Values{"key": {testKey}}
	for i := 0; i+1 < len(pairs); i += 2 {
		v.Add(pairs[i], pairs[i+1])
	}
	return v
}

// mustUpload uploads and decodes the entry returned.
func mustUpload(t *testing.T, s *Server, c apiCall) entryJSON {
	t.Helper()
	if c.path == "" {
		c.path = "/upload"
	}
	status, body := c.do(t, s)
	if status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, body)
	}
	var e entryJSON
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("upload response %q: %v", body, err)
	}
	return e
}

// uploadModel uploads a small model file and returns its entry.
func uploadModel(t *testing.T, s *Server, filename string, extra ...string) entryJSON {
	t.Helper()
	return mustUpload(t, s, apiCall{
		fields: vals(extra...),
		files:  []testFile{{"file", filename, "glTF-bytes"}},
	})
}

// queryEntry returns the entry id as /query?entry= shows it.
func queryEntry(t *testing.T, s *Server, id string) entryJSON {
	t.Helper()
	status, body := apiCall{method: "GET", path: "/query", query: vals("entry", id)}.do(t, s)
	if status != http.StatusOK {
		t.Fatalf("query %s: %d %s", id, status, body)
	}
	var resp queryResponse
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	e, ok := resp.DB[id]
	if !ok || len(resp.DB) != 1 || resp.APIKey != testKey {
		t.Fatalf("query %s: %s", id, body)
	}
	return e
}

var uuidShape = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// processedModelKeys and processedImageKeys are the derived-file ids of
// processed entries.
var (
	processedModelKeys = []string{"glbHologramStorageID", "usdzHologramStorageID", "screenshotStorageID"}
	processedImageKeys = []string{"compressedImageStorageID", "screenshotStorageID"}
)

// checkKeys fails unless data has every key of want and none of absent.
func checkKeys(t *testing.T, data map[string]string, want, absent []string) {
	t.Helper()
	for _, k := range want {
		if data[k] == "" {
			t.Errorf("additionalData lacks %s: %v", k, data)
		}
	}
	for _, k := range absent {
		if _, ok := data[k]; ok {
			t.Errorf("additionalData has %s: %v", k, data)
		}
	}
}

func TestServerUpload(t *testing.T) {
	tests := []struct {
		name         string
		call         apiCall
		wantFilename string
		wantType     string
		wantTarget   string
		wantKeys     []string
		absentKeys   []string
		wantData     map[string]string
		wantMaterial string
		wantTextures []string
	}{
		{
			name:         "multipart file with data",
			call:         apiCall{fields: vals("target_type", "2", "data", "color:red;size:large;note:a:b"), files: []testFile{{"file", "chair.glb", "glTF"}}},
			wantFilename: "chair.glb", wantType: modelHologram, wantTarget: brickTarget,
			wantKeys:   processedModelKeys,
			absentKeys: []string{"compressedImageStorageID"},
			wantData:   map[string]string{"color": "red", "size": "large", "note": "a:b", "glbHologramStorageFilename": "chair.glb"},
		},
		{
			name:         "image file",
			call:         apiCall{fields: vals("target_type", "0"), files: []testFile{{"file", "poster.JPG", "jpeg"}}},
			wantFilename: "poster.JPG", wantType: imageHologram, wantTarget: imageTarget,
			wantKeys:   processedImageKeys,
			absentKeys: []string{"glbHologramStorageID", "usdzHologramStorageID"},
		},
		{
			name:         "urlencoded url",
			call:         apiCall{form: vals("url", "https://assets.example.com/models/bench.glb?v=2", "target_type", "1")},
			wantFilename: "bench.glb", wantType: modelHologram, wantTarget: geolocationTarget,
			wantKeys: processedModelKeys,
		},
		{
			name:         "url in query string",
			call:         apiCall{query: vals("url", "https://assets.example.com/pic.png")},
			wantFilename: "pic.png", wantType: imageHologram, wantTarget: brickTarget,
			wantKeys: processedImageKeys,
		},
		{
			name:         "multipart text only with s3StorageId",
			call:         apiCall{fields: vals("s3StorageId", "c1723b38.zip", "filename", "statue.zip")},
			wantFilename: "statue.zip", wantType: modelHologram, wantTarget: brickTarget,
			wantKeys: processedModelKeys,
			wantData: map[string]string{"glbHologramStorageID": "c1723b38.glb"},
		},
		{
			name: "legacy file_model parts",
			call: apiCall{fields: vals("hologram_type", "2", "type", "upload"), files: []testFile{
				{"file_model", "stool_BaseColor.png", "png"},
				{"file_model", "stool.obj", "o stool"},
				{"file_model", "stool.mtl", "newmtl wood"},
			}},
			wantFilename: "stool.obj", wantType: modelHologram, wantTarget: brickTarget,
			wantKeys:     processedModelKeys,
			wantMaterial: "stool.mtl", wantTextures: []string{"stool_BaseColor.png"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := NewServer(Options{Now: clock.Now})
			e := mustUpload(t, s, tt.call)
			if !uuidShape.MatchString(e.ID) {
				t.Errorf("id %q is not uuid-shaped", e.ID)
			}
			h := e.Hologram
			if h.Filename != tt.wantFilename || h.Type != tt.wantType || e.Target.Type != tt.wantTarget {
				t.Errorf("hologram %s %s, target %s", h.Filename, h.Type, e.Target.Type)
			}
			if len(e.Target.Holograms) != 1 || e.Target.Holograms[0] != h.ID || h.TargetID != e.Target.ID {
				t.Errorf("target/hologram ids inconsistent: %+v %+v", e.Target, h)
			}
			if h.MaterialFilename != tt.wantMaterial {
				t.Errorf("material = %q, want %q", h.MaterialFilename, tt.wantMaterial)
			}
			if fmt.Sprint(h.TextureFilenames) != fmt.Sprint(nonNilSlice(tt.wantTextures)) || len(h.TextureStorageIDs) != len(h.TextureFilenames) {
				t.Errorf("textures = %v / %v, want %v", h.TextureFilenames, h.TextureStorageIDs, tt.wantTextures)
			}
			if len(e.SDKs) != 9 {
				t.Errorf("sdks = %v", e.SDKs)
			}
			if want := fmt.Sprint(clock.Now().UnixMilli()); e.AdditionalData["createdAt"] != want {
				t.Errorf("createdAt = %q, want %q", e.AdditionalData["createdAt"], want)
			}
			checkKeys(t, e.AdditionalData, tt.wantKeys, tt.absentKeys)
			for k, v := range tt.wantData {
				if e.AdditionalData[k] != v {
					t.Errorf("additionalData[%s] = %q, want %q", k, e.AdditionalData[k], v)
				}
			}

			raw, ok := s.Entry(testKey, e.ID)
			if !ok {
				t.Fatal("Entry: not found")
			}
			var stored entryJSON
			if err := json.Unmarshal(raw, &stored); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(stored) != fmt.Sprint(e) {
				t.Errorf("Entry() = %+v, want the upload response %+v", stored, e)
			}
			if _, ok := s.Entry("other-key", e.ID); ok {
				t.Error("entry visible under another key")
			}
		})
	}
}

// nonNilSlice returns s, or an empty slice for nil.
func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func TestServerUploadNoProcessingWait(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration // Options.ProcessingDelay
		wait  time.Duration // effective delay
		file  string
		keys  []string
	}{
		{name: "default delay model", file: "lamp.fbx", wait: DefaultProcessingDelay, keys: processedModelKeys},
		{name: "custom delay image", delay: 10 * time.Second, wait: 10 * time.Second, file: "photo.png", keys: processedImageKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := NewServer(Options{Now: clock.Now, ProcessingDelay: tt.delay})
			e := uploadModel(t, s, tt.file, "noProcessingWait", "true")
			checkKeys(t, e.AdditionalData, []string{"createdAt", "accessHistory"}, tt.keys)

			clock.Advance(tt.wait - time.Millisecond)
			checkKeys(t, queryEntry(t, s, e.ID).AdditionalData, nil, tt.keys)

			clock.Advance(time.Millisecond)
			got := queryEntry(t, s, e.ID)
			checkKeys(t, got.AdditionalData, tt.keys, nil)
			raw, _ := s.Entry(testKey, e.ID)
			if !strings.Contains(string(raw), tt.keys[0]) {
				t.Errorf("Entry() not processed: %s", raw)
			}
			// Processing happens once: ids are stable across reads.
			if again := queryEntry(t, s, e.ID); fmt.Sprint(again) != fmt.Sprint(got) {
				t.Errorf("entry changed between reads:\n%+v\n%+v", got, again)
			}
		})
	}
}

func TestServerUploadEdit(t *testing.T) {
	tests := []struct {
		name      string
		param     string
		existing  bool
		noWait    bool
		wantSame  bool
		wantCount int // holograms in target
	}{
		{name: "entryId", param: "entryId", existing: true, wantSame: true, wantCount: 2},
		{name: "entry", param: "entry", existing: true, wantSame: true, wantCount: 2},
		{name: "entryId noProcessingWait", param: "entryId", existing: true, noWait: true, wantSame: true, wantCount: 2},
		{name: "unknown entryId makes a new entry", param: "entryId", existing: false, wantSame: false, wantCount: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := NewServer(Options{Now: clock.Now})
			first := uploadModel(t, s, "chair.glb", "data", "color:red")
			id := first.ID
			if !tt.existing {
				id = newID()
			}
			extra := []string{tt.param, id}
			if tt.noWait {
				extra = append(extra, "noProcessingWait", "true")
			}
			clock.Advance(time.Minute)
			second := uploadModel(t, s, "chair_v2.glb", extra...)

			if got := second.ID == first.ID; got != tt.wantSame {
				t.Fatalf("same id = %v, want %v", got, tt.wantSame)
			}
			if len(second.Target.Holograms) != tt.wantCount {
				t.Fatalf("holograms = %v, want %d", second.Target.Holograms, tt.wantCount)
			}
			if second.Hologram.Filename != "chair_v2.glb" || second.Target.Holograms[tt.wantCount-1] != second.Hologram.ID {
				t.Errorf("hologram not the new version: %+v", second)
			}
			if !tt.wantSame {
				return
			}
			if second.Target.Holograms[0] != first.Hologram.ID || second.Target.ID != first.Target.ID {
				t.Errorf("previous hologram/target lost: %+v", second.Target)
			}
			if second.AdditionalData["color"] != "red" || second.AdditionalData["createdAt"] != first.AdditionalData["createdAt"] {
				t.Errorf("metadata not kept: %v", second.AdditionalData)
			}
			if tt.noWait {
				checkKeys(t, second.AdditionalData, nil, processedModelKeys)
				clock.Advance(DefaultProcessingDelay)
			}
			got := queryEntry(t, s, first.ID)
			checkKeys(t, got.AdditionalData, processedModelKeys, nil)
			if want := second.Hologram.StorageID + ".glb"; got.AdditionalData["glbHologramStorageID"] != want {
				t.Errorf("glb id %q, want %q (the new version's)", got.AdditionalData["glbHologramStorageID"], want)
			}
		})
	}
}

func TestServerQuery(t *testing.T) {
	s := NewServer(Options{})
	a := uploadModel(t, s, "a.glb")
	b := uploadModel(t, s, "b.glb")
	c := uploadModel(t, s, "c.glb")
	missing := newID()

	tests := []struct {
		name       string
		call       apiCall
		wantStatus int
		wantIDs    []string // nil: body is text
		wantKey    string
	}{
		{name: "all", call: apiCall{method: "GET", query: vals()}, wantStatus: 200, wantIDs: []string{a.ID, b.ID, c.ID}},
		{name: "one entry", call: apiCall{method: "GET", query: vals("entry", b.ID)}, wantStatus: 200, wantIDs: []string{b.ID}},
		{name: "entries list skips unknown", call: apiCall{method: "GET", query: vals("entries", a.ID+","+missing+","+c.ID)}, wantStatus: 200, wantIDs: []string{a.ID, c.ID}},
		{name: "POST urlencoded", call: apiCall{form: vals("entry", a.ID)}, wantStatus: 200, wantIDs: []string{a.ID}},
		{name: "unknown entry", call: apiCall{method: "GET", query: vals("entry", missing)}, wantStatus: 404},
		{name: "other collection is empty", call: apiCall{method: "GET", query: url.Values{"key": {"other-key"}}}, wantStatus: 200, wantIDs: []string{}, wantKey: "other-key"},
		{name: "no key", call: apiCall{method: "GET", query: url.Values{"entry": {a.ID}}}, wantStatus: 400},
		{name: "file download unsupported", call: apiCall{method: "GET", query: vals("file", "x.glb")}, wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.call.path = "/query"
			status, body := tt.call.do(t, s)
			if status != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", status, body, tt.wantStatus)
			}
			if tt.wantIDs == nil {
				if status == 404 && !strings.Contains(strings.ToLower(body), "not found") {
					t.Errorf("404 body %q lacks \"not found\"", body)
				}
				return
			}
			var resp queryResponse
			if err := json.Unmarshal([]byte(body), &resp); err != nil {
				t.Fatalf("%q: %v", body, err)
			}
			wantKey := tt.wantKey
			if wantKey == "" {
				wantKey = testKey
			}
			if resp.APIKey != wantKey || resp.DB == nil || len(resp.DB) != len(tt.wantIDs) {
				t.Fatalf("response %s, want ids %v", body, tt.wantIDs)
			}
			for _, id := range tt.wantIDs {
				if resp.DB[id].ID != id {
					t.Errorf("db lacks %s", id)
				}
			}
		})
	}
}

func TestServerMetadata(t *testing.T) {
	s := NewServer(Options{})
	e := uploadModel(t, s, "chair.glb")
	missing := newID()

	// The steps run in order against one server.
	steps := []struct {
		name       string
		call       apiCall
		wantStatus int
		wantBody   string
	}{
		{"collection post in query", apiCall{path: "/post", query: vals("data", "theme", "value", "night")}, 200, "night"},
		{"collection get", apiCall{method: "GET", path: "/get", query: vals("data", "theme")}, 200, "night"},
		{"entry does not see collection key", apiCall{method: "GET", path: "/get", query: vals("entry", e.ID, "data", "theme")}, 404, msgDataNotFound},
		{"entry post urlencoded", apiCall{path: "/post", form: vals("entry", e.ID, "data", "material", "value", "oak")}, 200, "oak"},
		{"entry post multipart", apiCall{path: "/post", fields: vals("entry", e.ID, "data", "finish", "value", "matte")}, 200, "matte"},
		{"entry get", apiCall{method: "GET", path: "/get", query: vals("entry", e.ID, "data", "material")}, 200, "oak"},
		{"entry get built-in key", apiCall{method: "GET", path: "/get", query: vals("entry", e.ID, "data", "createdAt")}, 200, e.AdditionalData["createdAt"]},
		{"collection does not see entry key", apiCall{method: "GET", path: "/get", query: vals("data", "material")}, 404, msgDataNotFound},
		{"query param wins over body", apiCall{path: "/post", query: vals("data", "theme", "value", "day"), form: url.Values{"value": {"dusk"}}}, 200, "day"},
		{"collection overwritten", apiCall{method: "GET", path: "/get", query: vals("data", "theme")}, 200, "day"},
		{"entry remove in query", apiCall{path: "/remove", query: vals("entry", e.ID, "data", "material")}, 200, "material"},
		{"entry get after remove", apiCall{method: "GET", path: "/get", query: vals("entry", e.ID, "data", "material")}, 404, msgDataNotFound},
		{"entry remove again", apiCall{path: "/remove", query: vals("entry", e.ID, "data", "material")}, 404, msgDataNotFound},
		{"collection remove urlencoded", apiCall{path: "/remove", form: vals("data", "theme")}, 200, "theme"},
		{"collection get after remove", apiCall{method: "GET", path: "/get", query: vals("data", "theme")}, 404, msgDataNotFound},
		{"entry key kept", apiCall{method: "GET", path: "/get", query: vals("entry", e.ID, "data", "finish")}, 200, "matte"},
		{"get without data", apiCall{method: "GET", path: "/get", query: vals()}, 400, msgNoDataValue},
		{"post without value", apiCall{path: "/post", query: vals("data", "theme")}, 400, msgNoDataValue},
		{"post without data", apiCall{path: "/post", query: vals("value", "x")}, 400, msgNoDataValue},
		{"remove without data", apiCall{path: "/remove", query: vals()}, 400, msgNoDataValue},
		{"post to unknown entry", apiCall{path: "/post", query: vals("entry", missing, "data", "a", "value", "b")}, 404, msgEntryNotFound},
		{"get from unknown entry", apiCall{method: "GET", path: "/get", query: vals("entry", missing, "data", "a")}, 404, msgDataNotFound},
		{"remove from unknown entry", apiCall{path: "/remove", query: vals("entry", missing, "data", "a")}, 404, msgDataNotFound},
		{"get from unknown collection", apiCall{method: "GET", path: "/get", query: url.Values{"key": {"nobody"}, "data": {"a"}}}, 404, msgDataNotFound},
		{"post by GET", apiCall{method: "GET", path: "/post", query: vals("data", "a", "value", "b")}, 405, "Method not allowed"},
	}
	for _, st := range steps {
		status, body := st.call.do(t, s)
		if status != st.wantStatus || body != st.wantBody {
			t.Errorf("%s: got %d %q, want %d %q", st.name, status, body, st.wantStatus, st.wantBody)
		}
	}
	got := queryEntry(t, s, e.ID).AdditionalData
	if got["finish"] != "matte" || got["material"] != "" {
		t.Errorf("entry additionalData = %v", got)
	}
}

func TestServerBatchPost(t *testing.T) {
	s := NewServer(Options{})
	a, b, c := uploadModel(t, s, "a.glb"), uploadModel(t, s, "b.glb"), uploadModel(t, s, "c.glb")
	missing := newID()

	tests := []struct {
		name       string
		call       apiCall
		wantStatus int
		wantBody   string
		wantSet    []string // entries that must hold season=spring afterwards
	}{
		{name: "three entries", call: apiCall{query: vals("entries", a.ID+","+b.ID, "data", "season", "value", "spring")}, wantStatus: 200, wantBody: "spring", wantSet: []string{a.ID, b.ID}},
		{name: "unknown skipped", call: apiCall{form: vals("entries", missing+","+c.ID, "data", "season", "value", "spring")}, wantStatus: 200, wantBody: "spring", wantSet: []string{a.ID, b.ID, c.ID}},
		{name: "none exist", call: apiCall{query: vals("entries", missing, "data", "season", "value", "spring")}, wantStatus: 404, wantBody: msgEntryNotFound},
		{name: "no entries", call: apiCall{query: vals("data", "season", "value", "spring")}, wantStatus: 400, wantBody: "Invalid request! No entries found in request."},
		{name: "no value", call: apiCall{query: vals("entries", a.ID, "data", "season")}, wantStatus: 400, wantBody: msgNoDataValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.call.path = "/batchpost"
			status, body := tt.call.do(t, s)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Fatalf("got %d %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
			}
			for _, id := range tt.wantSet {
				if v := queryEntry(t, s, id).AdditionalData["season"]; v != "spring" {
					t.Errorf("%s: season = %q", id, v)
				}
			}
		})
	}
}

func TestServerDelete(t *testing.T) {
	tests := []struct {
		name       string
		call       func(ids []string) apiCall
		wantStatus int
		wantBody   string
		wantGone   []int // indexes of the 4 entries deleted afterwards
	}{
		{
			name:       "single by GET entry",
			call:       func(ids []string) apiCall { return apiCall{method: "GET", query: vals("entry", ids[0])} },
			wantStatus: 200, wantBody: "Entry deleted", wantGone: []int{0},
		},
		{
			name: "multiple by POST urlencoded entries",
			call: func(ids []string) apiCall {
				return apiCall{form: vals("entries", ids[0]+","+ids[2]+","+ids[3])}
			},
			wantStatus: 200, wantBody: "Entries deleted", wantGone: []int{0, 2, 3},
		},
		{
			name:       "DELETE with id",
			call:       func(ids []string) apiCall { return apiCall{method: "DELETE", query: vals("id", ids[1])} },
			wantStatus: 200, wantBody: "Entry deleted", wantGone: []int{1},
		},
		{
			name:       "unknown ids skipped",
			call:       func(ids []string) apiCall { return apiCall{query: vals("entries", newID()+","+ids[1])} },
			wantStatus: 200, wantBody: "Entry deleted", wantGone: []int{1},
		},
		{
			name:       "none exist",
			call:       func([]string) apiCall { return apiCall{method: "GET", query: vals("entry", newID())} },
			wantStatus: 404, wantBody: msgEntryNotFound,
		},
		{
			name: "other collection",
			call: func(ids []string) apiCall {
				return apiCall{method: "GET", query: url.Values{"key": {"other"}, "entry": {ids[0]}}}
			},
			wantStatus: 404, wantBody: msgEntryNotFound,
		},
		{
			name:       "no ids",
			call:       func([]string) apiCall { return apiCall{method: "GET", query: vals()} },
			wantStatus: 400, wantBody: msgNoEntry,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(Options{})
			var ids []string
			for i := range 4 {
				ids = append(ids, uploadModel(t, s, fmt.Sprintf("m%d.glb", i)).ID)
			}
			c := tt.call(ids)
			c.path = "/delete"
			status, body := c.do(t, s)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Fatalf("got %d %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
			}
			gone := map[int]bool{}
			for _, i := range tt.wantGone {
				gone[i] = true
			}
			for i, id := range ids {
				if _, ok := s.Entry(testKey, id); ok == gone[i] {
					t.Errorf("entry %d exists = %v, want %v", i, ok, !gone[i])
				}
			}
		})
	}
}

func TestServerErrors(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		call       apiCall
		wantStatus int
		wantBody   string
	}{
		{name: "upload without key", call: apiCall{path: "/upload", files: []testFile{{"file", "a.glb", "x"}}}, wantStatus: 400, wantBody: msgNoKey},
		{name: "upload without file or url", call: apiCall{path: "/upload", fields: vals("target_type", "2")}, wantStatus: 400, wantBody: msgNoFileOrURL},
		{name: "upload urlencoded without url", call: apiCall{path: "/upload", form: vals("noProcessingWait", "true")}, wantStatus: 400, wantBody: msgNoFileOrURL},
		{name: "upload by GET", call: apiCall{method: "GET", path: "/upload", query: vals("url", "https://x/a.glb")}, wantStatus: 405, wantBody: "Method not allowed"},
		{name: "unknown path", call: apiCall{method: "GET", path: "/versionControl", query: vals()}, wantStatus: 404, wantBody: msgNotFound},
		{name: "root", call: apiCall{method: "GET", path: "/", query: vals()}, wantStatus: 404, wantBody: msgNotFound},
		{name: "require userKey missing", opts: Options{RequireKey: true}, call: apiCall{method: "GET", path: "/query", query: vals()}, wantStatus: 401, wantBody: msgNoUserKey},
		{name: "require userKey present", opts: Options{RequireKey: true}, call: apiCall{method: "GET", path: "/query", query: vals("userKey", "uk")}, wantStatus: 200, wantBody: `{"apiKey":"quiet-river-1234","db":{}}`},
		{name: "path case and trailing slash", call: apiCall{method: "GET", path: "/QUERY/", query: vals()}, wantStatus: 200, wantBody: `{"apiKey":"quiet-river-1234","db":{}}`},
		{name: "bad multipart", call: apiCall{path: "/upload", query: vals()}, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(tt.opts)
			req := tt.call.request(t)
			if tt.name == "bad multipart" {
				req = httptest.NewRequest("POST", "/upload?key=k", strings.NewReader("garbage"))
				req.Header.Set("Content-Type", "multipart/form-data; boundary=zzz")
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != tt.wantStatus || (tt.wantBody != "" && w.Body.String() != tt.wantBody) {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Body.String(), tt.wantStatus, tt.wantBody)
			}
		})
	}
}

// TestServerAcceptsFixtureRequests replays the fixtures' requests that need
// no prior state against the fake and checks it answers like echo3D did.
func TestServerAcceptsFixtureRequests(t *testing.T) {
	for _, f := range loadAll(t) {
		if f.Request.Path != "/upload" && f.Name != "collection_metadata_post" && f.Name != "metadata_post_missing_value_400" {
			continue
		}
		t.Run(f.Name, func(t *testing.T) {
			s := NewServer(Options{RequireKey: f.Request.Params().Get("userKey") != ""})
			req, err := f.NewRequest("http://api.echo3d.test")
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != f.Response.Status {
				t.Fatalf("status = %d (%s), want %d", w.Code, w.Body.String(), f.Response.Status)
			}
			want := f.ResponseBody()
			if !json.Valid(want) {
				if f.Name != "upload_failed_4xx" && w.Body.String() != string(want) {
					t.Errorf("body = %q, want %q", w.Body.String(), want)
				}
				return
			}
			var got, recorded map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want, &recorded); err != nil {
				t.Fatal(err)
			}
			for k := range recorded {
				if _, ok := got[k]; !ok {
					t.Errorf("response lacks %q", k)
				}
			}
			_, wantProcessed := recorded["additionalData"].(map[string]any)["glbHologramStorageID"]
			_, gotProcessed := got["additionalData"].(map[string]any)["glbHologramStorageID"]
			if gotProcessed != wantProcessed {
				t.Errorf("processed = %v, want %v", gotProcessed, wantProcessed)
			}
		})
	}
}

func TestServerConcurrent(t *testing.T) {
	clock := newFakeClock()
	s := NewServer(Options{Now: clock.Now})
	srv := httptest.NewServer(s)
	defer srv.Close()

	const n = 16
	var wg sync.WaitGroup
	ids := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			form := vals("url", fmt.Sprintf("https://x.test/m%d.glb", i), "noProcessingWait", "true", "data", "i:"+fmt.Sprint(i))
			resp, err := http.PostForm(srv.URL+"/upload", form)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var e entryJSON
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Error(err)
				return
			}
			ids <- e.ID
			clock.Advance(time.Second)
			q, err := http.Get(srv.URL + "/query?key=" + testKey)
			if err != nil {
				t.Error(err)
				return
			}
			q.Body.Close()
		}()
	}
	wg.Wait()
	close(ids)
	clock.Advance(DefaultProcessingDelay) // the last upload may be only 1s old
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct ids, want %d", len(seen), n)
	}
	for id := range seen {
		if raw, ok := s.Entry(testKey, id); !ok || !strings.Contains(string(raw), "glbHologramStorageID") {
			t.Errorf("entry %s: %s", id, raw)
		}
	}
}
