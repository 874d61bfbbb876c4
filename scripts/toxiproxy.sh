#!/usr/bin/env bash
# Toxiproxy (the fault-injecting TCP proxy of the chaos tests, tests/chaos/), built from its pinned Go
# module into the venv's bin as toxiproxy-server; skipped when that binary already reports this version.
set -euo pipefail
VERSION=2.12.0
BIN="${1:?usage: toxiproxy.sh VENV_BIN_DIR}"
TARGET="$BIN/toxiproxy-server"
if [ -x "$TARGET" ] && [ "$("$TARGET" -version 2>/dev/null)" = "toxiproxy-server version $VERSION" ]; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "error: go not found: the chaos tests build Toxiproxy $VERSION from its Go module (install Go 1.23+)" >&2
  exit 2
fi
echo "building toxiproxy-server $VERSION (go install)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" go install -ldflags "-X github.com/Shopify/toxiproxy/v2.Version=$VERSION" \
  "github.com/Shopify/toxiproxy/v2/cmd/server@v$VERSION"
mv "$tmp/server" "$TARGET"
