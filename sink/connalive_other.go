//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sink

import "net"

// peeker would tell whether an idle connection can take a request; where a
// socket cannot be peeked at, a request on a connection the receiver
// closed fails before any answer and goes again on a new one.
type peeker struct{}

// newPeeker returns the peeker of c.
func newPeeker(net.Conn) *peeker { return &peeker{} }

// connAlive reports that the connection can take a request.
func (*peeker) connAlive() bool { return true }
