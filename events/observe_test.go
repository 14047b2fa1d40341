package events

import "testing"

// TestObserveRuleDerivesNothing: the /query rule only shows responses to
// the Processed watches; even a listing of a processed entry derives no
// event and needs no body capture of its own.
func TestObserveRuleDerivesNothing(t *testing.T) {
	rs, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"GET", "POST"} {
		r := rs.Match(method, "/query")
		if r == nil || !r.Observe {
			t.Fatalf("%s /query: rule %+v, want the observing rule", method, r)
		}
		if r.NeedsResponseBody() || r.NeedsLookup() {
			t.Errorf("%s /query: the rule asks for a body or lookup of its own", method)
		}
		var p Params
		p.AddQuery("key=k&entry=e1")
		body := []byte(`{"apiKey":"k","db":{"e1":{"id":"e1","hologram":{"type":"MODEL_HOLOGRAM"},"additionalData":{"glbHologramStorageID":"a.glb"}}}}`)
		if got := r.Derive(Exchange{Params: &p, Status: 200, Body: body, BodyComplete: true}); got != nil {
			t.Errorf("%s /query derived %+v", method, got)
		}
	}
}
