package caddymodule

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzCaddyfile parses arbitrary Caddyfile text as the global option and
// as the directive. It must never panic; whatever UnmarshalCaddyfile
// accepts must pass Validate (the Caddyfile may not let through what the
// JSON config would refuse) and survive a JSON round trip; and the whole
// Caddyfile adapter must not panic with the text in either place.
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"echo3d_webhooks",
		"echo3d_webhooks {\n\tstorage /var/lib/hooks\n\tretry 1s 1m 1h\n\ttimeout 3s\n\tallow_private_targets\n}",
		"echo3d_webhooks {\n\tallow_targets 10.0.0.0/8 hooks.internal *.corp.example fd00::1\n\tmax_webhooks_per_collection 5\n\tmin_free_space 1GiB\n}",
		"echo3d_webhooks {\n\ttrusted_ca_file a.pem b.pem\n\tsecret_overlap 2h\n\tworkers 8\n\tper_webhook 2\n}",
		"echo3d_webhooks {\n\tper_webhook 16\n\tordering concurrent\n}",
		"echo3d_webhooks {\n\tdelete_params entryIds ids\n\tedit_params entryId\n\tmax_field_size 32KiB\n\tmax_form_size 2MiB\n\tmax_response_size 512KB\n\tlookup_timeout 3s\n}",
		"echo3d_webhooks {\n\tretry -1s\n}",
		"echo3d_webhooks {\n\tmax_field_size 99999999999999999999\n}",
		"echo3d_webhooks {\n\tstorage {env.HOME}/x \"quoted arg\" `backtick`\n}",
		"echo3d_webhooks {\n\tworkers 9223372036854775808\n}",
		"echo3d_webhooks {\n\tallow_targets *\n}",
		"echo3d_webhooks {\n\t{\n}}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}

		var app App
		if err := app.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err == nil {
			if err := app.Validate(); err != nil {
				t.Fatalf("the Caddyfile accepts %q but Validate refuses it: %v", input, err)
			}
			roundTrip(t, &app, new(App))
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err == nil {
			if err := h.Validate(); err != nil {
				t.Fatalf("the Caddyfile accepts %q but Validate refuses it: %v", input, err)
			}
			roundTrip(t, &h, new(Handler))
		}

		adapter := caddyconfig.GetAdapter("caddyfile")
		for _, cfg := range []string{
			"{\n" + input + "\n}\n:80 {\n\trespond ok\n}\n",
			":80 {\n" + input + "\n\treverse_proxy localhost:9\n}\n",
		} {
			_, _, _ = adapter.Adapt([]byte(cfg), nil)
		}
	})
}

// roundTrip checks that v encodes to JSON and decodes into fresh unchanged.
func roundTrip(t *testing.T, v, fresh any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %+v: %v", v, err)
	}
	if err := json.Unmarshal(b, fresh); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	if !reflect.DeepEqual(v, fresh) {
		t.Fatalf("JSON round trip changed %+v into %+v", v, fresh)
	}
}

// FuzzCaptureBody writes arbitrary upstream bodies, plain, gzipped,
// labelled gzip without being gzip, or in an unknown encoding, through the
// capture writer in arbitrary chunks: every byte passes through; a body
// reported complete is exactly the decoded body and within the cap; one
// that is not says why; memory stays within the cap.
func FuzzCaptureBody(f *testing.F) {
	f.Add([]byte(`{"id":"e1","additionalData":{}}`), uint8(0), uint16(1024), uint8(7))
	f.Add([]byte(`{"id":"e1"}`), uint8(1), uint16(1024), uint8(3))
	f.Add(bytes.Repeat([]byte("0"), 4096), uint8(1), uint16(100), uint8(255))
	f.Add([]byte("\x1f\x8b\x08\x00garbage"), uint8(2), uint16(1024), uint8(1))
	f.Add([]byte{0x1b, 0x03, 0x00}, uint8(3), uint16(1024), uint8(2))
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // reused: its set-up costs more than a run
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, capacity uint16, chunk uint8) {
		if len(data) > 1<<16 {
			// Beyond the largest cap, size only adds time (compress/flate
			// is slow under the fuzzer's instrumentation).
			return
		}
		max := int(capacity) + 1
		sent := data
		rec := httptest.NewRecorder()
		cw := newCaptureWriter(rec, true, max)
		defer cw.release()
		switch mode % 4 {
		case 1:
			var buf bytes.Buffer
			zw.Reset(&buf)
			_, _ = zw.Write(data)
			_ = zw.Close()
			sent = buf.Bytes()
			cw.Header().Set("Content-Encoding", "gzip")
		case 2:
			cw.Header().Set("Content-Encoding", "gzip")
		case 3:
			cw.Header().Set("Content-Encoding", "br")
		}
		cw.WriteHeader(http.StatusOK)
		step := int(chunk) + 1
		for rest := sent; len(rest) > 0; {
			n := min(step, len(rest))
			if _, err := cw.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if !bytes.Equal(rec.Body.Bytes(), sent) {
			t.Fatalf("the client got %d bytes that differ from the %d sent", rec.Body.Len(), len(sent))
		}

		body, complete := cw.body()
		if !complete {
			if cw.problem == "" {
				t.Fatalf("incomplete body (mode %d, %d bytes, cap %d) without a reason", mode%4, len(sent), max)
			}
			return
		}
		if cw.problem != "" || len(body) > max {
			t.Fatalf("complete body of %d bytes (cap %d) with problem %q", len(body), max, cw.problem)
		}
		want := sent
		switch mode % 4 {
		case 1:
			want = data
		case 2:
			zr, err := gzip.NewReader(bytes.NewReader(sent))
			if err != nil {
				t.Fatalf("corrupt gzip reported complete: %v", err)
			}
			if want, err = io.ReadAll(zr); err != nil {
				t.Fatalf("corrupt gzip reported complete: %v", err)
			}
		case 3:
			t.Fatal("an unknown encoding reported complete")
		}
		if !bytes.Equal(body, want) {
			t.Fatalf("captured %q, want %q", body, want)
		}
	})
}
