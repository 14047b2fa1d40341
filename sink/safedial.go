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
// The zero value refuses every address that is not globally reachable
// unicast: loopback, private (RFC 1918 and IPv6 ULA), link-local, CGNAT,
// multicast, unspecified, broadcast, documentation, benchmarking and
// reserved addresses, IPv6 addresses outside 2000::/3, the addresses of
// cloud metadata services, and IPv4 addresses embedded in IPv4-mapped,
// NAT64, 6to4 and IPv4-compatible IPv6 addresses. AllowPrefixes and
// AllowHosts make narrow exceptions for operators who must reach internal
// receivers; AllowPrivate lifts every restriction.
type Policy struct {
	// AllowPrivate allows every address (tests and local demos only).
	AllowPrivate bool

	// AllowPrefixes lists address ranges that are allowed whatever their
	// class. A cloud metadata address is allowed only by a prefix that is
	// that single address (169.254.169.254/32), so that opening a wide
	// range such as 100.64.0.0/10 never opens a metadata service with it.
	AllowPrefixes []netip.Prefix

	// AllowHosts lists host names, lower case without a trailing dot, that
	// may resolve to addresses of any class but cloud metadata. An entry
	// "*.example.internal" matches every name below example.internal (not
	// example.internal itself). The name is the one in the webhook URL;
	// addresses are still resolved, filtered and pinned by the Dialer.
	AllowHosts []string
}

// Classes of refused addresses, as RefusedError.Class reports them.
const (
	ClassLoopback      = "loopback"
	ClassPrivate       = "private"
	ClassLinkLocal     = "link-local"
	ClassCGNAT         = "CGNAT"
	ClassMulticast     = "multicast"
	ClassUnspecified   = "unspecified"
	ClassBroadcast     = "broadcast"
	ClassDocumentation = "documentation"
	ClassBenchmarking  = "benchmarking"
	ClassReserved      = "reserved"
	ClassMetadata      = "cloud metadata"
)

// RefusedError is returned by Policy.Check for an address the policy
// refuses.
type RefusedError struct {
	Addr  netip.Addr // the address checked
	Class string     // one of the Class constants
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
	case ClassUnspecified:
		return "an"
	}
	return "a"
}

// Special-purpose ranges (IANA IPv4 and IPv6 Special-Purpose Address
// Registries) that the standard library has no predicate for.
var (
	cgnat        = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork  = netip.MustParsePrefix("0.0.0.0/8")
	classE       = netip.MustParsePrefix("240.0.0.0/4")
	ietfProto    = netip.MustParsePrefix("192.0.0.0/24")
	sixToFourAny = netip.MustParsePrefix("192.88.99.0/24") // deprecated 6to4 relay anycast
	benchmark4   = netip.MustParsePrefix("198.18.0.0/15")
	testNets4    = []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
		netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
		netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	}
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	ietfProto6     = netip.MustParsePrefix("2001::/23") // Teredo, ORCHID, benchmarking, ...
	benchmark6     = netip.MustParsePrefix("2001:2::/48")
	docs6          = []netip.Prefix{
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("3fff::/20"),
	}
	siteLocal6 = netip.MustParsePrefix("fec0::/10")
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
	ipv4Compat = netip.MustParsePrefix("::/96")
	broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

	errNoAddress = errors.New("invalid IP address")
)

// metadataAddrs are the instance metadata and host services of cloud
// providers, reachable from their virtual machines and containers. Most
// lie in ranges refused anyway; listing them keeps them refused for names
// in AllowHosts and for wide AllowPrefixes, and names them in errors.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"): true, // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, Hetzner
	netip.MustParseAddr("169.254.170.2"):   true, // AWS ECS task metadata
	netip.MustParseAddr("169.254.170.23"):  true, // AWS EKS Pod Identity
	netip.MustParseAddr("169.254.0.23"):    true, // Tencent Cloud
	netip.MustParseAddr("fd00:ec2::254"):   true, // AWS IMDS over IPv6
	netip.MustParseAddr("fd00:ec2::23"):    true, // AWS EKS Pod Identity over IPv6
	netip.MustParseAddr("100.100.100.200"): true, // Alibaba Cloud
	netip.MustParseAddr("168.63.129.16"):   true, // Azure WireServer (a public address)
	netip.MustParseAddr("192.0.0.192"):     true, // Oracle Cloud (legacy)
}

// Check returns nil when the policy allows connecting to ip, and a
// *RefusedError naming the address and its class otherwise. IPv4-mapped
// IPv6 addresses are checked as the IPv4 address they carry.
func (p Policy) Check(ip netip.Addr) error {
	return p.check(ip, false)
}

// CheckHost is Check for an address that the host name host resolved to:
// when host is in AllowHosts, every class but cloud metadata is allowed.
// host may be an IP literal, which no AllowHosts entry matches.
func (p Policy) CheckHost(host string, ip netip.Addr) error {
	return p.check(ip, p.HostAllowed(host))
}

// HostAllowed reports whether host (a name from a URL, in any case, with
// or without a trailing dot) matches an AllowHosts entry.
func (p Policy) HostAllowed(host string) bool {
	if len(p.AllowHosts) == 0 {
		return false
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "" {
		return false
	}
	for _, h := range p.AllowHosts {
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			if len(name) > len(suffix) && strings.HasSuffix(name, suffix) {
				return true
			}
			continue
		}
		if name == h {
			return true
		}
	}
	return false
}

func (p Policy) check(ip netip.Addr, trustedName bool) error {
	if !ip.IsValid() {
		return errNoAddress
	}
	if p.AllowPrivate {
		return nil
	}
	ip = ip.Unmap().WithZone("")
	err := refusal(ip)
	if err == nil {
		return nil
	}
	for _, pfx := range p.AllowPrefixes {
		if !pfx.Contains(ip) {
			continue
		}
		if err.Class != ClassMetadata || pfx.IsSingleIP() {
			return nil
		}
	}
	if trustedName && err.Class != ClassMetadata {
		return nil
	}
	return err
}

// refusal returns why ip (unmapped, without zone) is refused, or nil.
func refusal(ip netip.Addr) *RefusedError {
	if metadataAddrs[ip] {
		return &RefusedError{Addr: ip, Class: ClassMetadata}
	}
	class := classify(ip)
	if class != "" && class != ClassReserved {
		return &RefusedError{Addr: ip, Class: class}
	}
	if v4, via := embeddedIPv4(ip); v4.IsValid() {
		if inner := refusal(v4); inner != nil {
			return &RefusedError{Addr: ip, Class: inner.Class, Embedded: v4, Via: via}
		}
		if nat64.Contains(ip) {
			// The well-known NAT64 prefix reaches the public IPv4
			// address it carries.
			return nil
		}
	}
	if class != "" {
		return &RefusedError{Addr: ip, Class: class}
	}
	return nil
}

// classify returns the refused class of ip, or "" when it is allowed.
func classify(ip netip.Addr) string {
	switch {
	case ip.IsUnspecified(), ip.Is4() && thisNetwork.Contains(ip):
		return ClassUnspecified
	case ip.IsLoopback():
		return ClassLoopback
	case ip == broadcast4:
		return ClassBroadcast
	case ip.IsMulticast():
		return ClassMulticast
	case ip.IsLinkLocalUnicast():
		return ClassLinkLocal
	case cgnat.Contains(ip):
		return ClassCGNAT
	case ip.IsPrivate(), siteLocal6.Contains(ip):
		return ClassPrivate
	case benchmark4.Contains(ip), benchmark6.Contains(ip):
		return ClassBenchmarking
	case containsAny(testNets4, ip), containsAny(docs6, ip):
		return ClassDocumentation
	case classE.Contains(ip), ietfProto.Contains(ip), sixToFourAny.Contains(ip),
		ip.Is6() && (!globalUnicast6.Contains(ip) || ietfProto6.Contains(ip)):
		return ClassReserved
	}
	return ""
}

func containsAny(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// embeddedIPv4 returns the IPv4 address carried by a NAT64, 6to4 or
// IPv4-compatible IPv6 address.
func embeddedIPv4(ip netip.Addr) (netip.Addr, string) {
	if !ip.Is6() {
		return netip.Addr{}, ""
	}
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

// ParseAllowTargets parses allow-list entries for Policy: an IP address
// ("10.1.2.3", "fd00::7"), a CIDR prefix ("10.20.0.0/16") or a host name
// ("hooks.internal", "*.corp.example"; lower-cased, trailing dot removed).
// The error names the entry at fault.
func ParseAllowTargets(entries []string) (prefixes []netip.Prefix, hosts []string, err error) {
	for _, e := range entries {
		s := strings.TrimSpace(e)
		if pfx, err := netip.ParsePrefix(s); err == nil {
			if pfx.Addr().Zone() != "" {
				return nil, nil, fmt.Errorf("allow target %q: a prefix cannot have a zone", e)
			}
			prefixes = append(prefixes, netip.PrefixFrom(pfx.Addr().Unmap(), unmappedBits(pfx)).Masked())
			continue
		}
		if ip, err := netip.ParseAddr(s); err == nil {
			if ip.Zone() != "" {
				return nil, nil, fmt.Errorf("allow target %q: an address cannot have a zone", e)
			}
			ip = ip.Unmap()
			prefixes = append(prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		if strings.ContainsAny(s, "/:") {
			return nil, nil, fmt.Errorf("allow target %q: not a valid IP address or CIDR prefix", e)
		}
		name, err := allowHostName(s)
		if err != nil {
			return nil, nil, fmt.Errorf("allow target %q: %v", e, err)
		}
		hosts = append(hosts, name)
	}
	return prefixes, hosts, nil
}

// unmappedBits returns the prefix length of pfx once its address is
// unmapped (::ffff:10.0.0.0/104 becomes 10.0.0.0/8).
func unmappedBits(pfx netip.Prefix) int {
	if pfx.Addr().Is4In6() {
		return max(pfx.Bits()-96, 0)
	}
	return pfx.Bits()
}

// allowHostName validates and normalizes a host name entry, optionally
// starting with "*." to match subdomains.
func allowHostName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	rest := name
	if r, ok := strings.CutPrefix(name, "*."); ok {
		rest = r
	}
	if rest == "" {
		return "", errors.New("must be an IP address, a CIDR prefix or a host name")
	}
	if len(rest) > 253 {
		return "", errors.New("host name longer than 253 characters")
	}
	for _, label := range strings.Split(rest, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("must be an IP address, a CIDR prefix or a host name (empty or over-long label)")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("must be an IP address, a CIDR prefix or a host name (%q is not allowed in a host name)", string(c))
			}
		}
	}
	return name, nil
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
		if err := d.Policy.CheckHost(host, ip); err != nil {
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
// resolve to, an address the policy refuses (AllowPrefixes and AllowHosts
// apply as they do when dialling). A host that does not resolve (yet) is
// accepted: DialContext checks again on every connection, so a name that
// later resolves elsewhere (DNS rebinding) gains nothing. r nil means
// net.DefaultResolver. Errors are meant to be shown to users.
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
	if (name == "localhost" || strings.HasSuffix(name, ".localhost")) && !p.HostAllowed(name) {
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
		if err := p.CheckHost(host, ip); err != nil {
			var re *RefusedError
			if errors.As(err, &re) {
				return fmt.Errorf("url host %s resolves to %s", host, re.Describe())
			}
			return fmt.Errorf("url host %s resolves to %s: %v", host, ip, err)
		}
	}
	return nil
}
