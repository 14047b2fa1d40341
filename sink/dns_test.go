package sink

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeDNS is a tiny authoritative DNS server over UDP on 127.0.0.1. Names
// in answers resolve to the given addresses, names in silent are never
// answered, all others get NXDOMAIN.
type fakeDNS struct {
	conn    net.PacketConn
	mu      sync.Mutex
	answers map[string][]netip.Addr // lower-case FQDN
	silent  map[string]bool
	queries int
	// stages, when set for a name, replace answers: the n-th query of a
	// type for that name is answered from stages[min(n, len-1)].
	stages map[string][][]netip.Addr
	asked  map[string]int // name + "/" + type → queries so far
}

func newFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	f := &fakeDNS{conn: pc, answers: map[string][]netip.Addr{}, silent: map[string]bool{},
		stages: map[string][][]netip.Addr{}, asked: map[string]int{}}
	t.Cleanup(func() { pc.Close() })
	go f.serve()
	return f
}

func fqdn(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

func (f *fakeDNS) set(name string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ips []netip.Addr
	for _, a := range addrs {
		ips = append(ips, netip.MustParseAddr(a))
	}
	f.answers[fqdn(name)] = ips
}

// setStages makes name answer differently over time: its first A (and
// first AAAA) query gets the addresses of stages[0], the second those of
// stages[1], and so on, the last stage repeating. It models a hostile name
// server that answers a public address to the check and a private one to
// the connection (DNS rebinding).
func (f *fakeDNS) setStages(name string, stages ...[]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var all [][]netip.Addr
	for _, st := range stages {
		var ips []netip.Addr
		for _, a := range st {
			ips = append(ips, netip.MustParseAddr(a))
		}
		all = append(all, ips)
	}
	f.stages[fqdn(name)] = all
}

func (f *fakeDNS) setSilent(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.silent[fqdn(name)] = true
}

// resolver returns a pure-Go resolver that sends every query to f.
func (f *fakeDNS) resolver() *net.Resolver {
	addr := f.conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

func (f *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := f.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := f.answer(buf[:n]); resp != nil {
			f.conn.WriteTo(resp, from)
		}
	}
}

func (f *fakeDNS) answer(req []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())
	f.mu.Lock()
	f.queries++
	addrs, known := f.answers[name]
	silent := f.silent[name]
	if st := f.stages[name]; len(st) > 0 {
		k := name + "/" + q.Type.String()
		n := f.asked[k]
		f.asked[k] = n + 1
		addrs, known = st[min(n, len(st)-1)], true
	}
	f.mu.Unlock()
	if silent {
		return nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	for _, a := range addrs {
		rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
		switch {
		case a.Is4() && q.Type == dnsmessage.TypeA:
			_ = b.AResource(rr, dnsmessage.AResource{A: a.As4()})
		case a.Is6() && q.Type == dnsmessage.TypeAAAA:
			_ = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}
