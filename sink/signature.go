package sink

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every webhook signing secret shown to users.
const SecretPrefix = "whsec_"

// Accepted sizes of a decoded secret, in bytes (Standard Webhooks: 24..64).
const (
	minSecretBytes = 24
	maxSecretBytes = 64
	newSecretBytes = 32
)

// NewSecret returns a fresh signing secret: "whsec_" followed by the
// standard base64 encoding of 32 random bytes.
func NewSecret() (string, error) {
	b := make([]byte, newSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating webhook secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// DecodeSecret returns the HMAC key held by a secret: the "whsec_" prefix
// (optional, as in the reference libraries) is stripped and the rest decoded
// as strict, padded standard base64. Keys shorter than 24 or longer than 64
// bytes are rejected. Errors never contain the secret.
func DecodeSecret(secret string) ([]byte, error) {
	s := strings.TrimPrefix(secret, SecretPrefix)
	if s == "" {
		return nil, errors.New("webhook secret is empty")
	}
	// The decoder skips CR and LF even in strict mode; a secret has none.
	key, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("webhook secret is not valid base64 after the " + SecretPrefix + " prefix")
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return nil, fmt.Errorf("webhook secret decodes to %d bytes; it must be %d to %d", len(key), minSecretBytes, maxSecretBytes)
	}
	return key, nil
}

// Sign returns the webhook-signature header value for one attempt:
// "v1," followed by the standard base64 HMAC-SHA256, keyed with the decoded
// secret, of msgID + "." + unix seconds of ts + "." + body.
func Sign(secret, msgID string, ts time.Time, body []byte) (string, error) {
	return SignAll([]string{secret}, msgID, ts, body)
}

// signers serves Sign and SignAll, with the keyed MACs attempts use.
var signers signer

// SignAll returns the webhook-signature header value signed with every
// secret in secrets (the current one first, then those still inside a
// rotation overlap), space-separated as Standard Webhooks specifies; a
// receiver accepts the message if any entry matches its secret. It fails
// if secrets is empty or any secret is invalid.
func SignAll(secrets []string, msgID string, ts time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("webhook has no secret")
	}
	unix := strconv.FormatInt(ts.Unix(), 10)
	var out []byte
	for i, sec := range secrets {
		if i > 0 {
			out = append(out, ' ')
		}
		var err error
		if out, err = signers.appendSig(out, sec, msgID, unix, body); err != nil {
			return "", err
		}
	}
	return string(out), nil
}
