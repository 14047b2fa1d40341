package sink

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/store"
)

// TestSignerSignsAsSignAll: the cached, keyed MACs give the header
// SignAll gives for the webhook's signing secrets, on first use and on
// reuse, and a receiver's reference library accepts it.
func TestSignerSignsAsSignAll(t *testing.T) {
	cur, _ := NewSecret()
	prev, _ := NewSecret()
	gone, _ := NewSecret()
	now := time.Now()
	body := []byte(`{"event":"Upload","apiKey":"k","entryIds":["e1"]}`)
	tests := []struct {
		name    string
		wh      store.Webhook
		entries int
		wantErr string
	}{
		{name: "one secret", wh: store.Webhook{Secret: cur}, entries: 1},
		{name: "inside a rotation overlap", entries: 2, wh: store.Webhook{Secret: cur,
			PreviousSecrets: []store.PreviousSecret{{Secret: prev, ExpiresAt: now.Add(time.Hour)}}}},
		{name: "past an overlap", entries: 2, wh: store.Webhook{Secret: cur,
			PreviousSecrets: []store.PreviousSecret{{Secret: gone, ExpiresAt: now}, {Secret: prev, ExpiresAt: now.Add(time.Hour)}}}},
		{name: "no secret", wh: store.Webhook{}, wantErr: "no secret"},
		{name: "invalid secret", wh: store.Webhook{Secret: "whsec_bad"}, wantErr: "not valid base64"},
		{name: "invalid previous secret", wh: store.Webhook{Secret: cur,
			PreviousSecrets: []store.PreviousSecret{{Secret: "whsec_x", ExpiresAt: now.Add(time.Hour)}}}, wantErr: "not valid base64"},
	}
	var s signer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := range 2 { // keyed on the first, reused on the second
				got, err := s.sign(&tt.wh, "msg_1", now, strconv.FormatInt(now.Unix(), 10), body)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("round %d: error %v, want one containing %q", round, err, tt.wantErr)
					}
					continue
				}
				want, err2 := SignAll(tt.wh.SigningSecrets(now), "msg_1", now, body)
				if err != nil || err2 != nil {
					t.Fatalf("round %d: sign error %v, SignAll error %v", round, err, err2)
				}
				if got != want {
					t.Fatalf("round %d: sign = %q, SignAll = %q", round, got, want)
				}
				if n := len(strings.Fields(got)); n != tt.entries {
					t.Errorf("round %d: %d entries, want %d", round, n, tt.entries)
				}
				if err := verifyRef(t, tt.wh.Secret, body, "msg_1", now, got); err != nil {
					t.Errorf("round %d: reference Verify: %v", round, err)
				}
				if err := verifyRef(t, gone, body, "msg_1", now, got); err == nil {
					t.Errorf("round %d: reference Verify accepted an expired secret", round)
				}
			}
		})
	}
}

// TestSignerConcurrentAndBounded: attempts sign at once with shared MACs
// (run with -race), and past maxSignerKeys secrets the cache starts over
// and still signs right.
func TestSignerConcurrentAndBounded(t *testing.T) {
	var s signer
	secrets := make([]string, maxSignerKeys+10)
	for i := range secrets {
		secrets[i], _ = NewSecret()
	}
	now := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < len(secrets); i += 8 {
				for _, sec := range []string{secrets[i], secrets[0]} {
					body := []byte(sec[:12])
					got, err := s.sign(&store.Webhook{Secret: sec}, "msg", now, strconv.FormatInt(now.Unix(), 10), body)
					want, _ := Sign(sec, "msg", now, body)
					if err != nil || got != want {
						t.Errorf("secret %d: sign = %q, %v; want %q", i, got, err, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if n := s.keys.n.Load(); n > maxSignerKeys {
		t.Errorf("cache holds %d secrets, bound %d", n, maxSignerKeys)
	}
}
