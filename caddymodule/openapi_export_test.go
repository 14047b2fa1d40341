package caddymodule

// AdminRoutes returns the method and path template of every route the
// admin API serves, for the test that holds docs/openapi.json to them.
func AdminRoutes() [][2]string {
	out := make([][2]string, 0, len(adminRoutes))
	for _, rt := range adminRoutes {
		out = append(out, [2]string{rt.Method, rt.Pattern})
	}
	return out
}
