package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// TestServiceableReadsFreeSpace: a reading with room to spare (at least
// twice min_free_space) is trusted for a while; one nearer the limit, below
// it or failed is not, so every call reads again.
func TestServiceableReadsFreeSpace(t *testing.T) {
	const min = 256 << 20
	st, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, tc := range []struct {
		name      string
		free      uint64
		ok        bool
		wantReads int // over three calls
		wantErr   string
	}{
		{"roomy", 2 * min, true, 1, ""},
		{"near the limit", 2*min - 1, true, 3, ""},
		{"below the limit", min - 1, true, 3, "disk nearly full"},
		{"unreadable", 0, false, 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reads := 0
			prev := statFree
			statFree = func(string) (uint64, bool) { reads++; return tc.free, tc.ok }
			defer func() { statFree = prev }()
			h := &storeHandle{dir: t.TempDir()}
			h.minFree.Store(min)
			for range 3 {
				err := h.serviceable(st)
				if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
					t.Fatalf("serviceable: %v, want error %q", err, tc.wantErr)
				}
			}
			if reads != tc.wantReads {
				t.Errorf("%d reads of the free space, want %d", reads, tc.wantReads)
			}
			// Once the trust runs out, the next call reads again.
			h.roomyUntil.Store(0)
			_ = h.serviceable(st)
			if reads != tc.wantReads+1 {
				t.Errorf("%d reads after the trust ran out, want %d", reads, tc.wantReads+1)
			}
		})
	}
}
