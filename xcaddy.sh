#!/usr/bin/env bash
# Build, run and test caddy-echo3d-webhooks. Needs only Go (1.26+); installs
# xcaddy and staticcheck through the Go module proxy when missing.
#
#   ./xcaddy.sh build   Caddy with the plugin at ./bin/caddy (xcaddy)
#   ./xcaddy.sh demo    build, then run the local demo: the plugin in front of a
#                       fake echo3D API, printing every webhook delivery
#                       (extra arguments go to the demo, e.g. -once)
#   ./xcaddy.sh run     build, then run Caddyfile.example
#   ./xcaddy.sh test    gofmt, go vet, staticcheck, then every test with -race
#   ./xcaddy.sh smoke   build, then check the modules are in the binary and
#                       that Caddyfile.example adapts and validates
#   ./xcaddy.sh bench   build, then compare the plugin with plain reverse_proxy
#                       (extra arguments go to `go run ./bench`)
#   ./xcaddy.sh floor   the same bench against the floor probe: a copy of this
#                       tree with bench/floor.patch applied (events signed and
#                       sent, nothing stored), built as ./bin/caddy-floor
set -euo pipefail
cd "$(dirname "$0")"

CADDY_VERSION="${CADDY_VERSION:-v2.11.9}"
XCADDY_VERSION="v0.4.5"
STATICCHECK_VERSION="v0.8.2"
MODULE="github.com/caddy-echo3d-webhooks/caddy-echo3d-webhooks"
GOBIN_DIR="$(go env GOPATH)/bin"
export PATH="$GOBIN_DIR:$PATH"

need_xcaddy() {
	if ! command -v xcaddy >/dev/null 2>&1; then
		echo "installing xcaddy $XCADDY_VERSION" >&2
		go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
	fi
}

build() {
	need_xcaddy
	mkdir -p bin
	# The version pins the replacement: the module is not published, so
	# xcaddy must not ask the module proxy for it.
	xcaddy build "$CADDY_VERSION" --with "$MODULE@v0.0.0=./" --output ./bin/caddy
}

smoke() {
	build
	./bin/caddy version
	mods="$(./bin/caddy list-modules)"
	for id in echo3d_webhooks http.handlers.echo3d_webhooks admin.api.echo3d_webhooks; do
		grep -qx "$id" <<<"$mods" || { echo "module $id missing from ./bin/caddy" >&2; exit 1; }
	done
	./bin/caddy adapt --config Caddyfile.example --adapter caddyfile >/dev/null
	./bin/caddy validate --config Caddyfile.example --adapter caddyfile
}

run_tests() {
	unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
	if [ -n "$unformatted" ]; then
		echo "gofmt would change: $unformatted" >&2
		exit 1
	fi
	go vet ./...
	if ! command -v staticcheck >/dev/null 2>&1; then
		echo "installing staticcheck $STATICCHECK_VERSION" >&2
		go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	fi
	staticcheck ./...
	go test -race -count=1 -timeout 20m ./...
}

case "${1:-}" in
build) build ;;
run)
	build
	exec ./bin/caddy run --config Caddyfile.example --adapter caddyfile
	;;
demo)
	build
	shift
	go build -o ./bin/echo3d-demo ./cmd/echo3d-demo
	exec ./bin/echo3d-demo -caddy ./bin/caddy "$@"
	;;
test) run_tests ;;
smoke) smoke ;;
bench)
	build
	shift
	go run ./bench -caddy ./bin/caddy "$@"
	;;
floor)
	shift
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	git ls-files -z | xargs -0 cp --parents -t "$tmp"
	mkdir -p bin
	(cd "$tmp" && git apply bench/floor.patch && go build -o "$OLDPWD/bin/caddy-floor" ./cmd/caddy)
	go run ./bench -caddy ./bin/caddy-floor -floor "$@"
	;;
*)
	sed -n '/^set -euo pipefail/q; 2,$p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
