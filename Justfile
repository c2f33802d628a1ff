# dnslb: `just demo` runs the system locally, `just test` runs every check.
# Every recipe installs what it needs (the rustup targets and components named in
# rust-toolchain.toml via `toolchain`, Envoy via envoy/envoy.sh) and runs from the
# repo root.

set shell := ["bash", "-euo", "pipefail", "-c"]

wasm_target := "wasm32-wasip1"
wasm := "target/" + wasm_target + "/release-wasm/dnslb_filter.wasm"
shim := "target/release/xds-shim"
module := "target/release/libdnslb_module.so"

# List the recipes.
default:
    @just --list

# Build the filter (.wasm and the dynamic module .so) and xds-shim (release); prints where
# they land.
build: build-filter build-module build-shim
    @ls -l {{wasm}} {{module}} {{shim}}

# Check the prerequisites (rustup, a C linker, Python 3 with pip) and add the targets and
# components rust-toolchain.toml names when missing: rustup adds them only when it installs
# the toolchain itself, not to a `stable` that is already there. Quiet when all is present.
toolchain:
    @.ci/toolchain.sh

# Build the proxy-wasm filter for wasm32-wasip1 (release, LTO, size-optimized).
build-filter: toolchain
    cargo build -p dnslb-filter --target {{wasm_target}} --profile release-wasm

# Build the filter as an Envoy dynamic module (native .so for Envoy 1.40's ABI, release).
build-module: toolchain
    cargo build --release -p dnslb-module

# Build the xds-shim control plane binary (release).
build-shim: toolchain
    cargo build --release -p xds-shim

# Install Envoy (pinned in .envoy-version) if needed and print its path.
envoy:
    @envoy/envoy.sh --print-path
    @envoy/envoy.sh --version

# Check formatting and run clippy (-D warnings) for native and wasm32 targets.
lint: toolchain
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p dnslb-filter -p dnslb-wire --target {{wasm_target}} -- -D warnings

# Unit tests: pure logic of the filter, the shim, and the harness.
unit: toolchain
    cargo test --workspace --exclude dnslb-tests
    cargo test -p dnslb-tests --lib --bins

# The runner (wasm-bindgen-cli matching Cargo.lock) is installed into .tools/.
# Run the filter core's unit tests compiled to wasm32 under Node (wasm-bindgen-test).
test-wasm: toolchain
    #!/usr/bin/env bash
    set -euo pipefail
    version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
    root=".tools/wasm-bindgen-$version"
    if [[ ! -x "$root/bin/wasm-bindgen-test-runner" ]]; then
        echo "installing wasm-bindgen-cli $version into $root"
        cargo install --quiet wasm-bindgen-cli --version "=$version" --root "$root"
    fi
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$PWD/$root/bin/wasm-bindgen-test-runner" \
        cargo test -p dnslb-filter -p dnslb-wire --lib --target wasm32-unknown-unknown

# Installs cargo-fuzz and a nightly toolchain if missing.
# Fuzz the filter's authority parser, cookie codec and absolute-form rewriter, and the
# shim's --config file, upstream specs and DNS answer folding, `seconds` each.
fuzz seconds="60":
    #!/usr/bin/env bash
    set -euo pipefail
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
    command -v cargo-fuzz >/dev/null || cargo install --quiet cargo-fuzz --locked
    for target in authority cookie absolute_form; do
        (cd filter && cargo +nightly fuzz run "$target" -- -max_total_time={{seconds}})
    done
    for target in config_file upstream_spec dns_fold; do
        (cd xds-shim && cargo +nightly fuzz run "$target" -- -max_total_time={{seconds}})
    done

# End-to-end tests: real Envoy, real xds-shim, loopback DNS server, fake backends.
e2e: build envoy chromium prometheus kubernetes-validate
    cargo test -p dnslb-tests --test '*' -- --test-threads 2

# Install headless Chromium (Debian's `chromium`) for the /status page test, if missing.
chromium:
    @command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# Install kubernetes-validate (PyPI, pinned in the script) into .tools/ if missing, for
# the Kubernetes manifest tests, and print its version.
kubernetes-validate:
    @envoy/k8s/kubernetes-validate.sh --version

# Install Debian's `prometheus` (the server and `promtool`) for the tests that check the
# shim's /metrics with `promtool check metrics` and scrape its /http_sd, if missing.
prometheus:
    @command -v promtool >/dev/null || (apt-get update && apt-get install -y --no-install-recommends prometheus)

# Everything CI runs: lint, unit tests (native and wasm32), end-to-end tests.
test: lint unit test-wasm e2e

# xds-shim at scale (10,000 upstreams x 20 addresses, 1 and 201 Delta clients): CPU,
# memory, resolution-to-update latency; writes its section of docs/benchmarks.md.
# Reported, never asserted.
bench-shim: build-shim
    cargo build --release -p dnslb-bench --bin bench-shim
    target/release/bench-shim --out docs/benchmarks.md

# Installs wrk, nghttp2-client and valgrind with apt-get when missing; the whole run
# stays under 12 minutes (the harness gets what the builds left of 720 s). Numbers
# are reported, never asserted.
# Benchmark dnslb against Envoy's native load balancing; writes docs/benchmarks.md.
bench: envoy
    #!/usr/bin/env bash
    set -euo pipefail
    start=$(date +%s.%N)
    if ! command -v wrk >/dev/null || ! command -v h2load >/dev/null || ! command -v valgrind >/dev/null; then
        sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
        $sudo apt-get update
        $sudo apt-get install -y wrk nghttp2-client valgrind
    fi
    build_start=$(date +%s.%N)
    {{just_executable()}} build
    build=$(awk -v a="$build_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    cargo build --release -p dnslb-tests -p dnslb-bench --bins
    budget=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%d", 720 - (b - a) }')
    target/release/bench --out docs/benchmarks.md --build-seconds "$build" --budget "$budget"

# Chaos soak through a real Envoy and xds-shim under steady wrk load (bounded: `seconds`,
# at most 300): DNS changes members every second, a member is killed and restarted, DNS
# answers SERVFAIL for a while, the shim restarts. Writes docs/soak.md; any failed GET
# fails the run. Installs wrk with apt-get when missing.
soak seconds="120": build envoy
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v wrk >/dev/null; then
        sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
        $sudo apt-get update
        $sudo apt-get install -y wrk
    fi
    cargo build --release -p dnslb-tests -p dnslb-bench --bins
    target/release/soak --seconds {{seconds}} --out docs/soak.md

# With DNSLB_BUILD=module (`just demo-module`) the filter is the dynamic module, not the .wasm.
# Run the demo locally (no Docker): DNS server, 3 fake backends, xds-shim, Envoy.
demo: build envoy
    cargo build -p dnslb-tests --bins
    envoy/demo.sh

# The demo with the filter's native dynamic module (.so) instead of the .wasm.
demo-module:
    DNSLB_BUILD=module {{just_executable()}} demo
