package sink

import (
	"strconv"
	"testing"
)

func TestTargetURLs(t *testing.T) {
	tests := []struct {
		raw, host, wantErr string
	}{
		{raw: "https://example.com/hooks/a?x=1", host: "example.com"},
		{raw: "https://[::1]:8443/h", host: "[::1]:8443"},
		{raw: "https://example.com:/h", host: "example.com"},
		{raw: "https://[::1]:/h", host: "[::1]"},
		{raw: "http://example.com/h", wantErr: "webhook url must use https"},
		{raw: "https://exa mple.com/%zz", wantErr: "webhook url is not a valid URL"},
	}
	var tu targetURLs
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, err := tu.parse(tt.raw)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || u.Host != tt.host {
				t.Fatalf("parse = %v, %v; want host %q", u, err, tt.host)
			}
			if again, _ := tu.parse(tt.raw); again != u {
				t.Error("parsed again instead of reused")
			}
		})
	}
	for i := range maxTargetURLs + 5 {
		raw := "https://h" + strconv.Itoa(i) + ".example/"
		if u, err := tu.parse(raw); err != nil || u.Host != "h"+strconv.Itoa(i)+".example" {
			t.Fatalf("parse(%q) = %v, %v", raw, u, err)
		}
	}
	if n := tu.urls.n.Load(); n > maxTargetURLs {
		t.Errorf("cache holds %d URLs, bound %d", n, maxTargetURLs)
	}
}
