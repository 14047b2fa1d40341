package events

import (
	"reflect"
	"strings"
	"testing"
)

func TestRuleSetMatch(t *testing.T) {
	rs, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		want         string // rule name, "" for no match
	}{
		{"POST", "/upload", "upload"},
		{"POST", "/Upload", "upload"},
		{"POST", "/UPLOAD/", "upload"},
		{"POST", "/upload//", ""},
		{"GET", "/upload", ""},
		{"PUT", "/upload", ""},
		{"POST", "/uploads", ""},
		{"POST", "/uploa", ""},
		{"POST", "/upload/x", ""},
		{"POST", "/api/upload", ""},
		{"POST", "upload", ""},
		{"GET", "/delete", "delete"},
		{"POST", "/delete", "delete"},
		{"DELETE", "/Delete/", "delete"},
		{"PATCH", "/delete", ""},
		{"POST", "/post", "post"},
		{"GET", "/post", ""},
		{"POST", "/remove", "remove"},
		{"POST", "/BatchPost", "batchpost"},
		{"GET", "/query", "query"},
		{"POST", "/Query/", "query"},
		{"DELETE", "/query", ""},
		{"GET", "/get", ""},
		{"POST", "/download", ""},
		{"GET", "/", ""},
		{"GET", "", ""},
		{"POST", "/poſt", ""}, // no Unicode case folding
		{"post", "/post", ""}, // methods are case-sensitive
	}
	for _, tt := range tests {
		got := ""
		if r := rs.Match(tt.method, tt.path); r != nil {
			got = r.Name
		}
		if got != tt.want {
			t.Errorf("Match(%q, %q) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
	var nilSet *RuleSet
	if nilSet.Match("POST", "/upload") != nil {
		t.Error("nil RuleSet matched")
	}
}

func TestRuleSetMatchAllocs(t *testing.T) {
	rs, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/query", "/static/app.js", "/Upload/", "/batchpost"} {
		if a := testing.AllocsPerRun(100, func() { rs.Match("POST", path) }); a != 0 {
			t.Errorf("Match(%q) allocates %.1f times", path, a)
		}
	}
}

func TestRuleSetNormalizes(t *testing.T) {
	rules := []Rule{{Name: "x", Path: "/Some/Path/", Methods: []string{"post"}, Trigger: Delete, EntryParams: []string{"id"}}}
	rs, err := NewRuleSet(rules, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Match("POST", "/some/path")
	if r == nil {
		t.Fatal("normalised rule did not match")
	}
	if r.Path != "/some/path" || r.Methods[0] != "POST" {
		t.Errorf("normalised to %q %q", r.Path, r.Methods)
	}
	if rules[0].Path != "/Some/Path/" || rules[0].Methods[0] != "post" {
		t.Error("NewRuleSet modified its input")
	}
	any, err := NewRuleSet([]Rule{{Name: "any", Path: "/x", Trigger: Delete}}, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if any.Match("PROPFIND", "/x") == nil {
		t.Error("nil Methods should match any method")
	}
}

func TestRuleSetOverrides(t *testing.T) {
	defaults := DefaultRules()
	rs, err := NewRuleSet(defaults, Overrides{
		DeleteParams: []string{"ids"},
		EditParams:   []string{"assetId"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Match("GET", "/delete").EntryParams; !reflect.DeepEqual(got, []string{"ids"}) {
		t.Errorf("delete EntryParams = %q", got)
	}
	if got := rs.Match("POST", "/upload").EntryParams; !reflect.DeepEqual(got, []string{"assetId"}) {
		t.Errorf("upload EntryParams = %q", got)
	}
	if got := defaults[1].EntryParams; !reflect.DeepEqual(got, []string{"entry", "entries", "id"}) {
		t.Errorf("override changed the input rules: %q", got)
	}

	// The overridden names take effect in Derive; the old ones no longer do.
	var p Params
	p.AddQuery("key=k&ids=a,b&entry=c")
	got := rs.Match("GET", "/delete").Derive(Exchange{Params: &p, Status: 200})
	if len(got) != 1 || !reflect.DeepEqual(got[0].EntryIDs, []string{"a", "b"}) {
		t.Errorf("Delete with override = %+v", got)
	}

	if _, err := NewRuleSet(defaults[2:], Overrides{DeleteParams: []string{"x"}}); err == nil ||
		!strings.Contains(err.Error(), `"delete"`) {
		t.Errorf("override of a missing rule: err = %v", err)
	}
	if _, err := NewRuleSet(defaults, Overrides{EditParams: []string{""}}); err == nil ||
		!strings.Contains(err.Error(), `rule "upload": entry params`) {
		t.Errorf("empty override name: err = %v", err)
	}
}

func TestNewRuleSetErrors(t *testing.T) {
	valid := func() Rule {
		return Rule{Name: "r", Path: "/r", Trigger: CollectionMetadataAdd, MetaKeyParam: "data"}
	}
	tests := []struct {
		name   string
		modify func(r *Rule)
		want   string
	}{
		{"no name", func(r *Rule) { r.Name = "" }, "rule 0: name"},
		{"relative path", func(r *Rule) { r.Path = "r" }, `rule "r": path`},
		{"path with query", func(r *Rule) { r.Path = "/r?x=1" }, `rule "r": path`},
		{"empty methods", func(r *Rule) { r.Methods = []string{} }, `rule "r": methods`},
		{"bad method", func(r *Rule) { r.Methods = []string{"GET", ""} }, `rule "r": methods`},
		{"bad trigger", func(r *Rule) { r.Trigger = "upload" }, `rule "r": trigger`},
		{"no trigger", func(r *Rule) { r.Trigger = "" }, `rule "r": trigger`},
		{"bad entry trigger", func(r *Rule) { r.EntryParams = []string{"e"}; r.EntryTrigger = "Nope" }, `rule "r": entry trigger`},
		{"entry trigger without params", func(r *Rule) { r.EntryTrigger = Edit }, `rule "r": entry trigger`},
		{"empty entry param", func(r *Rule) { r.EntryParams = []string{"e", ""} }, `rule "r": entry params`},
		{"require entries without params", func(r *Rule) { r.RequireEntries = true }, `rule "r": require entries`},
		{"processed without response id", func(r *Rule) { r.Processed = true }, `rule "r": processed`},
		{"value without key", func(r *Rule) { r.MetaKeyParam = ""; r.MetaValueParam = "value" }, `rule "r": meta value param`},
		{"lookup without key", func(r *Rule) { r.MetaKeyParam = ""; r.Lookup = &Lookup{Path: "/get", Params: []string{"key"}} }, `rule "r": lookup`},
		{"lookup and value", func(r *Rule) { r.MetaValueParam = "value"; r.Lookup = &Lookup{Path: "/get", Params: []string{"key"}} }, `rule "r": lookup`},
		{"lookup bad path", func(r *Rule) { r.Lookup = &Lookup{Path: "get", Params: []string{"key"}} }, `rule "r": lookup: path`},
		{"lookup no params", func(r *Rule) { r.Lookup = &Lookup{Path: "/get"} }, `rule "r": lookup: params`},
		{"lookup empty param", func(r *Rule) { r.Lookup = &Lookup{Path: "/get", Params: []string{""}} }, `rule "r": lookup: params`},
		{"observe with a trigger", func(r *Rule) { r.Observe = true }, `rule "r": observe`},
		{"observe with a response id", func(r *Rule) { *r = Rule{Name: "r", Path: "/r", Observe: true, ResponseID: "id"} }, `rule "r": observe`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid()
			tt.modify(&r)
			_, err := NewRuleSet([]Rule{r}, Overrides{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := NewRuleSet([]Rule{valid(), valid()}, Overrides{}); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate names: err = %v", err)
	}
	if _, err := NewRuleSet([]Rule{valid()}, Overrides{}); err != nil {
		t.Errorf("valid rule: %v", err)
	}
	if _, err := NewRuleSet(nil, Overrides{}); err != nil {
		t.Errorf("no rules: %v", err)
	}
}
