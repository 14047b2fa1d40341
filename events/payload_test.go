package events

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// reflectJSON is what encoding/json writes for p by reflection, with the
// empty arrays MarshalJSON promises: the reference for AppendJSON.
func reflectJSON(t testing.TB, p Payload) []byte {
	t.Helper()
	type plain Payload
	q := plain(p)
	for _, l := range []*[]string{&q.EntryIDs, &q.MetadataKeys, &q.MetadataValues} {
		if *l == nil {
			*l = []string{}
		}
	}
	b, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkPayloadJSON fails t unless AppendJSON, MarshalJSON and json.Marshal
// all write exactly what encoding/json writes by reflection.
func checkPayloadJSON(t testing.TB, p Payload) {
	t.Helper()
	want := reflectJSON(t, p)
	if got := p.AppendJSON(nil); !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON(%#v)\n = %s\nwant %s", p, got, want)
	}
	if got, err := json.Marshal(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("json.Marshal(%#v)\n = %s (%v)\nwant %s", p, got, err, want)
	}
}

func TestPayloadJSON(t *testing.T) {
	checkPayloadJSON(t, Payload{})
	checkPayloadJSON(t, Payload{Event: Upload, APIKey: "k", EntryIDs: []string{"e1", "e2"}})
	checkPayloadJSON(t, Payload{Event: CollectionMetadataAdd, APIKey: "k", EntryIDs: []string{}, MetadataKeys: []string{"a"}, MetadataValues: []string{""}})
	checkPayloadJSON(t, Payload{Event: "\"<&>\\", APIKey: "\x00\x1f\x7f\b\f\n\r\t", EntryIDs: []string{"\u2028\u2029", "\xff\xfe", "é€😀", "\xe2\x80"}})
	// Random strings over an alphabet of the bytes the encoder treats
	// specially, multi-byte runes and broken ones.
	pieces := []string{"a", "Z", " ", "\"", "\\", "/", "<", ">", "&", "\x00", "\x01", "\x1f", "\x7f", "\b", "\f", "\n", "\r", "\t",
		"é", "€", "😀", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\ufffd"}
	rng := rand.New(rand.NewPCG(7, 7))
	str := func() string {
		var b []byte
		for range rng.IntN(8) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		return string(b)
	}
	list := func() []string {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		l := make([]string, 1+rng.IntN(3))
		for i := range l {
			l[i] = str()
		}
		return l
	}
	for range 20000 {
		checkPayloadJSON(t, Payload{Event: Trigger(str()), APIKey: str(), EntryIDs: list(), MetadataKeys: list(), MetadataValues: list()})
	}
}

func FuzzPayloadJSON(f *testing.F) {
	f.Add("Upload", "k", "e1", "key", "\u2028<v>&\xff")
	f.Fuzz(func(t *testing.T, event, apiKey, id, key, value string) {
		checkPayloadJSON(t, Payload{Event: Trigger(event), APIKey: apiKey, EntryIDs: []string{id}, MetadataKeys: []string{key}, MetadataValues: []string{value}})
		checkPayloadJSON(t, Payload{Event: Trigger(event), APIKey: apiKey})
	})
}

func BenchmarkPayloadJSON(b *testing.B) {
	p := Payload{Event: CollectionMetadataAdd, APIKey: "quiet-river-1234", EntryIDs: []string{"159ec096-fc9c-5957-8405-a3447998acba"},
		MetadataKeys: []string{"material"}, MetadataValues: []string{"oak"}}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = p.AppendJSON(buf[:0])
		}
	})
}
