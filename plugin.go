// Package echo3dwebhooks registers the caddy-echo3d-webhooks Caddy modules.
// Import it (or build with `xcaddy build --with <module path>=./`) to get the
// echo3d_webhooks app, HTTP handler and admin API.
package echo3dwebhooks

import (
	// Registers the modules, the directive and the global option.
	_ "github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks/caddymodule"
)
