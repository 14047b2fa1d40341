package sink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Policy decides which IP addresses webhook deliveries may connect to.
// The zero value refuses loopback, private (RFC 1918 and IPv6 ULA),
// link-local, CGNAT, multicast, unspecified, broadcast and reserved
// addresses, including IPv4 addresses embedded in IPv4-mapped, NAT64 and
// 6to4 IPv6 addresses.
type Policy struct {
	// AllowPrivate allows every address (tests and local demos only).
	AllowPrivate bool
}

// RefusedError is returned by Policy.Check for an address the policy
// refuses.
type RefusedError struct {
	Addr  netip.Addr // the address checked
	Class string     // "loopback", "private", "link-local", "CGNAT", "multicast", "unspecified", "broadcast" or "reserved"
	// Embedded is the refused IPv4 address carried by Addr when Addr is a
	// NAT64, 6to4 or IPv4-compatible IPv6 address; invalid otherwise.
	Embedded netip.Addr
	// Via names the embedding ("NAT64", "6to4", "IPv4-compatible").
	Via string
}

// Describe returns "127.0.0.1, a loopback address" (the form used after
// "resolves to").
func (e *RefusedError) Describe() string {
	s := e.Addr.String() + ", " + article(e.Class) + " " + e.Class + " address"
	if e.Embedded.IsValid() {
		s += " (" + e.Embedded.String() + " embedded in a " + e.Via + " address)"
	}
	return s
}

func (e *RefusedError) Error() string {
	s := e.Addr.String() + " is " + article(e.Class) + " " + e.Class + " address"
	if e.Embedded.IsValid() {
		s += " (" + e.Embedded.String() + " embedded in a " + e.Via + " address)"
	}
	return s
}

func article(class string) string {
	switch class {
	case "unspecified":
		return "an"
	}
	return "a"
}

var (
	cgnat        = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork  = netip.MustParsePrefix("0.0.0.0/8")
	classE       = netip.MustParsePrefix("240.0.0.0/4")
	ietfProto    = netip.MustParsePrefix("192.0.0.0/24")
	siteLocal6   = netip.MustParsePrefix("fec0::/10")
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local   = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour    = netip.MustParsePrefix("2002::/16")
	ipv4Compat   = netip.MustParsePrefix("::/96")
	broadcast4   = netip.AddrFrom4([4]byte{255, 255, 255, 255})
	errNoAddress = errors.New("invalid IP address")
)

// Check returns nil when the policy allows connecting to ip, and a
// *RefusedError naming the address and its class otherwise. IPv4-mapped
// IPv6 addresses are checked as the IPv4 address they carry.
func (p Policy) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return errNoAddress
	}
	if p.AllowPrivate {
		return nil
	}
	ip = ip.Unmap().WithZone("")
	if class := classify(ip); class != "" {
		return &RefusedError{Addr: ip, Class: class}
	}
	if ip.Is6() {
		if v4, via := embeddedIPv4(ip); v4.IsValid() {
			if class := classify(v4); class != "" {
				return &RefusedError{Addr: ip, Class: class, Embedded: v4, Via: via}
			}
		}
	}
	return nil
}

// classify returns the refused class of ip, or "" when it is allowed.
func classify(ip netip.Addr) string {
	switch {
	case ip.IsUnspecified(), ip.Is4() && thisNetwork.Contains(ip):
		return "unspecified"
	case ip.IsLoopback():
		return "loopback"
	case ip == broadcast4:
		return "broadcast"
	case ip.IsMulticast():
		return "multicast"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case cgnat.Contains(ip):
		return "CGNAT"
	case ip.IsPrivate(), siteLocal6.Contains(ip):
		return "private"
	case classE.Contains(ip), ietfProto.Contains(ip):
		return "reserved"
	}
	return ""
}

// embeddedIPv4 returns the IPv4 address carried by a NAT64, 6to4 or
// IPv4-compatible IPv6 address.
func embeddedIPv4(ip netip.Addr) (netip.Addr, string) {
	b := ip.As16()
	switch {
	case nat64.Contains(ip), nat64Local.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), "NAT64"
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4"
	case ipv4Compat.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), "IPv4-compatible"
	}
	return netip.Addr{}, ""
}

// Dialer connects only to addresses its Policy allows. Host names are
// resolved by the Dialer itself and only the addresses that pass the policy
// are dialled, so a name cannot be re-resolved to a refused address between
// the check and the connection (DNS rebinding).
type Dialer struct {
	Policy   Policy
	Resolver *net.Resolver // nil = net.DefaultResolver
	Timeout  time.Duration // per address; 0 = bounded by ctx only
}

func (d *Dialer) resolver() *net.Resolver {
	if d.Resolver != nil {
		return d.Resolver
	}
	return net.DefaultResolver
}

// DialContext resolves addr's host, drops every address the policy
// refuses, and dials the others in order until one connects. It fails,
// saying why, when no address is allowed.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	var ipNet string
	switch network {
	case "tcp", "udp":
		ipNet = "ip"
	case "tcp4", "udp4":
		ipNet = "ip4"
	case "tcp6", "udp6":
		ipNet = "ip6"
	default:
		return nil, fmt.Errorf("dial %s: unsupported network %q", addr, network)
	}

	var ips []netip.Addr
	if ip, perr := netip.ParseAddr(host); perr == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = d.resolver().LookupNetIP(ctx, ipNet, host)
		if err != nil {
			return nil, err
		}
	}

	allowed := make([]netip.Addr, 0, len(ips))
	var refused []string
	for _, ip := range ips {
		if err := d.Policy.Check(ip); err != nil {
			refused = append(refused, err.Error())
			continue
		}
		allowed = append(allowed, ip)
	}
	if len(allowed) == 0 {
		if len(refused) == 0 {
			return nil, fmt.Errorf("dial %s: host has no addresses", addr)
		}
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("refusing to connect to %s: %s", host, strings.Join(refused, "; "))}
	}

	nd := net.Dialer{Timeout: d.Timeout}
	var firstErr error
	for _, ip := range allowed {
		conn, err := nd.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// checkURLTimeout bounds the DNS lookup made by CheckURL.
const checkURLTimeout = 5 * time.Second

// CheckURL validates a webhook URL for registration: it must use https,
// name a host and carry no user information, and its host must not be, or
// resolve to, an address the policy refuses. A host that does not resolve
// (yet) is accepted: DialContext checks again on every connection. r nil
// means net.DefaultResolver. Errors are meant to be shown to users.
func CheckURL(ctx context.Context, raw string, p Policy, r *net.Resolver) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return errors.New("url is not a valid URL")
	}
	if !strings.EqualFold(u.Scheme, "https") {
		return errors.New("url must use https")
	}
	if u.User != nil {
		return errors.New("url must not contain a user name or password")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("url must have a host")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := p.Check(ip); err != nil {
			return fmt.Errorf("url host %s", err)
		}
		return nil
	}
	if p.AllowPrivate {
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return fmt.Errorf("url host %s is a loopback name", host)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, checkURLTimeout)
	defer cancel()
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		// Not found, timed out or no resolver: the name may resolve later;
		// every connection is checked again by Dialer.
		return nil
	}
	for _, ip := range ips {
		if err := p.Check(ip); err != nil {
			var re *RefusedError
			if errors.As(err, &re) {
				return fmt.Errorf("url host %s resolves to %s", host, re.Describe())
			}
			return fmt.Errorf("url host %s resolves to %s: %v", host, ip, err)
		}
	}
	return nil
}
