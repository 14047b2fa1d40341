package sink

import (
	"net/http"
	"testing"
	"time"
)

func TestScheduleDelay(t *testing.T) {
	s := Schedule(DefaultSchedule)
	tests := []struct {
		attempts int
		rnd      float64
		want     time.Duration
		ok       bool
	}{
		{1, 0, 4 * time.Second, true},                            // -20%
		{1, 0.5, 5 * time.Second, true},                          // centre
		{1, 0.999999999, 6 * time.Second, true},                  // just under +20%
		{0, 0.5, 5 * time.Second, true},                          // treated as 1
		{2, 0, 4 * time.Minute, true},                            // 5m -20%
		{3, 0.5, 30 * time.Minute, true},                         // 30m
		{4, 1.0 / 4, 108 * time.Minute, true},                    // 2h * 0.9
		{7, 0.5, 10 * time.Hour, true},                           // last
		{8, 0.5, 0, false},                                       // exhausted
		{100, 0.5, 0, false},                                     // exhausted
		{1, 2, 5 * time.Second, true},                            // out-of-range rnd -> centre
		{5, 0.75, time.Duration(5.5 * float64(time.Hour)), true}, // 5h * 1.1
	}
	for _, tt := range tests {
		got, ok := s.Delay(tt.attempts, func() float64 { return tt.rnd })
		if ok != tt.ok {
			t.Errorf("Delay(%d, %v) ok = %v, want %v", tt.attempts, tt.rnd, ok, tt.ok)
			continue
		}
		if diff := got - tt.want; diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("Delay(%d, %v) = %v, want %v", tt.attempts, tt.rnd, got, tt.want)
		}
	}
}

func TestScheduleDelayJitterBounds(t *testing.T) {
	s := Schedule{10 * time.Second, time.Hour}
	for attempts, base := range map[int]time.Duration{1: 10 * time.Second, 2: time.Hour} {
		lo, hi := base*8/10, base*12/10
		seen := map[bool]bool{}
		for i := 0; i < 1000; i++ {
			d, ok := s.Delay(attempts, nil)
			if !ok || d != base {
				t.Fatalf("Delay without rnd = %v, %v; want %v", d, ok, base)
			}
			d, ok = s.Delay(attempts, func() float64 { return float64(i) / 1000 })
			if !ok || d < lo || d >= hi {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v)", attempts, d, lo, hi)
			}
			seen[d < base] = true
		}
		if !seen[true] || !seen[false] {
			t.Fatalf("jitter is one-sided for attempt %d", attempts)
		}
	}
	if _, ok := (Schedule{}).Delay(1, nil); ok {
		t.Fatal("empty schedule allows a retry")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name  string
		value string // "" = absent
		want  time.Duration
		ok    bool
	}{
		{"absent", "", 0, false},
		{"seconds", "120", 120 * time.Second, true},
		{"zero", "0", 0, true},
		{"spaces", " 7 ", 7 * time.Second, true},
		{"huge", "99999999999999999999999", time.Duration(1<<63 - 1), true},
		{"negative", "-5", 0, false},
		{"fraction", "1.5", 0, false},
		{"garbage", "soon", 0, false},
		{"date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"date RFC850", now.Add(time.Hour).Format(time.RFC850), time.Hour, true},
		{"date in the past", now.Add(-time.Minute).Format(http.TimeFormat), 0, false},
		{"bad date", "Mon, 99 Foo 2030 00:00:00 GMT", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.value != "" {
				h.Set("Retry-After", tt.value)
			}
			got, ok := RetryAfter(h, now)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("RetryAfter(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
			}
		})
	}
}
