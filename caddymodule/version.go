package caddymodule

import "runtime/debug"

// modulePath is this project's Go module path.
const modulePath = "github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks"

// version returns the module version built into the binary, or "dev".
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if info.Main.Path == modulePath && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	for _, dep := range info.Deps {
		if dep.Path == modulePath && dep.Version != "" && dep.Version != "(devel)" {
			return dep.Version
		}
	}
	return "dev"
}
