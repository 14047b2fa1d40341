// Command caddy is Caddy with the standard modules and caddy-echo3d-webhooks,
// built with plain `go build` (tests use it; `./xcaddy.sh build` is the
// supported way to build a release binary).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks"
)

func main() {
	caddycmd.Main()
}
