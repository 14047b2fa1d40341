package sink

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultSchedule is the delay before attempts 2, 3, ... of a delivery
// (8 attempts over about 28 hours), as in Svix and the Standard Webhooks
// recommendation.
var DefaultSchedule = []time.Duration{
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	10 * time.Hour,
}

// Schedule lists the delays before the second, third, ... attempt of a
// delivery. An empty (non-nil) Schedule means a single attempt.
type Schedule []time.Duration

// jitter is the relative spread applied to every scheduled delay.
const jitter = 0.2

// Delay returns how long to wait before the next attempt when attempts
// attempts have been made so far (attempts >= 1; smaller values count as 1),
// with uniform jitter of ±20% drawn from rnd (which returns values in [0,1);
// nil means no jitter). It returns false when the schedule is exhausted.
func (s Schedule) Delay(attempts int, rnd func() float64) (time.Duration, bool) {
	if attempts < 1 {
		attempts = 1
	}
	if attempts > len(s) {
		return 0, false
	}
	d := s[attempts-1]
	if d <= 0 {
		return 0, true
	}
	f := 1.0
	if rnd != nil {
		r := rnd()
		if r < 0 || r >= 1 || math.IsNaN(r) {
			r = 0.5
		}
		f = 1 - jitter + 2*jitter*r
	}
	j := float64(d) * f
	if j >= math.MaxInt64 {
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(j), true
}

// RetryAfter parses a Retry-After header (delta-seconds or an HTTP-date,
// relative to now). It returns false when the header is absent, invalid or
// negative (a date in the past).
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && allDigits(v) {
				return time.Duration(math.MaxInt64), true
			}
			return 0, false
		}
		if n > uint64(math.MaxInt64/int64(time.Second)) {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		return 0, false
	}
	return d, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
