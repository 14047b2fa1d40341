package store

import (
	"regexp"
	"testing"
	"time"
)

// TestIDsSortByCreation: an ID made later sorts after one made earlier,
// whatever bits of the time differ, and IDs made at the same instant are
// still distinct.
func TestIDsSortByCreation(t *testing.T) {
	base := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		later time.Duration
	}{
		{"one nanosecond", time.Nanosecond},
		{"31 nanoseconds (one base32 digit)", 31 * time.Nanosecond},
		{"32 nanoseconds (a carry)", 32 * time.Nanosecond},
		{"one second", time.Second},
		{"ten years", 10 * 365 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 100 { // the random halves must not matter
				if a, b := deliveryIDAt(base), deliveryIDAt(base.Add(tc.later)); a >= b {
					t.Fatalf("delivery IDs %s then %s", a, b)
				}
				if a, b := eventIDAt(base), eventIDAt(base.Add(tc.later)); a >= b {
					t.Fatalf("event IDs %s then %s", a, b)
				}
			}
		})
	}

	// Every value of the last digits made of time alone, and their carries.
	prev, prevEvent := deliveryIDAt(base), eventIDAt(base)
	for step := 1; step <= 1024; step++ {
		at := base.Add(time.Duration(step) * 16 * time.Nanosecond)
		id, ev := deliveryIDAt(at), eventIDAt(at)
		if id <= prev || ev <= prevEvent {
			t.Fatalf("IDs %s, %s then, 16 ns later, %s, %s", prev, prevEvent, id, ev)
		}
		prev, prevEvent = id, ev
	}

	seen := map[string]bool{}
	for range 10000 {
		for _, id := range []string{deliveryIDAt(base), eventIDAt(base)} {
			if seen[id] {
				t.Fatalf("ID %s made twice", id)
			}
			seen[id] = true
		}
	}
}

// TestIDFormat: delivery IDs keep the shape of earlier versions' (msg_ and
// 26 lowercase letters and digits, no '.' or '/', which keys and
// signatures rely on); event IDs are evt_ and 32 hexadecimal digits.
func TestIDFormat(t *testing.T) {
	msg := regexp.MustCompile(`^msg_[0-9a-v]{26}$`)
	evt := regexp.MustCompile(`^evt_[0-9a-f]{32}$`)
	for range 1000 {
		if id := newDeliveryID(); !msg.MatchString(id) {
			t.Fatalf("delivery ID %q", id)
		}
		if id := NewEventID(); !evt.MatchString(id) {
			t.Fatalf("event ID %q", id)
		}
	}
}
