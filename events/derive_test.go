package events

import (
	"net/url"
	"reflect"
	"strconv"
	"testing"
)

// Response bodies for /upload.
const (
	processedModel = `{"id":"e1","hologram":{"type":"MODEL_HOLOGRAM"},"additionalData":{"glbHologramStorageID":"s.glb"}}`
	basicModel     = `{"id":"e1","hologram":{"type":"MODEL_HOLOGRAM"},"additionalData":{"createdAt":"1"}}`
)

// pl builds an expected payload with apiKey "k".
func pl(event Trigger, ids, keys, values []string) Payload {
	return Payload{Event: event, APIKey: "k", EntryIDs: ids, MetadataKeys: keys, MetadataValues: values}
}

var none = []string{}

func TestDerive(t *testing.T) {
	rs, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		method string
		path   string
		query  string
		body   string // urlencoded request body, added after the query
		status int
		resp   string
		prior  string
		trunc  bool // response capture truncated
		want   []Payload
	}{
		// /upload
		{name: "upload waited, processed", method: "POST", path: "/upload", query: "key=k&email=x@y&userKey=u&secKey=s&data=a:b;c:d",
			status: 200, resp: processedModel,
			want: []Payload{pl(Upload, []string{"e1"}, none, none), pl(Processed, []string{"e1"}, none, none)}},
		{name: "upload waited, not processed", method: "POST", path: "/upload", query: "key=k",
			status: 200, resp: basicModel, want: []Payload{pl(Upload, []string{"e1"}, none, none)}},
		{name: "upload no wait, processed body", method: "POST", path: "/upload", query: "key=k&noProcessingWait=true",
			status: 200, resp: processedModel, want: []Payload{pl(Upload, []string{"e1"}, none, none)}},
		{name: "upload noProcessingWait=false waits", method: "POST", path: "/upload", query: "key=k&noProcessingWait=false",
			status: 201, resp: processedModel,
			want: []Payload{pl(Upload, []string{"e1"}, none, none), pl(Processed, []string{"e1"}, none, none)}},
		{name: "edit by entryId", method: "POST", path: "/upload", body: "key=k&entryId=e1",
			status: 200, resp: processedModel, want: []Payload{pl(Edit, []string{"e1"}, none, none)}},
		{name: "edit by entry, response id wins", method: "POST", path: "/upload", query: "key=k&entry=other",
			status: 200, resp: processedModel, want: []Payload{pl(Edit, []string{"e1"}, none, none)}},
		{name: "empty entryId is not an edit", method: "POST", path: "/upload", query: "key=k&entryId=",
			status: 200, resp: basicModel, want: []Payload{pl(Upload, []string{"e1"}, none, none)}},
		{name: "upload 400", method: "POST", path: "/upload", query: "key=k", status: 400, resp: processedModel},
		{name: "upload 302", method: "POST", path: "/upload", query: "key=k", status: 302, resp: processedModel},
		{name: "upload text body", method: "POST", path: "/upload", query: "key=k", status: 200, resp: "Entry not found"},
		{name: "upload invalid JSON", method: "POST", path: "/upload", query: "key=k", status: 200, resp: `{"id":"e1",`},
		{name: "upload JSON array", method: "POST", path: "/upload", query: "key=k", status: 200, resp: `[{"id":"e1"}]`},
		{name: "upload JSON string", method: "POST", path: "/upload", query: "key=k", status: 200, resp: `"e1"`},
		{name: "upload without id", method: "POST", path: "/upload", query: "key=k", status: 200, resp: `{"hologram":{}}`},
		{name: "upload numeric id", method: "POST", path: "/upload", query: "key=k", status: 200, resp: `{"id":42}`},
		{name: "upload empty id", method: "POST", path: "/upload", query: "key=k", status: 200, resp: `{"id":""}`},
		{name: "upload empty body", method: "POST", path: "/upload", query: "key=k", status: 200},
		{name: "upload truncated capture", method: "POST", path: "/upload", query: "key=k", status: 200, resp: basicModel, trunc: true},
		{name: "upload without key", method: "POST", path: "/upload", query: "email=x", status: 200, resp: basicModel},

		// /delete
		{name: "delete one", method: "GET", path: "/delete", query: "key=k&entry=a",
			status: 200, want: []Payload{pl(Delete, []string{"a"}, none, none)}},
		{name: "delete list, request order, dedup, trim", method: "DELETE", path: "/delete", query: "key=k&id=c&entries=a,%20b,,a",
			body: "entry=c&entries=d", status: 204,
			want: []Payload{pl(Delete, []string{"c", "a", "b", "d"}, none, none)}},
		{name: "delete no ids", method: "POST", path: "/delete", query: "key=k&entries=,", status: 200},
		{name: "delete 404", method: "GET", path: "/delete", query: "key=k&entry=a", status: 404},

		// /post
		{name: "collection post", method: "POST", path: "/post", query: "key=k&data=theme&value=night",
			status: 200, resp: "night", want: []Payload{pl(CollectionMetadataAdd, none, []string{"theme"}, []string{"night"})}},
		{name: "entry post, body", method: "POST", path: "/post", body: "key=k&entry=e1&data=material&value=oak",
			status: 200, want: []Payload{pl(AssetMetadataAdd, []string{"e1"}, []string{"material"}, []string{"oak"})}},
		{name: "post query wins over body", method: "POST", path: "/post", query: "key=k&data=q&value=1", body: "key=other&data=b&value=2",
			status: 200, want: []Payload{pl(CollectionMetadataAdd, none, []string{"q"}, []string{"1"})}},
		{name: "post without value", method: "POST", path: "/post", query: "key=k&data=theme",
			status: 200, want: []Payload{pl(CollectionMetadataAdd, none, []string{"theme"}, []string{""})}},
		{name: "post without data", method: "POST", path: "/post", query: "key=k&value=night", status: 200},
		{name: "post empty data", method: "POST", path: "/post", query: "key=k&data=&value=night", status: 200},
		{name: "post 400", method: "POST", path: "/post", query: "key=k&data=theme", status: 400},

		// /remove
		{name: "collection remove", method: "POST", path: "/remove", body: "key=k&data=theme", prior: "night",
			status: 200, want: []Payload{pl(CollectionMetadataRemove, none, []string{"theme"}, []string{"night"})}},
		{name: "entry remove, lookup failed", method: "POST", path: "/remove", query: "key=k&entry=e1&data=material&value=ignored",
			status: 200, want: []Payload{pl(AssetMetadataRemove, []string{"e1"}, []string{"material"}, []string{""})}},
		{name: "remove without data", method: "POST", path: "/remove", query: "key=k", prior: "x", status: 200},

		// /batchpost
		{name: "batchpost", method: "POST", path: "/batchpost", query: "key=k&entries=a,b,c&data=season&value=spring",
			status: 200, want: []Payload{pl(AssetMetadataAdd, []string{"a", "b", "c"}, []string{"season"}, []string{"spring"})}},
		{name: "batchpost without entries", method: "POST", path: "/batchpost", query: "key=k&data=season&value=spring", status: 200},
		{name: "batchpost entry is not entries", method: "POST", path: "/batchpost", query: "key=k&entry=a&data=season&value=spring", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rs.Match(tt.method, tt.path)
			if r == nil {
				t.Fatalf("no rule for %s %s", tt.method, tt.path)
			}
			var p Params
			p.AddQuery(tt.query)
			p.AddURLEncoded([]byte(tt.body))
			x := Exchange{Params: &p, Status: tt.status, PriorValue: tt.prior, BodyComplete: !tt.trunc}
			if tt.resp != "" {
				x.Body = []byte(tt.resp)
			}
			got := r.Derive(x)
			if len(tt.want) == 0 {
				if got != nil {
					t.Fatalf("derived %+v, want nil", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("derived\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestDeriveManyIDs(t *testing.T) {
	rs, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	var p Params
	p.Add("key", "k")
	list := ""
	var want []string
	for i := 0; i < 2000; i++ {
		id := string(rune('a'+i%26)) + "-" + strconv.Itoa(i)
		list += id + ","
		want = append(want, id)
	}
	p.Add("entries", list+list) // every id twice
	got := rs.Match("POST", "/delete").Derive(Exchange{Params: &p, Status: 200})
	if len(got) != 1 || !reflect.DeepEqual(got[0].EntryIDs, want) {
		t.Fatalf("got %d ids, want %d in order without duplicates", len(got[0].EntryIDs), len(want))
	}
}

func TestDeriveNilParams(t *testing.T) {
	for _, r := range DefaultRules() {
		if got := r.Derive(Exchange{Status: 200, Body: []byte(processedModel), BodyComplete: true}); got != nil {
			t.Errorf("%s: derived %+v without params", r.Name, got)
		}
	}
	var r *Rule
	if r.Derive(Exchange{}) != nil {
		t.Error("nil rule derived something")
	}
}

func TestRuleNeeds(t *testing.T) {
	rs, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path           string
		body, lookupOK bool
	}{
		{"/upload", true, false},
		{"/delete", false, false},
		{"/post", false, false},
		{"/remove", false, true},
		{"/batchpost", false, false},
	}
	for _, tt := range tests {
		r := rs.Match("POST", tt.path)
		if r.NeedsResponseBody() != tt.body || r.NeedsLookup() != tt.lookupOK {
			t.Errorf("%s: NeedsResponseBody %v NeedsLookup %v", tt.path, r.NeedsResponseBody(), r.NeedsLookup())
		}
	}
}

func TestLookupQuery(t *testing.T) {
	rs, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	remove := rs.Match("POST", "/remove")
	tests := []struct {
		name  string
		query string
		want  url.Values
		ok    bool
	}{
		{"collection", "key=k&email=e&userKey=u&secKey=s&data=theme&src=x",
			url.Values{"key": {"k"}, "email": {"e"}, "userKey": {"u"}, "secKey": {"s"}, "data": {"theme"}}, true},
		{"entry, first values only", "key=k&entry=e1&data=material&data=other&entry=e2",
			url.Values{"key": {"k"}, "entry": {"e1"}, "data": {"material"}}, true},
		{"no data", "key=k&entry=e1", nil, false},
		{"empty data", "key=k&data=", nil, false},
		{"no key", "data=theme", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Params
			p.AddQuery(tt.query)
			path, q, ok := remove.LookupQuery(&p)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if path != "/get" || !reflect.DeepEqual(q, tt.want) {
				t.Errorf("lookup = %s?%s, want /get?%s", path, q.Encode(), tt.want.Encode())
			}
		})
	}
	if _, _, ok := rs.Match("POST", "/post").LookupQuery(&Params{}); ok {
		t.Error("rule without lookup: ok = true")
	}
}
