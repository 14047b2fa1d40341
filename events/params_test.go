package events

import (
	"reflect"
	"testing"
)

func TestParamsAddQuery(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want []string
	}{
		{"empty", "", []string{}},
		{"simple", "key=k1&data=color", []string{"key=k1", "data=color"}},
		{"order and repeats kept", "b=2&a=1&b=3", []string{"b=2", "a=1", "b=3"}},
		{"percent and plus", "email=a%40b.c&v=red+oak&%41=%42", []string{"email=a@b.c", "v=red oak", "A=B"}},
		{"no equals", "flag&x=", []string{"flag=", "x="}},
		{"empty pairs skipped", "&&a=1&&", []string{"a=1"}},
		{"bad escape in value skipped", "a=%zz&b=2", []string{"b=2"}},
		{"bad escape in name skipped", "%g1=x&b=2", []string{"b=2"}},
		{"truncated escape skipped", "b=2&c=%4", []string{"b=2"}},
		{"semicolon is literal", "data=a:1;b:2&x=1", []string{"data=a:1;b:2", "x=1"}},
		{"second equals in value", "v=a=b", []string{"v=a=b"}},
		{"empty name kept", "=v", []string{"=v"}},
		{"comma list kept whole", "entries=a%2Cb,c", []string{"entries=a,b,c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Params
			p.AddQuery(tt.raw)
			if got := paramList(&p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("AddQuery(%q) = %q, want %q", tt.raw, got, tt.want)
			}
			var q Params
			q.AddURLEncoded([]byte(tt.raw))
			if !reflect.DeepEqual(paramList(&q), paramList(&p)) {
				t.Errorf("AddURLEncoded differs from AddQuery: %q", paramList(&q))
			}
		})
	}
}

func TestParamsMerge(t *testing.T) {
	var p Params // zero value usable
	if p.Get("key") != "" || p.Has("key") || p.Values("key") != nil || p.Len() != 0 {
		t.Fatal("zero Params not empty")
	}
	p.AddQuery("key=from-query&entry=")
	p.AddURLEncoded([]byte("key=from-body&data=color"))
	p.Add("Key", "other case")

	tests := []struct {
		name   string
		get    string
		has    bool
		values []string
	}{
		{"key", "from-query", true, []string{"from-query", "from-body"}},
		{"Key", "other case", true, []string{"other case"}},
		{"data", "color", true, []string{"color"}},
		{"entry", "", true, []string{""}},
		{"missing", "", false, nil},
	}
	for _, tt := range tests {
		if got := p.Get(tt.name); got != tt.get {
			t.Errorf("Get(%q) = %q, want %q", tt.name, got, tt.get)
		}
		if got := p.Has(tt.name); got != tt.has {
			t.Errorf("Has(%q) = %v, want %v", tt.name, got, tt.has)
		}
		if got := p.Values(tt.name); !reflect.DeepEqual(got, tt.values) {
			t.Errorf("Values(%q) = %q, want %q", tt.name, got, tt.values)
		}
	}
	if p.Len() != 5 {
		t.Errorf("Len = %d, want 5", p.Len())
	}

	var nilp *Params
	if nilp.Get("a") != "" || nilp.Has("a") || nilp.Len() != 0 || nilp.Values("a") != nil {
		t.Error("nil *Params not empty")
	}
}
