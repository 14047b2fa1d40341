package caddymodule

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/events"
)

func TestCredentialsRedacted(t *testing.T) {
	c := credentials{email: "a@example.com", userKey: "uk_secret", secKey: "sk_secret"}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(format, c)
		for _, secret := range []string{c.email, c.userKey, c.secKey} {
			if strings.Contains(out, secret) {
				t.Errorf("%s prints %q", format, out)
			}
		}
	}
	if out := fmt.Sprintf("%+v", struct{ C credentials }{c}); strings.Contains(out, "secret") {
		t.Errorf("nested: %q", out)
	}
}

func TestCredentialsMerge(t *testing.T) {
	caller := credentials{email: "caller@example.com"}
	conf := credentials{email: "op@example.com", userKey: "uk_op", secKey: "sk_op"}
	got := caller.orElse(conf)
	if got != (credentials{email: "caller@example.com", userKey: "uk_op", secKey: "sk_op"}) {
		t.Errorf("orElse = %#v fields %q %q %q", got, got.email, got.userKey, got.secKey)
	}
	form := url.Values{}
	credentials{userKey: "uk"}.addTo(form)
	if form.Encode() != "userKey=uk" {
		t.Errorf("addTo sent %q; empty credentials must not be sent", form.Encode())
	}
}

func TestProcessedFollows(t *testing.T) {
	up := events.Payload{Event: events.Upload, APIKey: "k", EntryIDs: []string{"e1"}}
	for _, tc := range []struct {
		name string
		rest []events.Payload
		want bool
	}{
		{"nothing", nil, false},
		{"same entry", []events.Payload{{Event: events.Processed, APIKey: "k", EntryIDs: []string{"e1"}}}, true},
		{"other entry", []events.Payload{{Event: events.Processed, APIKey: "k", EntryIDs: []string{"e2"}}}, false},
		{"other collection", []events.Payload{{Event: events.Processed, APIKey: "x", EntryIDs: []string{"e1"}}}, false},
		{"not Processed", []events.Payload{{Event: events.Edit, APIKey: "k", EntryIDs: []string{"e1"}}}, false},
	} {
		if got := processedFollows(tc.rest, up); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDecodePollAnswer(t *testing.T) {
	plain := []byte(`{"db":{}}`)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(plain)
	_ = zw.Close()
	var bomb bytes.Buffer
	zw = gzip.NewWriter(&bomb)
	_, _ = zw.Write(bytes.Repeat([]byte{' '}, 1<<16))
	_ = zw.Close()
	for _, tc := range []struct {
		name, encoding string
		body           []byte
		want           []byte
		err            bool
	}{
		{"identity", "", plain, plain, false},
		{"gzip", "gzip", gz.Bytes(), plain, false},
		{"too large once decoded", "gzip", bomb.Bytes(), nil, true},
		{"corrupt gzip", "gzip", []byte("not gzip"), nil, true},
		{"other encoding", "br", plain, nil, true},
	} {
		h := http.Header{}
		if tc.encoding != "" {
			h.Set("Content-Encoding", tc.encoding)
		}
		got, err := decodePollAnswer(h, tc.body, 1024)
		if (err != nil) != tc.err || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %q, %v", tc.name, got, err)
		}
	}
}
