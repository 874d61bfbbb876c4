#!/usr/bin/env bash
# helm, pinned, built from its Go module into .venv/bin (make setup; `make lint` renders the chart
# with it). Skipped when that version is already there. Needs Go (https://go.dev) on PATH.
set -euo pipefail
HELM_VERSION=v4.3.2
BIN=${1:-.venv/bin}
STAMP="$BIN/.helm-$HELM_VERSION"  # go install's binary reports no patch version: the stamp does
[ -x "$BIN/helm" ] && [ -e "$STAMP" ] && exit 0
command -v go >/dev/null || { echo "error: go not found: install Go 1.25+ to build helm $HELM_VERSION" >&2; exit 2; }
echo "building helm $HELM_VERSION into $BIN"
GOBIN="$(cd "$BIN" && pwd)" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
touch "$STAMP"
