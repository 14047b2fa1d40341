package watch

import (
	"fmt"
	"time"
)

// Defaults of Settings. echo3D holds a waited upload open for up to about
// five minutes while it processes, so processing that takes minutes is
// normal: the first poll comes after 10s, the interval doubles up to one
// poll a minute, and a watch gives up after an hour. At the default bound of
// 1000 watches that is at most about 17 polls a second.
const (
	DefaultFirstInterval = 10 * time.Second
	DefaultMaxInterval   = time.Minute
	DefaultGiveUp        = time.Hour
	DefaultMaxWatches    = 1000
)

// jitterFraction spreads each poll by up to ±20 %, so watches created
// together do not poll together.
const jitterFraction = 0.2

// Settings are the operator's knobs. Zero fields take the defaults.
type Settings struct {
	// FirstInterval is the delay between the upload and the first poll.
	FirstInterval time.Duration
	// MaxInterval caps the delay between two polls.
	MaxInterval time.Duration
	// GiveUp is how long after the upload a watch ends without Processed.
	GiveUp time.Duration
	// MaxWatches bounds the watches kept; beyond it the oldest gives up.
	MaxWatches int
}

// WithDefaults returns s with zero fields set to the defaults, and
// MaxInterval raised to FirstInterval when it is smaller.
func (s Settings) WithDefaults() Settings {
	if s.FirstInterval <= 0 {
		s.FirstInterval = DefaultFirstInterval
	}
	if s.MaxInterval <= 0 {
		s.MaxInterval = DefaultMaxInterval
	}
	if s.MaxInterval < s.FirstInterval {
		s.MaxInterval = s.FirstInterval
	}
	if s.GiveUp <= 0 {
		s.GiveUp = DefaultGiveUp
	}
	if s.MaxWatches <= 0 {
		s.MaxWatches = DefaultMaxWatches
	}
	return s
}

// Validate rejects negative values (zero means the default).
func (s Settings) Validate() error {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"first interval", s.FirstInterval}, {"max interval", s.MaxInterval}, {"give up", s.GiveUp}} {
		if f.d < 0 {
			return fmt.Errorf("%s: must not be negative, got %s", f.name, f.d)
		}
	}
	if s.MaxWatches < 0 {
		return fmt.Errorf("max watches: must not be negative, got %d", s.MaxWatches)
	}
	return nil
}

// Interval is the nominal delay (before jitter) from a poll made when the
// watch is age old to the next one: FirstInterval + age, capped at
// MaxInterval. Starting from age 0 this doubles the interval at every poll
// (polls at f, 3f, 7f, 15f, ...), and because it depends only on the age it
// needs no poll counter: a watch restored after a restart continues the
// same schedule. s must have its defaults applied.
func (s Settings) Interval(age time.Duration) time.Duration {
	if age < 0 {
		age = 0
	}
	d := s.FirstInterval + age
	if d > s.MaxInterval || d < 0 { // d < 0: overflow
		return s.MaxInterval
	}
	return d
}

// jitter spreads d by ±jitterFraction using r, a number in [0, 1).
func jitter(d time.Duration, r float64) time.Duration {
	return d + time.Duration(float64(d)*jitterFraction*(2*r-1))
}
