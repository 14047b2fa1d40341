package sink

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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
	key, err := DecodeSecret(secret)
	if err != nil {
		return "", err
	}
	return signKey(key, msgID, ts, body), nil
}

func signKey(key []byte, msgID string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	var num [20]byte
	mac.Write([]byte(msgID))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(num[:0], ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SignAll returns the webhook-signature header value signed with every
// secret in secrets (the current one first, then those still inside a
// rotation overlap), space-separated as Standard Webhooks specifies; a
// receiver accepts the message if any entry matches its secret. It fails
// if secrets is empty or any secret is invalid.
func SignAll(secrets []string, msgID string, ts time.Time, body []byte) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("webhook has no secret")
	}
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		key, err := DecodeSecret(s)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, signKey(key, msgID, ts, body))
	}
	return strings.Join(sigs, " "), nil
}
