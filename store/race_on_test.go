//go:build race

package store

// raceEnabled reports whether the race detector is on (it slows Badger
// down about tenfold, so large fixtures are made smaller).
const raceEnabled = true
