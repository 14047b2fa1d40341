package sink

import (
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// maxTargetURLs bounds how many parsed webhook URLs targetURLs keeps; past
// it the cache starts over (URLs of deleted or edited webhooks leave).
const maxTargetURLs = 4096

// targetURLs parses webhook URLs once for all their attempts. The URLs it
// returns are shared: callers must not modify them.
type targetURLs struct {
	m sync.Map // raw URL → *url.URL
	n atomic.Int64
}

// parse returns the parsed raw URL, or an error if it is not a valid https
// URL (the admin API refuses others, but a stored webhook is checked
// again).
func (t *targetURLs) parse(raw string) (*url.URL, error) {
	if u, ok := t.m.Load(raw); ok {
		return u.(*url.URL), nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("webhook url is not a valid URL")
	}
	if u.Scheme != "https" {
		return nil, errors.New("webhook url must use https")
	}
	// An empty port ("host:") means the default one, as http.NewRequest
	// reads it.
	if strings.LastIndex(u.Host, ":") > strings.LastIndex(u.Host, "]") {
		u.Host = strings.TrimSuffix(u.Host, ":")
	}
	if t.n.Add(1) > maxTargetURLs {
		t.m.Clear()
		t.n.Store(1)
	}
	t.m.Store(raw, u)
	return u, nil
}
