# dnslb: `just demo` runs the system locally, `just test` runs every check.
# Every recipe installs what it needs (wasm target via rust-toolchain.toml,
# Envoy via envoy/envoy.sh) and runs from the repo root.

set shell := ["bash", "-euo", "pipefail", "-c"]

wasm_target := "wasm32-wasip1"
wasm := "target/" + wasm_target + "/release-wasm/dnslb_filter.wasm"
shim := "target/release/xds-shim"

# List the recipes.
default:
    @just --list

# Build the filter (.wasm) and xds-shim (release); prints where they land.
build: build-filter build-shim
    @ls -l {{wasm}} {{shim}}

# Build the proxy-wasm filter for wasm32-wasip1 (release, LTO, size-optimized).
build-filter:
    cargo build -p dnslb-filter --target {{wasm_target}} --profile release-wasm

# Build the xds-shim control plane binary (release).
build-shim:
    cargo build --release -p xds-shim

# Install Envoy (pinned in .envoy-version) if needed and print its path.
envoy:
    @envoy/envoy.sh --print-path
    @envoy/envoy.sh --version

# Check formatting and run clippy (-D warnings) for native and wasm32 targets.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p dnslb-filter --target {{wasm_target}} -- -D warnings

# Unit tests: pure logic of the filter, the shim, and the harness.
unit:
    cargo test --workspace --exclude dnslb-tests
    cargo test -p dnslb-tests --lib --bins

# End-to-end tests: real Envoy, real xds-shim, loopback DNS server, fake backends.
e2e: build envoy
    cargo test -p dnslb-tests --test '*' -- --test-threads 2

# Everything CI runs: lint, unit tests, end-to-end tests.
test: lint unit e2e

# Run the demo locally (no Docker): DNS server, 3 fake backends, xds-shim, Envoy.
demo: build envoy
    cargo build -p dnslb-tests --bins
    envoy/demo.sh
