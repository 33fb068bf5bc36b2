#!/usr/bin/env bash
# Layer rules with import-linter (contracts in pyproject.toml, docs/architecture.md).
# import-linter walks the root package's folder, and deltamtl's subpackages live in
# sibling folders (contract/, model/, ...): check the package as it installs instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$root/.venv}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# copy the sources first: setuptools would leave build/ and *.egg-info in the tree
mkdir -p "$tmp/src"
(cd "$root" && tar -c --exclude=./.venv --exclude=./.git --exclude=./runs --exclude=./build \
  --exclude='*.egg-info' --exclude=__pycache__ .) | tar -x -C "$tmp/src"
"$venv/bin/pip" install -q --no-deps --no-build-isolation --target "$tmp/site" "$tmp/src" >/dev/null 2>&1 \
  || { echo "lint_layers: could not install $root into $tmp (pip install --target)"; exit 2; }
cd "$tmp" && PYTHONPATH="$tmp/site" "$venv/bin/lint-imports" --no-cache "$root/pyproject.toml"
