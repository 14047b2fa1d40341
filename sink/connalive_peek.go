//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sink

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// connAlive reports whether an idle connection can take a request: its
// receiver has neither closed it nor sent anything unasked (a 408, a TLS
// alert), which a non-blocking peek at the socket shows. net/http learns
// the same from a read it keeps pending on every idle connection.
func connAlive(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	alive := true
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK):
		case errors.Is(err, syscall.EINTR):
			return false // try again once readable, or at once
		default:
			// Data nobody asked for, the end of the stream (n == 0), or an
			// error.
			alive = false
			_ = n
		}
		return true
	})
	return alive && err == nil
}
