package sink

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzPolicy checks the SSRF policy on arbitrary addresses and allow-lists:
// an IPv4 address gets the same verdict bare, IPv4-mapped, and (when
// refused) embedded in NAT64 and 6to4 addresses; nothing the zero policy
// refuses is allowed by an allow-list that does not cover it; parsing
// allow-lists and checking URLs never panics, and a URL CheckURL accepts
// is https with a host and no user information.
func FuzzPolicy(f *testing.F) {
	for _, s := range [][3]string{
		{"127.0.0.1", "10.0.0.0/8", "https://127.0.0.1/h"},
		{"169.254.169.254", "169.254.0.0/16 hooks.internal", "https://[::ffff:169.254.169.254]/latest"},
		{"100.100.100.200", "100.64.0.0/10", "https://100.100.100.200/"},
		{"93.184.216.34", "", "https://example.com:8443/hook?x=1"},
		{"64:ff9b::a9fe:a9fe", "*.corp.example fd00::1", "https://[64:ff9b::a9fe:a9fe]/"},
		{"2002:a00:1::1", "2002::/16", "https://[2002:a00:1::1]:443/"},
		{"fd00:ec2::254", "fd00:ec2::254", "https://user:pw@h/"},
		{"::", "0.0.0.0/0", "http://h/"},
	} {
		f.Add([]byte(netip.MustParseAddr(s[0]).AsSlice()), s[1], s[2])
	}
	noDNS := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test")
	}}
	f.Fuzz(func(t *testing.T, raw []byte, allow, rawURL string) {
		ip, ok := netip.AddrFromSlice(raw)
		if !ok {
			return
		}
		var zero Policy
		verdict := zero.Check(ip)
		if ip.Is4() {
			if got := zero.Check(netip.AddrFrom16(ip.As16())); (got == nil) != (verdict == nil) {
				t.Fatalf("%s: bare %v, mapped %v", ip, verdict, got)
			}
			if verdict != nil {
				b := ip.As4()
				nat := netip.AddrFrom16([16]byte{0, 0x64, 0xff, 0x9b, 10: 0, 11: 0, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
				six := netip.AddrFrom16([16]byte{0x20, 0x02, b[0], b[1], b[2], b[3], 15: 1})
				for _, e := range []netip.Addr{nat, six} {
					if zero.Check(e) == nil {
						t.Fatalf("%s is refused (%v) but %s, which embeds it, is allowed", ip, verdict, e)
					}
				}
			}
		}

		prefixes, hosts, err := ParseAllowTargets(strings.Fields(allow))
		if err != nil {
			return
		}
		p := Policy{AllowPrefixes: prefixes, AllowHosts: hosts}
		if verdict != nil && p.Check(ip) == nil {
			covered := false
			for _, pfx := range prefixes {
				covered = covered || pfx.Contains(ip.Unmap())
			}
			if !covered {
				t.Fatalf("%s (%v) allowed by %q, which does not cover it", ip, verdict, allow)
			}
		}
		var re *RefusedError
		if errors.As(verdict, &re) && re.Class == ClassMetadata {
			if err := p.CheckHost("hooks.internal", ip); err == nil {
				exact := false
				for _, pfx := range prefixes {
					exact = exact || pfx.IsSingleIP() && pfx.Addr() == ip.Unmap()
				}
				if !exact {
					t.Fatalf("metadata address %s allowed for a host entry by %q", ip, allow)
				}
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := CheckURL(ctx, rawURL, p, noDNS); err == nil {
			u, perr := url.Parse(strings.TrimSpace(rawURL))
			if perr != nil || !strings.EqualFold(u.Scheme, "https") || u.User != nil || u.Hostname() == "" {
				t.Fatalf("CheckURL accepted %q", rawURL)
			}
			if host, err := netip.ParseAddr(u.Hostname()); err == nil && p.Check(host) != nil {
				t.Fatalf("CheckURL accepted %q, whose address the policy refuses", rawURL)
			}
		}
	})
}
