package store

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
)

// Key layout. Every key starts with a readable ASCII prefix; fixed-width
// numbers are 8-byte big-endian so that byte order is numeric order.
//
//	wh/<webhookID>                            JSON Webhook
//	ev/<eventID>                              pending count and Event record (eventvalue.go; TTL once the count is 0)
//	evp/<eventID>/<deliveryID>                empty; earlier versions' markers of pending deliveries, migrated at open
//	dl/<deliveryID>                           Delivery record (TTL once finished)
//	wq/, ws/, wsp/, wn/, hl/, wo/             per-webhook queues, their schedule and health, the age index
//	                                          of displaced pending deliveries (schedule.go, ageindex.go)
//	q/<due nanos><seq>                        "<deliveryID>/<webhookID>"; earlier versions' single queue, migrated at open
//	at/<webhookID>/<^at nanos><^attempt seq>  Attempt record (TTL; JSON from earlier versions); newest first
//	ls/<deliveryID>                           empty; a lease of earlier versions (leases now live in memory), released at open
//	wt/<watchID>                              JSON Watch (TTL: deadline + 1 day); never credentials
//	seq/delivery, seq/attempt                 Badger sequences
const (
	prefixWebhook      = "wh/"
	prefixEvent        = "ev/"
	prefixEventPending = "evp/"
	prefixDelivery     = "dl/"
	prefixQueue        = "q/"
	prefixAttempt      = "at/"
	prefixLease        = "ls/"
	prefixWatch        = "wt/"

	keyDeliverySeq = "seq/delivery"
	keyAttemptSeq  = "seq/attempt"
)

// queueKeyLen is the length of a queue key: prefix, due time and sequence.
const queueKeyLen = len(prefixQueue) + 16

// cursorLen is the length of the decoded ListAttempts cursor: the part of
// an attempt key after its webhook prefix.
const cursorLen = 16

func webhookKey(id string) []byte { return []byte(prefixWebhook + id) }

func eventKey(id string) []byte { return []byte(prefixEvent + id) }

func deliveryKey(id string) []byte { return []byte(prefixDelivery + id) }

func leaseKey(deliveryID string) []byte { return []byte(prefixLease + deliveryID) }

// queueKey orders deliveries by due time, then by sequence number.
func queueKey(due time.Time, seq uint64) []byte {
	k := make([]byte, 0, queueKeyLen)
	k = append(k, prefixQueue...)
	k = binary.BigEndian.AppendUint64(k, unixNanos(due))
	k = binary.BigEndian.AppendUint64(k, seq)
	return k
}

// queueValue is the value of a queue entry: enough to decide whether to
// claim it without loading the delivery. Delivery IDs never contain '/'.
func queueValue(deliveryID, webhookID string) []byte {
	return []byte(deliveryID + "/" + webhookID)
}

func parseQueueValue(v []byte) (deliveryID, webhookID string, err error) {
	d, w, ok := strings.Cut(string(v), "/")
	if !ok || d == "" {
		return "", "", fmt.Errorf("malformed queue value %q", v)
	}
	return d, w, nil
}

// attemptPrefix is the prefix of one webhook's attempt records.
func attemptPrefix(webhookID string) []byte {
	return []byte(prefixAttempt + webhookID + "/")
}

// attemptKey sorts a webhook's attempts newest first: both the time and the
// tie-breaking sequence are inverted.
func attemptKey(webhookID string, at time.Time, seq uint64) []byte {
	p := attemptPrefix(webhookID)
	k := make([]byte, 0, len(p)+cursorLen)
	k = append(k, p...)
	k = binary.BigEndian.AppendUint64(k, ^unixNanos(at))
	k = binary.BigEndian.AppendUint64(k, ^seq)
	return k
}

// encodeCursor turns the part of an attempt key after its prefix into an
// opaque cursor.
func encodeCursor(suffix []byte) string { return hex.EncodeToString(suffix) }

func decodeCursor(cursor string) ([]byte, error) {
	b, err := hex.DecodeString(cursor)
	if err != nil || len(b) != cursorLen {
		return nil, fmt.Errorf("cursor %q: %w", cursor, ErrInvalidCursor)
	}
	return b, nil
}

// unixNanos returns t as Unix nanoseconds, clamped to the range a uint64
// key can order: times before 1970 become 0, times after 2262 the maximum.
func unixNanos(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}
