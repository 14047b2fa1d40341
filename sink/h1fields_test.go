package sink

import (
	"strings"
	"testing"
)

// TestValidToken: every byte is judged as RFC 9110's tchar rule says
// (visible ASCII but the delimiters), and strings as a whole.
func TestValidToken(t *testing.T) {
	const tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for c := range 256 {
		want := strings.IndexByte(tchar, byte(c)) >= 0
		if got := validToken(string([]byte{byte(c)})); got != want {
			t.Errorf("validToken(%q) = %v, want %v", byte(c), got, want)
		}
	}
	for _, tt := range []struct {
		s    string
		want bool
	}{
		{"", false},
		{"webhook-signature", true},
		{"Content-Type", true},
		{"X-Evil\r\nX-Injected", false},
		{"a b", false},
		{"a:b", false},
		{"caf\xc3\xa9", false},
	} {
		if got := validToken(tt.s); got != tt.want {
			t.Errorf("validToken(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}
