package sink

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const (
	vecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecTS     = 1614265330
	vecBody   = `{"test": 2432232314}`
	vecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignConformanceVector(t *testing.T) {
	got, err := Sign(vecSecret, vecID, time.Unix(vecTS, 0), []byte(vecBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != vecSig {
		t.Fatalf("Sign = %q, want %q", got, vecSig)
	}
	// Without the prefix the key is the same, as in the reference library.
	got, err = Sign(strings.TrimPrefix(vecSecret, SecretPrefix), vecID, time.Unix(vecTS, 0), []byte(vecBody))
	if err != nil || got != vecSig {
		t.Fatalf("Sign without prefix = %q, %v", got, err)
	}
}

// verifyRef verifies as a receiver would, with the reference library.
func verifyRef(t *testing.T, secret string, body []byte, id string, ts time.Time, sig string) error {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("reference NewWebhook: %v", err)
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", sig)
	return wh.Verify(body, h)
}

func TestSignVerifiedByReferenceLibrary(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event":"Upload","apiKey":"k","entryIds":["e1"],"metadataKeys":[],"metadataValues":[]}`)
	now := time.Now()
	sig, err := Sign(secret, "msg_abc", now, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyRef(t, secret, body, "msg_abc", now, sig); err != nil {
		t.Fatalf("reference Verify: %v", err)
	}
	// Tampering is detected.
	if err := verifyRef(t, secret, append(body, ' '), "msg_abc", now, sig); err == nil {
		t.Fatal("reference Verify accepted a modified body")
	}
	if err := verifyRef(t, secret, body, "msg_abd", now, sig); err == nil {
		t.Fatal("reference Verify accepted another message id")
	}
	// The reference library signs identically.
	ref, _ := standardwebhooks.NewWebhook(secret)
	want, _ := ref.Sign("msg_abc", now, body)
	if sig != want {
		t.Fatalf("Sign = %q, reference = %q", sig, want)
	}
}

func TestSignAllRotation(t *testing.T) {
	oldS, _ := NewSecret()
	newS, _ := NewSecret()
	body := []byte(`{"a":1}`)
	now := time.Now()
	sig, err := SignAll([]string{newS, oldS}, "msg_x", now, body)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(sig)); n != 2 {
		t.Fatalf("SignAll gave %d entries: %q", n, sig)
	}
	for _, s := range []string{newS, oldS} {
		if err := verifyRef(t, s, body, "msg_x", now, sig); err != nil {
			t.Errorf("reference Verify with one of the secrets: %v", err)
		}
	}
	other, _ := NewSecret()
	if err := verifyRef(t, other, body, "msg_x", now, sig); err == nil {
		t.Error("reference Verify accepted an unrelated secret")
	}
	if _, err := SignAll(nil, "msg_x", now, body); err == nil {
		t.Error("SignAll(nil) succeeded")
	}
	if _, err := SignAll([]string{newS, "whsec_bad"}, "msg_x", now, body); err == nil {
		t.Error("SignAll with an invalid secret succeeded")
	}
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecret()
	if a == b {
		t.Fatal("two secrets are equal")
	}
	if !strings.HasPrefix(a, SecretPrefix) {
		t.Fatalf("secret %q lacks prefix", a)
	}
	key, err := DecodeSecret(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Fatalf("key is %d bytes, want 32", len(key))
	}
}

func TestDecodeSecret(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name   string
		secret string
		ok     bool
		n      int
	}{
		{"vector", vecSecret, true, 24},
		{"no prefix", strings.TrimPrefix(vecSecret, SecretPrefix), true, 24},
		{"24 bytes", SecretPrefix + b64(24), true, 24},
		{"64 bytes", SecretPrefix + b64(64), true, 64},
		{"empty", "", false, 0},
		{"prefix only", SecretPrefix, false, 0},
		{"23 bytes", SecretPrefix + b64(23), false, 0},
		{"65 bytes", SecretPrefix + b64(65), false, 0},
		{"not base64", SecretPrefix + "not*base64!not*base64!not*base64!", false, 0},
		{"url alphabet", SecretPrefix + strings.Repeat("-_", 16), false, 0},
		{"missing padding", SecretPrefix + strings.TrimRight(b64(25), "="), false, 0},
		{"non-canonical trailing bits", SecretPrefix + strings.Repeat("A", 34) + "B=", false, 0},
		{"embedded newline", SecretPrefix + b64(12) + "\n" + b64(12), false, 0},
		{"wrong prefix", "whsk_" + b64(32), false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := DecodeSecret(tt.secret)
			if tt.ok {
				if err != nil {
					t.Fatalf("DecodeSecret: %v", err)
				}
				if len(key) != tt.n {
					t.Fatalf("key length %d, want %d", len(key), tt.n)
				}
				return
			}
			if err == nil {
				t.Fatalf("DecodeSecret(%q) succeeded", tt.secret)
			}
			if tt.secret != "" && len(tt.secret) > len(SecretPrefix) && strings.Contains(err.Error(), strings.TrimPrefix(tt.secret, SecretPrefix)) {
				t.Fatalf("error %q contains the secret", err)
			}
			if _, err := Sign(tt.secret, "msg", time.Now(), nil); err == nil {
				t.Fatal("Sign accepted the secret")
			}
		})
	}
}
