#!/usr/bin/env bash
# Runs kubernetes-validate (PyPI; Kubernetes' own OpenAPI schemas, bundled, so it
# validates offline) with the given arguments, installing the pinned version on
# first use into a venv in the git-ignored .tools/ folder, as envoy/envoy.sh does
# for Envoy. `just kubernetes-validate` installs it; tests/tests/k8s.rs runs it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
version="1.37.0"
venv="$root/.tools/kubernetes-validate-$version"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
  mkdir -p "$root/.tools"
  # Tests may start at once: one installs, the others wait.
  exec 9>"$root/.tools/kubernetes-validate-install.lock"
  flock 9
  if ! "$venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
    echo "kubernetes-validate.sh: installing kubernetes-validate==$version from PyPI into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "kubernetes-validate==$version" >&2
  fi
  exec 9>&-
fi
# The venv's console script would carry its absolute path; the module does not.
exec "$venv/bin/python" -m kubernetes_validate "$@"
