package events

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"
)

func TestEntryProcessed(t *testing.T) {
	tests := []struct {
		name  string
		entry string
		want  bool
	}{
		{"model with glb", `{"hologram":{"type":"MODEL_HOLOGRAM"},"additionalData":{"glbHologramStorageID":"a.glb","usdzHologramStorageID":"a.usdz"}}`, true},
		{"model with only usdz and screenshot", `{"hologram":{"type":"MODEL_HOLOGRAM"},"additionalData":{"usdzHologramStorageID":"a.usdz","screenshotStorageID":"s.png"}}`, false},
		{"model basic", `{"hologram":{"type":"MODEL_HOLOGRAM"},"additionalData":{"createdAt":"1"}}`, false},
		{"model blank glb", `{"hologram":{"type":"MODEL_HOLOGRAM"},"additionalData":{"glbHologramStorageID":"  "}}`, false},
		{"model glb not a string", `{"hologram":{"type":"MODEL_HOLOGRAM"},"additionalData":{"glbHologramStorageID":true}}`, false},
		{"image compressed", `{"hologram":{"type":"IMAGE_HOLOGRAM"},"additionalData":{"compressedImageStorageID":"c.jpg"}}`, true},
		{"image screenshot", `{"hologram":{"type":"IMAGE_HOLOGRAM"},"additionalData":{"screenshotStorageID":"s.png"}}`, true},
		{"image glb only", `{"hologram":{"type":"IMAGE_HOLOGRAM"},"additionalData":{"glbHologramStorageID":"a.glb"}}`, false},
		{"video screenshot", `{"hologram":{"type":"VIDEO_HOLOGRAM"},"additionalData":{"screenshotStorageID":"s.png"}}`, true},
		{"video compressed", `{"hologram":{"type":"VIDEO_HOLOGRAM"},"additionalData":{"compressedImageStorageID":"c.jpg"}}`, true},
		{"video nothing", `{"hologram":{"type":"VIDEO_HOLOGRAM"},"additionalData":{"shortURL":"u"}}`, false},
		{"unknown type usdz", `{"hologram":{"type":"AUDIO_HOLOGRAM"},"additionalData":{"usdzHologramStorageID":"a.usdz"}}`, true},
		{"no hologram, glb", `{"additionalData":{"glbHologramStorageID":"a.glb"}}`, true},
		{"no hologram, nothing", `{"additionalData":{"createdAt":"1","qrWebXRStorageID":"q"}}`, false},
		{"no additionalData", `{"hologram":{"type":"MODEL_HOLOGRAM"}}`, false},
		{"additionalData not an object", `{"additionalData":"glbHologramStorageID"}`, false},
		{"not an object", `["glbHologramStorageID"]`, false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EntryProcessed(gjson.Parse(tt.entry)); got != tt.want {
				t.Errorf("EntryProcessed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestQueryEntry(t *testing.T) {
	body := []byte(`{"apiKey":"k","db":{
		"e1":{"id":"e1","additionalData":{"glbHologramStorageID":"a.glb"}},
		"a.b*c?d|e#f@g\\h":{"id":"odd"},
		"@this":{"id":"at"},
		"s":"not an object"}}`)
	tests := []struct {
		name, id, wantID string
		ok               bool
	}{
		{"plain", "e1", "e1", true},
		{"path syntax in id", `a.b*c?d|e#f@g\h`, "odd", true},
		{"modifier-like id", "@this", "at", true},
		{"wildcard does not match", "e*", "", false},
		{"missing", "e2", "", false},
		{"not an object", "s", "", false},
		{"empty id", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := QueryEntry(body, tt.id)
			if ok != tt.ok || (ok && e.Get("id").String() != tt.wantID) {
				t.Errorf("QueryEntry(%q) = %s, %v; want id %q, %v", tt.id, e.Raw, ok, tt.wantID, tt.ok)
			}
		})
	}
	if _, ok := QueryEntry([]byte(`{"db":{"e1":{}`), "e1"); ok {
		t.Error("invalid JSON: ok = true")
	}
}

func TestFixtureQueryResponses(t *testing.T) {
	// The read-only /query fixture holds a processed model: QueryEntry and
	// EntryProcessed must agree with the upload fixtures' expectations.
	dir := fixtureDir(t)
	tests := []struct {
		file      string
		processed bool
	}{
		{"query_read_only.json", true},
		{"upload_no_processing_wait.json", false},
		{"upload_file_multipart_wait.json", true},
		{"upload_presigned_storage_id.json", false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, tt.file))
			if err != nil {
				t.Skipf("fixture: %v", err)
			}
			var fx fixture
			if err := json.Unmarshal(raw, &fx); err != nil {
				t.Fatal(err)
			}
			body := fx.Response.bytes(t)
			entry := gjson.ParseBytes(body)
			if fx.Request.Path == "/query" {
				var ok bool
				entry, ok = QueryEntry(body, fx.Request.Query["entry"])
				if !ok {
					t.Fatal("QueryEntry: entry not found")
				}
			} else {
				// As a poll would see it: the entry wrapped in a /query envelope.
				id := entry.Get("id").String()
				env, _ := json.Marshal(map[string]any{"apiKey": "k", "db": map[string]json.RawMessage{id: body}})
				var ok bool
				if entry, ok = QueryEntry(env, id); !ok {
					t.Fatal("QueryEntry on wrapped entry: not found")
				}
			}
			if got := EntryProcessed(entry); got != tt.processed {
				t.Errorf("EntryProcessed = %v, want %v", got, tt.processed)
			}
		})
	}
}
