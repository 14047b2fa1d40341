package sink

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPolicyCheck(t *testing.T) {
	tests := []struct {
		addr  string
		class string // "" = allowed
	}{
		{"127.0.0.1", "loopback"},
		{"127.8.9.10", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"::ffff:192.168.1.1", "private"},
		{"fc00::1", "private"},
		{"fd12:3456::1", "private"},
		{"fec0::1", "private"},
		{"100.64.0.1", "CGNAT"},
		{"100.127.255.254", "CGNAT"},
		{"::ffff:100.64.0.1", "CGNAT"},
		{"169.254.169.254", "link-local"},
		{"::ffff:169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"64:ff9b::7f00:1", "loopback"},      // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", "link-local"}, // NAT64 of 169.254.169.254
		{"2002:a00:1::1", "private"},         // 6to4 of 10.0.0.1
		{"::127.0.0.1", "loopback"},          // IPv4-compatible
		{"93.184.216.34", ""},
		{"::ffff:93.184.216.34", ""},
		{"8.8.8.8", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.32.0.1", ""},
		{"2606:2800:220:1:248:1893:25c8:1946", ""},
		{"64:ff9b::5db8:d822", ""}, // NAT64 of 93.184.216.34
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.addr)
		err := Policy{}.Check(ip)
		if tt.class == "" {
			if err != nil {
				t.Errorf("Check(%s) = %v, want allowed", tt.addr, err)
			}
		} else {
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Errorf("Check(%s) = %v, want refused as %s", tt.addr, err, tt.class)
				continue
			}
			if re.Class != tt.class {
				t.Errorf("Check(%s) class = %q, want %q", tt.addr, re.Class, tt.class)
			}
			want := ip.Unmap().WithZone("").String()
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tt.class) {
				t.Errorf("Check(%s) error %q does not name %s and %s", tt.addr, err, want, tt.class)
			}
		}
		if err := (Policy{AllowPrivate: true}).Check(ip); err != nil {
			t.Errorf("AllowPrivate Check(%s) = %v", tt.addr, err)
		}
	}
	if err := (Policy{AllowPrivate: true}).Check(netip.Addr{}); err == nil {
		t.Error("Check(invalid) = nil")
	}
	if got := (Policy{}).Check(netip.MustParseAddr("0.0.0.0")).Error(); got != "0.0.0.0 is an unspecified address" {
		t.Errorf("message = %q", got)
	}
}

// countingListener accepts TCP connections on 127.0.0.1 and counts them.
func countingListener(t *testing.T) (port string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, accepted
}

func TestDialerRefusesRebindingToLoopback(t *testing.T) {
	dns := newFakeDNS(t)
	dns.set("rebind.test", "127.0.0.1")
	port, accepted := countingListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	d := &Dialer{Resolver: dns.resolver(), Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("rebind.test", port))
	if err == nil {
		conn.Close()
		t.Fatal("dial to a name resolving to 127.0.0.1 succeeded")
	}
	if !strings.Contains(err.Error(), "127.0.0.1 is a loopback address") {
		t.Fatalf("error %q does not say why", err)
	}

	// The same name is reachable when private targets are allowed, which
	// shows the refusal came from the policy and not from the network.
	d.Policy.AllowPrivate = true
	conn, err = d.DialContext(ctx, "tcp", net.JoinHostPort("rebind.test", port))
	if err != nil {
		t.Fatalf("AllowPrivate dial: %v", err)
	}
	conn.Close()
	waitFor(t, "one accepted connection", func() bool { return accepted.Load() == 1 })
}

func TestDialerNeverDialsFilteredAddress(t *testing.T) {
	dns := newFakeDNS(t)
	// A refused address that would connect, and an allowed one that will
	// not (TEST-NET-1 is not routed).
	dns.set("mixed.test", "127.0.0.1", "192.0.2.1")
	port, accepted := countingListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &Dialer{Resolver: dns.resolver(), Timeout: 300 * time.Millisecond}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("mixed.test", port))
	if err == nil {
		conn.Close()
		t.Fatalf("dial succeeded (to %s)", conn.RemoteAddr())
	}
	if strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("error %q mentions the filtered address: it was dialled", err)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the filtered address got %d connections", n)
	}
}

func TestDialerLiteralsAndErrors(t *testing.T) {
	port, accepted := countingListener(t)
	ctx := context.Background()
	d := &Dialer{Timeout: time.Second}
	for _, host := range []string{"127.0.0.1", "::ffff:127.0.0.1", "::1", "0.0.0.0"} {
		if c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port)); err == nil {
			c.Close()
			t.Errorf("dial %s succeeded", host)
		} else if !strings.Contains(err.Error(), "refusing to connect") {
			t.Errorf("dial %s: %v", host, err)
		}
	}
	if accepted.Load() != 0 {
		t.Fatal("a refused literal was dialled")
	}
	if _, err := d.DialContext(ctx, "unix", "/tmp/x"); err == nil {
		t.Error("unix network accepted")
	}
	if _, err := d.DialContext(ctx, "tcp", "no-port"); err == nil {
		t.Error("address without port accepted")
	}

	dns := newFakeDNS(t)
	d.Resolver = dns.resolver()
	_, err := d.DialContext(ctx, "tcp", "nowhere.test:443")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("dial of an unknown name: %v, want not-found DNS error", err)
	}

	ok := &Dialer{Policy: Policy{AllowPrivate: true}, Timeout: time.Second}
	c, err := ok.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		t.Fatalf("AllowPrivate literal dial: %v", err)
	}
	c.Close()
}

func TestCheckURL(t *testing.T) {
	dns := newFakeDNS(t)
	dns.set("rebind.test", "127.0.0.1")
	dns.set("mixed.test", "93.184.216.34", "10.0.0.1")
	dns.set("meta.test", "169.254.169.254")
	dns.set("v6.test", "fd00::1")
	dns.set("public.test", "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
	dns.setSilent("slow.test")
	r := dns.resolver()

	tests := []struct {
		url     string
		private bool
		wantErr string // "" = accepted
	}{
		{"https://public.test/hook", false, ""},
		{"https://public.test:8443/hook?x=1", false, ""},
		{"https://93.184.216.34/hook", false, ""},
		{"https://nowhere.test/hook", false, ""}, // does not resolve (yet)
		{"https://slow.test/hook", false, ""},    // lookup times out
		{"http://public.test/hook", false, "url must use https"},
		{"ftp://public.test/hook", false, "url must use https"},
		{"public.test/hook", false, "url must use https"},
		{"https://user:pass@public.test/hook", false, "user name or password"},
		{"https://user@public.test/hook", false, "user name or password"},
		{"https:///hook", false, "url must have a host"},
		{"https://:443/hook", false, "url must have a host"},
		{"https://127.0.0.1/hook", false, "127.0.0.1 is a loopback address"},
		{"https://[::1]:8443/hook", false, "::1 is a loopback address"},
		{"https://[::ffff:127.0.0.1]/hook", false, "127.0.0.1 is a loopback address"},
		{"https://10.0.0.5/hook", false, "10.0.0.5 is a private address"},
		{"https://169.254.169.254/latest", false, "169.254.169.254 is a link-local address"},
		{"https://100.64.0.1/", false, "100.64.0.1 is a CGNAT address"},
		{"https://0.0.0.0/", false, "0.0.0.0 is an unspecified address"},
		{"https://localhost/hook", false, "loopback"},
		{"https://LocalHost./hook", false, "loopback"},
		{"https://app.localhost/hook", false, "loopback"},
		{"https://rebind.test/hook", false, "url host rebind.test resolves to 127.0.0.1, a loopback address"},
		{"https://mixed.test/hook", false, "resolves to 10.0.0.1, a private address"},
		{"https://meta.test/hook", false, "resolves to 169.254.169.254, a link-local address"},
		{"https://v6.test/hook", false, "resolves to fd00::1, a private address"},
		{"https://bad host/", false, "not a valid URL"},
		{"https://127.0.0.1/hook", true, ""},
		{"https://localhost/hook", true, ""},
		{"https://rebind.test/hook", true, ""},
		{"http://127.0.0.1/hook", true, "url must use https"},
		{"https://u:p@127.0.0.1/hook", true, "user name or password"},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := CheckURL(ctx, tt.url, Policy{AllowPrivate: tt.private}, r)
		cancel()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("CheckURL(%q, private=%v) = %v, want accepted", tt.url, tt.private, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("CheckURL(%q, private=%v) accepted, want %q", tt.url, tt.private, tt.wantErr)
		case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("CheckURL(%q, private=%v) = %q, want it to contain %q", tt.url, tt.private, err, tt.wantErr)
		}
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
