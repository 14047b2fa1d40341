//go:build !(linux || darwin || freebsd || dragonfly || windows)

package caddymodule

// diskFree cannot learn the free space on this system: the min_free_space
// guard is off.
func diskFree(string) (uint64, bool) { return 0, false }
