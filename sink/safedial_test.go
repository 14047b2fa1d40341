package sink

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
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
		{"169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"ff0e::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"192.0.0.8", "reserved"},
		{"192.88.99.1", "reserved"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"2001:2::1", "benchmarking"},
		{"192.0.2.7", "documentation"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.7", "documentation"},
		{"2001:db8::1", "documentation"},
		{"3fff::1", "documentation"},
		{"100::1", "reserved"},           // discard-only
		{"2001::1", "reserved"},          // Teredo
		{"2001:20::1", "reserved"},       // ORCHIDv2
		{"5f00::1", "reserved"},          // SRv6 SIDs
		{"::ffff:0:808:808", "reserved"}, // IPv4-translated
		{"::8.8.8.8", "reserved"},        // IPv4-compatible, deprecated
		{"4000::1", "reserved"},          // outside 2000::/3
		{"64:ff9b:1::5db8:d822", "reserved"},
		// Cloud metadata services, also where no other class refuses them.
		{"169.254.169.254", "cloud metadata"},
		{"::ffff:169.254.169.254", "cloud metadata"},
		{"169.254.170.2", "cloud metadata"},
		{"fd00:ec2::254", "cloud metadata"},
		{"100.100.100.200", "cloud metadata"},
		{"168.63.129.16", "cloud metadata"},
		{"192.0.0.192", "cloud metadata"},
		{"64:ff9b::7f00:1", "loopback"},          // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", "cloud metadata"}, // NAT64 of 169.254.169.254
		{"64:ff9b::c633:6407", "documentation"},  // NAT64 of 198.51.100.7
		{"64:ff9b:1::a00:1", "private"},          // local-use NAT64 of 10.0.0.1
		{"2002:a00:1::1", "private"},             // 6to4 of 10.0.0.1
		{"2002:a9fe:a9fe::1", "cloud metadata"},  // 6to4 of 169.254.169.254
		{"::127.0.0.1", "loopback"},              // IPv4-compatible
		{"93.184.216.34", ""},
		{"::ffff:93.184.216.34", ""},
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.32.0.1", ""},
		{"192.0.3.1", ""},
		{"198.20.0.1", ""},
		{"168.63.129.17", ""},
		{"2606:2800:220:1:248:1893:25c8:1946", ""},
		{"2001:4860:4860::8888", ""},
		{"2002:5db8:d822::1", ""},  // 6to4 of 93.184.216.34
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
	// not (TEST-NET-1 is not routed; the allow-list lets it through).
	dns.set("mixed.test", "127.0.0.1", "192.0.2.1")
	port, accepted := countingListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &Dialer{Resolver: dns.resolver(), Timeout: 300 * time.Millisecond,
		Policy: Policy{AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}}
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
		{"https://169.254.169.254/latest", false, "169.254.169.254 is a cloud metadata address"},
		{"https://100.64.0.1/", false, "100.64.0.1 is a CGNAT address"},
		{"https://0.0.0.0/", false, "0.0.0.0 is an unspecified address"},
		{"https://localhost/hook", false, "loopback"},
		{"https://LocalHost./hook", false, "loopback"},
		{"https://app.localhost/hook", false, "loopback"},
		{"https://rebind.test/hook", false, "url host rebind.test resolves to 127.0.0.1, a loopback address"},
		{"https://mixed.test/hook", false, "resolves to 10.0.0.1, a private address"},
		{"https://meta.test/hook", false, "resolves to 169.254.169.254, a cloud metadata address"},
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

func TestParseAllowTargets(t *testing.T) {
	prefixes, hosts, err := ParseAllowTargets([]string{
		"10.20.0.0/16", "10.1.2.3", "fd00::/8", "fe80::1", "::ffff:10.9.0.0/112", "192.168.1.77/24",
		"Hooks.Internal.", "*.corp.example", "receiver_1.lan",
	})
	if err != nil {
		t.Fatal(err)
	}
	wantP := []string{"10.20.0.0/16", "10.1.2.3/32", "fd00::/8", "fe80::1/128", "10.9.0.0/16", "192.168.1.0/24"}
	var gotP []string
	for _, p := range prefixes {
		gotP = append(gotP, p.String())
	}
	if strings.Join(gotP, " ") != strings.Join(wantP, " ") {
		t.Errorf("prefixes %v, want %v", gotP, wantP)
	}
	if strings.Join(hosts, " ") != "hooks.internal *.corp.example receiver_1.lan" {
		t.Errorf("hosts %v", hosts)
	}

	for _, bad := range []string{"", "*", "*.", "10.0.0.0/33", "10.0.0.0/", "fe80::1%eth0", "fe80::1%eth0/64", "https://hooks.internal", "hooks.internal:8443",
		"a..b", "bad host", "ünicode.example", strings.Repeat("a", 64) + ".example", "1.2.3.4.5/8"} {
		_, _, err := ParseAllowTargets([]string{"10.0.0.0/8", bad})
		if err == nil {
			t.Errorf("ParseAllowTargets(%q) accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "allow target "+strconv.Quote(bad)) {
			t.Errorf("ParseAllowTargets(%q) error %q does not name the entry", bad, err)
		}
	}
}

func TestPolicyAllowList(t *testing.T) {
	p := Policy{
		AllowPrefixes: []netip.Prefix{
			netip.MustParsePrefix("10.20.0.0/16"),
			netip.MustParsePrefix("100.64.0.0/10"),    // e.g. a tailnet: wide, but holds Alibaba's metadata address
			netip.MustParsePrefix("169.254.0.0/16"),   // wide: link-local, holds the common metadata address
			netip.MustParsePrefix("168.63.129.16/32"), // a metadata address named exactly
			netip.MustParsePrefix("fd00:1::/32"),
		},
		AllowHosts: []string{"hooks.internal", "*.corp.example"},
	}
	tests := []struct {
		host, addr string
		class      string // "" = allowed
	}{
		{"", "10.20.3.4", ""},
		{"", "::ffff:10.20.3.4", ""},
		{"", "10.21.0.1", "private"},
		{"", "100.100.1.1", ""},
		{"", "100.100.100.200", "cloud metadata"},
		{"", "169.254.10.10", ""},
		{"", "169.254.169.254", "cloud metadata"},
		{"", "168.63.129.16", ""},
		{"", "fd00:1::5", ""},
		{"", "fd00:ec2::254", "cloud metadata"},
		{"", "127.0.0.1", "loopback"},
		{"hooks.internal", "127.0.0.1", ""},
		{"HOOKS.internal.", "192.168.5.5", ""},
		{"hooks.internal", "fd12::1", ""},
		{"hooks.internal", "169.254.169.254", "cloud metadata"},
		{"hooks.internal", "64:ff9b::a9fe:a9fe", "cloud metadata"},
		{"hooks.internal", "fd00:ec2::254", "cloud metadata"},
		{"other.internal", "10.1.1.1", "private"},
		{"x.hooks.internal", "10.1.1.1", "private"},
		{"a.corp.example", "10.1.1.1", ""},
		{"a.b.corp.example", "10.1.1.1", ""},
		{"corp.example", "10.1.1.1", "private"},
		{"xcorp.example", "10.1.1.1", "private"},
		{"10.1.1.1", "10.1.1.1", "private"}, // an IP literal is never a host entry
	}
	for _, tt := range tests {
		err := p.CheckHost(tt.host, netip.MustParseAddr(tt.addr))
		switch {
		case tt.class == "" && err != nil:
			t.Errorf("CheckHost(%q, %s) = %v, want allowed", tt.host, tt.addr, err)
		case tt.class != "":
			var re *RefusedError
			if !errors.As(err, &re) || re.Class != tt.class {
				t.Errorf("CheckHost(%q, %s) = %v, want refused as %s", tt.host, tt.addr, err, tt.class)
			}
		}
	}
}

// TestDialerRebindingPublicThenPrivate models a hostile name server that
// answers a public address while the webhook is registered and a private
// one when the delivery connects: registration passes, the connection is
// refused before any packet reaches the private address, and a real HTTPS
// receiver listening there never sees a request.
func TestDialerRebindingPublicThenPrivate(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	dns := newFakeDNS(t)
	dns.setStages("rebind.test", []string{"93.184.216.34"}, []string{"127.0.0.1"})
	dns.setStages("rebind6.test", []string{"2606:2800:220:1:248:1893:25c8:1946"}, []string{"::1", "::ffff:127.0.0.1"})
	r := dns.resolver()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	for _, host := range []string{"rebind.test", "rebind6.test"} {
		hookURL := "https://" + net.JoinHostPort(host, port) + "/hook"
		if err := CheckURL(ctx, hookURL, Policy{}, r); err != nil {
			t.Fatalf("CheckURL(%s) with the public answer: %v", host, err)
		}
		c := NewClient(ClientOptions{Resolver: r, RootCAs: certPool(srv)})
		resp, err := c.Post(hookURL, "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("POST %s after rebinding reached %s", hookURL, srv.Listener.Addr())
		}
		if !strings.Contains(err.Error(), "refusing to connect to "+host) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("POST %s: %v, want a loopback refusal", hookURL, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the private receiver got %d requests", n)
	}
}

// TestClientAllowTargets reaches a real HTTPS receiver on loopback through
// the allow-list only: by host name (example.com, which the receiver's
// certificate names, resolved by the fake DNS to 127.0.0.1) and by prefix.
// A listed name that resolves to a metadata address stays refused.
func TestClientAllowTargets(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	dns := newFakeDNS(t)
	dns.set("example.com", "127.0.0.1")
	dns.set("meta.example.com", "169.254.169.254")
	byName := "https://" + net.JoinHostPort("example.com", port) + "/hook"
	byIP := "https://" + net.JoinHostPort("127.0.0.1", port) + "/hook"
	meta := "https://" + net.JoinHostPort("meta.example.com", port) + "/hook"

	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		name    string
		policy  Policy
		url     string
		wantErr string // "" = delivered
	}{
		{"default refuses the name", Policy{}, byName, "127.0.0.1 is a loopback address"},
		{"default refuses the literal", Policy{}, byIP, "127.0.0.1 is a loopback address"},
		{"host entry", Policy{AllowHosts: []string{"example.com"}}, byName, ""},
		{"wildcard does not match its base", Policy{AllowHosts: []string{"*.example.com"}}, byName, "loopback"},
		{"host entry does not cover the literal", Policy{AllowHosts: []string{"example.com"}}, byIP, "loopback"},
		{"prefix covers the name's address", Policy{AllowPrefixes: loopback}, byName, ""},
		{"prefix covers the literal", Policy{AllowPrefixes: loopback}, byIP, ""},
		{"listed name to metadata", Policy{AllowHosts: []string{"*.example.com"}}, meta, "169.254.169.254 is a cloud metadata address"},
	}
	want := int32(0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			checkErr := CheckURL(ctx, tt.url, tt.policy, dns.resolver())
			c := NewClient(ClientOptions{Policy: tt.policy, Resolver: dns.resolver(), RootCAs: certPool(srv)})
			resp, err := c.Post(tt.url, "application/json", strings.NewReader("{}"))
			if err == nil {
				resp.Body.Close()
			}
			if tt.wantErr == "" {
				want++
				if checkErr != nil || err != nil {
					t.Fatalf("CheckURL: %v; POST: %v; want both allowed", checkErr, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("POST: %v, want %q", err, tt.wantErr)
			}
			if checkErr == nil {
				t.Errorf("CheckURL accepted %s", tt.url)
			}
		})
	}
	if n := hits.Load(); n != want {
		t.Errorf("receiver got %d requests, want %d", n, want)
	}
}
