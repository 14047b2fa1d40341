package events

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// FuzzBodyTeeMultipart checks, for arbitrary bodies and read sizes, that
// the tee passes every byte unchanged, that Finish returns, and that a
// capture reported complete holds exactly the text fields the standard
// library's form parser finds.
func FuzzBodyTeeMultipart(f *testing.F) {
	f.Add(buildMultipart(f, testBoundary, map[string]string{"key": "k", "entry": "e1"},
		[]testFile{{"file", "a.bin", "application/octet-stream", []byte("--" + testBoundary + "x\r\n")}}), uint8(7))
	f.Add([]byte("--"+testBoundary+"\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--"+testBoundary+"--"), uint8(1))
	f.Add([]byte("garbage"), uint8(3))
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8) {
		tee := NewBodyTee(io.NopCloser(bytes.NewReader(body)), testMultipartType, Limits{})
		var (
			got  []byte
			err  error
			read = make(chan struct{})
		)
		go func() {
			defer close(read)
			got, err = readChunked(tee, int(chunk)+1)
		}()
		select {
		case <-read:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("Read blocked on %q (chunk %d)\n%s", body, int(chunk)+1, buf[:runtime.Stack(buf, true)])
		}
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("passed %q (err %v), want %q", got, err, body)
		}
		var p Params
		if !finishWithin(t, tee, &p) || len(body) == 0 {
			return
		}
		form, err := multipart.NewReader(bytes.NewReader(body), testBoundary).ReadForm(1 << 20)
		if err != nil {
			t.Fatalf("tee complete but ReadForm fails: %v", err)
		}
		defer form.RemoveAll()
		want := map[string][]string{}
		for k, v := range form.Value {
			want[k] = v
		}
		have := map[string][]string{}
		for _, kv := range p.list {
			have[kv.name] = append(have[kv.name], kv.value)
		}
		if !reflect.DeepEqual(have, want) {
			t.Fatalf("tee fields %q, ReadForm %q", have, want)
		}
	})
}

// FuzzParamsQuery checks parameter extraction from query strings and
// urlencoded bodies: it never panics; without ";" (which Go's parser
// treats as an error) it finds exactly the pairs url.ParseQuery finds, in
// order per name; and the limited form parser keeps only what its limits
// allow, reporting completeness truthfully.
func FuzzParamsQuery(f *testing.F) {
	for _, s := range []string{
		"key=quiet-river-1234&email=builder%40example.com&userKey=uk&secKey=sk&entry=e1,e2",
		"key=k&key=other&entry=a&entry=b&entry=a",
		"a=%ff%fe&b=%zz&c=%&d=+x+&&=v&k=",
		"key=k&entries=" + strings.Repeat(",", 100) + "e1,,e2, e1 ,",
		";a=1;b=2&c=3",
		"%e2%82%ac=%e2%82%ac&\x00=\x01",
	} {
		f.Add(s, uint16(64), uint8(4))
	}
	f.Fuzz(func(t *testing.T, raw string, maxField uint16, maxFields uint8) {
		var p Params
		p.AddQuery(raw)
		if !strings.Contains(raw, ";") {
			want, _ := url.ParseQuery(raw)
			got := url.Values{}
			for _, kv := range p.list {
				got[kv.name] = append(got[kv.name], kv.value)
			}
			if len(want) == 0 {
				want = url.Values{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("AddQuery(%q) = %q, url.ParseQuery = %q", raw, got, want)
			}
		}

		lim := Limits{MaxFieldBytes: int64(maxField) + 1, MaxFields: int(maxFields) + 1}.withDefaults()
		var q Params
		ok := q.addForm([]byte(raw), lim)
		if q.Len() > lim.MaxFields {
			t.Fatalf("addForm kept %d fields, limit %d", q.Len(), lim.MaxFields)
		}
		for _, kv := range q.list {
			if int64(len(kv.value)) > lim.MaxFieldBytes {
				t.Fatalf("addForm kept a %d-byte value, limit %d", len(kv.value), lim.MaxFieldBytes)
			}
		}
		if ok && !reflect.DeepEqual(paramList(&q), paramList(&p)) {
			t.Fatalf("addForm complete but kept %q, AddQuery found %q", paramList(&q), paramList(&p))
		}
	})
}

// FuzzPreRead checks the pre-read of /remove bodies, for every body kind:
// the replay is byte for byte the body, whatever the limits, and a capture
// reported complete holds exactly what a whole-body parse finds.
func FuzzPreRead(f *testing.F) {
	f.Add([]byte("key=k&data=theme&email=e%40x&userKey=u&secKey=s"), uint8(0), uint16(1024))
	f.Add([]byte("key=k&data="+strings.Repeat("v", 300)), uint8(0), uint16(100))
	f.Add(buildMultipart(f, testBoundary, map[string]string{"key": "k", "data": "theme", "entry": "e1"}, nil), uint8(1), uint16(4096))
	f.Add([]byte("--"+testBoundary+"\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk"), uint8(1), uint16(4096))
	f.Add([]byte(`{"key":"k"}`), uint8(2), uint16(10))
	f.Fuzz(func(t *testing.T, body []byte, kind uint8, maxForm uint16) {
		contentType := []string{formType, testMultipartType, "application/json", "multipart/form-data"}[int(kind)%4]
		lim := Limits{MaxFormBytes: int64(maxForm) + 1}
		var p Params
		replay, complete, err := PreRead(io.NopCloser(bytes.NewReader(body)), contentType, lim, &p)
		if err != nil {
			t.Fatalf("PreRead error on an in-memory body: %v", err)
		}
		got, err := io.ReadAll(replay)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("replay %q (err %v), want %q", got, err, body)
		}
		if !complete || len(body) == 0 {
			return
		}
		var want Params
		switch contentType {
		case formType:
			want.AddURLEncoded(body)
		case testMultipartType:
			form, err := multipart.NewReader(bytes.NewReader(body), testBoundary).ReadForm(1 << 20)
			if err != nil {
				t.Fatalf("PreRead complete but ReadForm fails: %v", err)
			}
			defer form.RemoveAll()
			have := map[string][]string{}
			for _, kv := range p.list {
				have[kv.name] = append(have[kv.name], kv.value)
			}
			if len(form.Value) == 0 && len(have) == 0 {
				return
			}
			if !reflect.DeepEqual(have, map[string][]string(form.Value)) {
				t.Fatalf("PreRead fields %q, ReadForm %q", have, form.Value)
			}
			return
		default:
			if p.Len() != 0 {
				t.Fatalf("PreRead found %q in a %s body", paramList(&p), contentType)
			}
			return
		}
		if !reflect.DeepEqual(paramList(&p), paramList(&want)) {
			t.Fatalf("PreRead kept %q, a whole parse finds %q", paramList(&p), paramList(&want))
		}
	})
}

// FuzzDerive feeds every rule arbitrary request parameters and response
// bodies (echo3D's answers, hostile or broken) and checks the invariants of
// what comes out: never a panic; nothing without a 2xx status and a "key";
// apiKey is the first "key"; arrays present; entry ids non-empty, trimmed,
// comma-free and unique; an id from a response is exactly the one the
// body holds; the JSON encoding is valid. The processed detection and the
// /query reader see the same bodies.
func FuzzDerive(f *testing.F) {
	f.Add("key=k&noProcessingWait=false", 200, []byte(`{"id":"e1","hologram":{"type":"MODEL_HOLOGRAM"},"additionalData":{"glbHologramStorageID":"a.glb"}}`), "")
	f.Add("key=k&entryId=e9", 201, []byte(`{"id":"e9"}`), "")
	f.Add("key=k&entries=a,,b, a ,c&data=color&value=red", 200, []byte("ok"), "")
	f.Add("key=k&data=theme&entry=e1", 200, []byte("theme"), "night")
	f.Add("key=k&entry=", 204, []byte(nil), "")
	f.Add("key=%ff&entry=%fe", 200, []byte(`{"id":"\ud800"}`), "")
	f.Add("key=k", 200, []byte(`{"id":"x"`), "")
	f.Add("key=k", 200, []byte(`[{"id":"x"}]`), "")
	f.Add("key=k", 200, []byte(`{"apiKey":"k","db":{"e.1":{"id":"e.1","additionalData":{"screenshotStorageID":" "}}}}`), "")
	rs, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query string, status int, body []byte, prior string) {
		var p Params
		p.AddQuery(query)
		for i := range rs.rules {
			r := &rs.rules[i]
			for _, complete := range []bool{true, false} {
				out := r.Derive(Exchange{Params: &p, Status: status, Body: body, BodyComplete: complete, PriorValue: prior})
				checkPayloads(t, r, &p, status, body, complete, out)
			}
			if id, ok := r.ResponseEntryID(body); ok && id == "" {
				t.Fatal("ResponseEntryID returned an empty id")
			}
			r.LookupQuery(&p)
		}
		EntryProcessed(gjson.ParseBytes(body))
		for _, id := range p.Values("entry") {
			if e, ok := QueryEntry(body, id); ok && !e.IsObject() {
				t.Fatalf("QueryEntry(%q) returned a non-object", id)
			}
		}
	})
}

// checkPayloads asserts Derive's invariants for one call.
func checkPayloads(t *testing.T, r *Rule, p *Params, status int, body []byte, complete bool, out []Payload) {
	t.Helper()
	if len(out) == 0 {
		return
	}
	if status < 200 || status > 299 {
		t.Fatalf("rule %s derived %d payloads from status %d", r.Name, len(out), status)
	}
	key := p.Get("key")
	for i, pl := range out {
		if pl.APIKey == "" || pl.APIKey != key {
			t.Fatalf("rule %s payload %d apiKey %q, request key %q", r.Name, i, pl.APIKey, key)
		}
		if !ValidTrigger(string(pl.Event)) {
			t.Fatalf("rule %s payload %d event %q", r.Name, i, pl.Event)
		}
		if pl.EntryIDs == nil || pl.MetadataKeys == nil || pl.MetadataValues == nil {
			t.Fatalf("rule %s payload %d has a nil array: %+v", r.Name, i, pl)
		}
		if len(pl.MetadataKeys) != len(pl.MetadataValues) {
			t.Fatalf("rule %s payload %d: %d keys, %d values", r.Name, i, len(pl.MetadataKeys), len(pl.MetadataValues))
		}
		seen := map[string]bool{}
		for _, id := range pl.EntryIDs {
			if id == "" || seen[id] || (r.ResponseID == "" && (strings.TrimSpace(id) != id || strings.Contains(id, ","))) {
				t.Fatalf("rule %s payload %d: bad or repeated entry id %q in %q", r.Name, i, id, pl.EntryIDs)
			}
			seen[id] = true
		}
		if r.ResponseID != "" {
			want, ok := r.ResponseEntryID(body)
			if !complete || !ok || len(pl.EntryIDs) != 1 || pl.EntryIDs[0] != want {
				t.Fatalf("rule %s payload %d ids %q; body complete %v gives %q, %v", r.Name, i, pl.EntryIDs, complete, want, ok)
			}
		}
		b, err := json.Marshal(pl)
		if err != nil || !json.Valid(b) {
			t.Fatalf("rule %s payload %d encodes to %q (%v)", r.Name, i, b, err)
		}
		if pl.Event == Processed && (i == 0 || out[0].Event != Upload) {
			t.Fatalf("rule %s: Processed not preceded by Upload: %+v", r.Name, out)
		}
	}
}

// FuzzRuleMatch compares RuleSet.Match with a plain reference (one
// trailing slash dropped, ASCII case folded, methods exact) for arbitrary
// methods and paths, and builds rule sets from arbitrary override names.
func FuzzRuleMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"POST", "/upload"}, {"GET", "/Delete/"}, {"DELETE", "/delete//"}, {"post", "/post"},
		{"POST", "/remove\x00"}, {"GET", "/query"}, {"POST", "/BATCHPOST"}, {"POST", "/upload\u212a"},
		{"POST", "/ſ"}, {"GET", ""}, {"POST", "/"},
	} {
		f.Add(s[0], s[1], "entryIds,ids")
	}
	base, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path, overrides string) {
		got := base.Match(method, path)
		var want *Rule
		ref := path
		if n := len(ref); n > 1 && ref[n-1] == '/' {
			ref = ref[:n-1]
		}
		ref = asciiLower(ref)
		for i := range base.rules {
			r := &base.rules[i]
			if r.Path == ref && (r.Methods == nil || slices.Contains(r.Methods, method)) {
				want = r
				break
			}
		}
		if got != want {
			t.Fatalf("Match(%q, %q) = %v, reference %v", method, path, ruleName(got), ruleName(want))
		}

		names := strings.Split(overrides, ",")
		rs, err := NewRuleSet(DefaultRules(), Overrides{DeleteParams: names, EditParams: names})
		if err != nil {
			if !slices.Contains(names, "") {
				t.Fatalf("NewRuleSet with override names %q: %v", names, err)
			}
			return
		}
		if r := rs.Match(http.MethodGet, "/delete"); r == nil || !slices.Equal(r.EntryParams, names) {
			t.Fatalf("override %q not applied: %+v", names, r)
		}
	})
}

// asciiLower lower-cases ASCII letters only, as echo3D path matching does.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func ruleName(r *Rule) string {
	if r == nil {
		return "<nil>"
	}
	return r.Name
}
