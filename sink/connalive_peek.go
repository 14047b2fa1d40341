//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sink

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peeker tells whether an idle connection can take a request: its
// receiver has neither closed it nor sent anything unasked (a 408, a TLS
// alert), which a non-blocking peek at the socket shows. net/http learns
// the same from a read it keeps pending on every idle connection. A
// connection is used by one request at a time, and so is its peeker; it
// is made once per connection, as is the function it hands the socket.
type peeker struct {
	rc    syscall.RawConn // nil: the connection has no socket to peek at
	fn    func(fd uintptr) bool
	alive bool
	buf   [1]byte
}

// newPeeker returns the peeker of c.
func newPeeker(c net.Conn) *peeker {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	p := &peeker{}
	if sc, ok := c.(syscall.Conn); ok {
		p.rc, _ = sc.SyscallConn()
	}
	p.fn = p.peek
	return p
}

// connAlive reports whether the connection can take a request.
func (p *peeker) connAlive() bool {
	if p.rc == nil {
		return true
	}
	p.alive = true
	err := p.rc.Read(p.fn)
	return p.alive && err == nil
}

func (p *peeker) peek(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK):
	case errors.Is(err, syscall.EINTR):
		return false // try again once readable, or at once
	default:
		// Data nobody asked for, the end of the stream (n == 0), or an
		// error.
		p.alive = false
	}
	return true
}
