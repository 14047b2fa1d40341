package caddymodule

import (
	_ "github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/tidwall/gjson"
)
