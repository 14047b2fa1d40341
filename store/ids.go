package store

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Event and delivery IDs start with the time they were made, so that the
// keys named after them (ev/<eventID>, dl/<deliveryID>) are written in
// about the order they sort in. Badger then finds the events a drain claims
// one after another in the same few table blocks, and compacts ordered runs
// of keys rather than keys spread over the whole key space: with random IDs,
// draining 100,000 deliveries cost about 10 % more CPU per delivery. The
// other half of each ID is random, so IDs stay unguessable and unique across
// processes and clock steps; a clock that steps back only costs locality.

// idBytes returns 8 bytes of Unix nanoseconds (big-endian) then 8 random
// bytes.
func idBytes(now time.Time) [16]byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	_, _ = rand.Read(b[8:])
	return b
}

// sortableBase32 is base32 with the "extended hex" alphabet in lower case
// (0-9, then a-v), whose characters sort in the order of their values.
var sortableBase32 = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// newDeliveryID returns "msg_" and 26 characters of 0-9 and a-v: the
// creation time then 64 random bits, like the time-sortable message IDs of
// other webhook services. It never contains '.' or '/'.
func newDeliveryID() string { return deliveryIDAt(time.Now()) }

func deliveryIDAt(now time.Time) string {
	b := idBytes(now)
	return "msg_" + sortableBase32.EncodeToString(b[:])
}

// NewEventID returns a new event ID: "evt_" and 32 hexadecimal digits, the
// creation time then 64 random bits.
func NewEventID() string { return eventIDAt(time.Now()) }

func eventIDAt(now time.Time) string {
	b := idBytes(now)
	return "evt_" + hex.EncodeToString(b[:])
}
