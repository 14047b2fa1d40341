package sink

import (
	"errors"
	"net/url"
	"strings"
)

// maxTargetURLs bounds how many parsed webhook URLs targetURLs keeps; past
// it the cache starts over (URLs of deleted or edited webhooks leave).
const maxTargetURLs = 4096

// targetURLs parses webhook URLs once for all their attempts. The URLs it
// returns are shared: callers must not modify them.
type targetURLs struct {
	urls boundedCache[*url.URL] // by raw URL
}

// parse returns the parsed raw URL, or an error if it is not a valid https
// URL (the admin API refuses others, but a stored webhook is checked
// again).
func (t *targetURLs) parse(raw string) (*url.URL, error) {
	if u, ok := t.urls.load(raw); ok {
		return u, nil
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
	return t.urls.store(raw, u, maxTargetURLs), nil
}
