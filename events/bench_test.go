package events

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

func benchRules(b *testing.B) *RuleSet {
	b.Helper()
	rs, err := NewRuleSet(DefaultRules(), Overrides{})
	if err != nil {
		b.Fatal(err)
	}
	return rs
}

func BenchmarkMatchMiss(b *testing.B) {
	rs := benchRules(b)
	paths := []string{"/query", "/static/js/app.0f3c.js", "/get", "/download"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if rs.Match("GET", paths[i%len(paths)]) != nil {
			b.Fatal("matched")
		}
	}
}

func BenchmarkMatchHit(b *testing.B) {
	rs := benchRules(b)
	b.ReportAllocs()
	for b.Loop() {
		if rs.Match("POST", "/BatchPost/") == nil {
			b.Fatal("no match")
		}
	}
}

func BenchmarkDerivePost(b *testing.B) {
	rs := benchRules(b)
	r := rs.Match("POST", "/post")
	var p Params
	p.AddQuery("key=quiet-river-1234&email=builder%40example.com&userKey=uk_5f2b9c1e7a3d&secKey=sk_demo_8d41c0b7")
	p.AddURLEncoded([]byte("entry=159ec096-fc9c-5957-8405-a3447998acba&data=material&value=oak"))
	x := Exchange{Params: &p, Status: 200, Body: []byte("oak"), BodyComplete: true}
	b.ReportAllocs()
	for b.Loop() {
		if len(r.Derive(x)) != 1 {
			b.Fatal("no event")
		}
	}
}

// BenchmarkTeeMultipart streams a 1 MiB upload whose file holds no CR byte
// (the worst case of mime/multipart's scan, which partScanner avoids).
func BenchmarkTeeMultipart(b *testing.B) {
	benchTeeMultipart(b, bytes.Repeat([]byte("glTF0123"), 1<<17))
}

// BenchmarkTeeMultipartRandom streams a 1 MiB upload of random bytes, which
// hold a CR (the first byte of a delimiter) every 256 bytes on average.
func BenchmarkTeeMultipartRandom(b *testing.B) {
	data := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	benchTeeMultipart(b, data)
}

func benchTeeMultipart(b *testing.B, file []byte) {
	body := buildMultipart(b, testBoundary,
		map[string]string{"key": "quiet-river-1234", "email": "builder@example.com", "target_type": "2"},
		[]testFile{{"file", "big.glb", "model/gltf-binary", file}})
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		tee := NewBodyTee(io.NopCloser(bytes.NewReader(body)), testMultipartType, Limits{})
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{tee}, buf); err != nil {
			b.Fatal(err)
		}
		var p Params
		if !tee.Finish(&p) || p.Len() != 3 {
			b.Fatal("capture failed")
		}
	}
}

// BenchmarkTeeOpaque is the baseline: a body that is not a form.
func BenchmarkTeeOpaque(b *testing.B) {
	body := bytes.Repeat([]byte("glTF0123"), 1<<17)
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		tee := NewBodyTee(io.NopCloser(bytes.NewReader(body)), "model/gltf-binary", Limits{})
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{tee}, buf); err != nil {
			b.Fatal(err)
		}
		tee.Finish(&Params{})
	}
}
