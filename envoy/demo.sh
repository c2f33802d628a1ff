#!/usr/bin/env bash
# Local demo without Docker (`just demo` builds first): a DNS server serving
# envoy/demo.zone, three fake backends, xds-shim and Envoy. Ctrl-C stops all.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

dns_addr=127.0.0.53:15353
logs="$(mktemp -d -t dnslb-demo.XXXXXX)"
pids=()

cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping demo (logs kept in $logs)"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

start() { # name, command...
  local name="$1"
  shift
  "$@" >"$logs/$name.log" 2>&1 &
  pids+=("$!")
}

wait_for() { # description, command...
  local what="$1"
  shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "demo: $what did not come up; see $logs" >&2
  exit 1
}

start dns target/debug/dnslb-dns-server --listen "$dns_addr" --zone envoy/demo.zone
for ip in 127.0.0.2 127.0.0.3 127.0.0.4; do
  start "backend-$ip" target/debug/fake-backend --listen "$ip:8080"
done
start xds-shim target/release/xds-shim --nameserver "$dns_addr" \
  --upstream dns+backend.test:8080 --upstream dns+api.test:8080 --upstream dns+static.test:8080 \
  --upstream srv+_http._tcp.backend.test
wait_for "xds-shim" curl -sf http://127.0.0.1:18001/healthz
# The recommended bootstrap, as the shim prints it: Envoy routes, balances and retries
# natively; the filter (configuration in envoy/demo-filter.json, cookie affinity) runs
# only where it adds something. DNSLB_FILTER_CONFIG='{}' runs plain round robin.
# DNSLB_BUILD=module (`just demo-module`) loads the native dynamic module instead of the
# .wasm; absolute-form requests need the wasm network filter, so only the wasm demo has them.
case "${DNSLB_BUILD:-wasm}" in
  wasm) filter=(--wasm "$root/target/wasm32-wasip1/release-wasm/dnslb_filter.wasm" --absolute-form) ;;
  module) filter=(--module "$root/target/release/libdnslb_module.so") ;;
  *) echo "demo: DNSLB_BUILD must be wasm or module, not ${DNSLB_BUILD}" >&2; exit 2 ;;
esac
proxy_hint=""
if [[ "${DNSLB_BUILD:-wasm}" == wasm ]]; then
  proxy_hint="  Envoy as your HTTP proxy (absolute-form, as HTTP_PROXY clients send it;
  curl's own URL parser refuses a '+' in a host, hence --request-target):
    curl -s --request-target http://dns+api.test:8080/hello -H 'Host: dns+api.test:8080' http://127.0.0.1:10000; echo

"
fi
target/release/xds-shim envoy-bootstrap --listen 127.0.0.1:10000 --admin 127.0.0.1:9901 \
  --xds 127.0.0.1:18000 "${filter[@]}" \
  --filter-config "${DNSLB_FILTER_CONFIG:-$(cat envoy/demo-filter.json)}" \
  >"$logs/envoy.yaml"
start envoy envoy/envoy.sh -c "$logs/envoy.yaml" --concurrency 1 --disable-hot-restart --drain-time-s 1
wait_for "Envoy" curl -sf http://127.0.0.1:9901/ready
wait_for "the dns+backend.test:8080 cluster" \
  bash -c 'curl -sf http://127.0.0.1:9901/clusters | grep -q "^dns+backend.test:8080::127.0.0.4:8080::"'

cat <<MSG

dnslb demo is running with the ${DNSLB_BUILD:-wasm} filter (logs: $logs)

  Round robin over the three A records of backend.test:
    for i in 1 2 3 4 5 6; do curl -s -H 'Host: dns+backend.test:8080' http://127.0.0.1:10000/; echo; done

  The same replicas through their SRV record (each target's own port):
    for i in 1 2 3; do curl -s -H 'Host: srv+_http._tcp.backend.test' http://127.0.0.1:10000/; echo; done

  Sticky sessions: the first answer sets the cookie "dnslb", later requests
  that send it stay on that backend (a backend that stops is failed over):
    for i in 1 2 3; do curl -s -b /tmp/dnslb.jar -c /tmp/dnslb.jar -H 'Host: dns+backend.test:8080' http://127.0.0.1:10000/; echo; done

${proxy_hint}  A malformed upstream is refused with 400:
    curl -s -H 'Host: dns+backend.test:0' http://127.0.0.1:10000/

  What Envoy has:   curl -s http://127.0.0.1:9901/clusters | grep '^dns+'
  What xds-shim has: http://127.0.0.1:18001/status (and /status.json, /metrics)

  Edit envoy/demo.zone while it runs (say, delete 'backend IN A 127.0.0.4'):
  the DNS server reloads it within a second and the change reaches Envoy
  within one shim interval (5 s). 'git checkout envoy/demo.zone' undoes it.

  The same demo in containers:
    docker compose -f envoy/compose/docker-compose.yml up --build

Press Ctrl-C to stop everything.
MSG
wait
