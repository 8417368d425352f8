#!/usr/bin/env bash
# The one command that checks everything, on a machine that has never seen
# the project: system packages, npm packages, generated code freshness, API
# lint and compatibility, types, and every test (unit and integration against
# real PostgreSQL and etcd processes the test setup starts itself).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "system packages"
bash scripts/install-system-deps.sh

step "npm packages"
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.deltamesh-lock 2>/dev/null)" != "$lock_hash" ]; then
  npm ci --no-audit --no-fund
  echo "$lock_hash" > node_modules/.deltamesh-lock
else
  echo "node_modules matches package-lock.json"
fi

step "buf lint"
npx buf lint

step "generated code is fresh (buf generate leaves no diff)"
npx buf generate
if ! git diff --exit-code --stat -- gen || [ -n "$(git status --porcelain -- gen)" ]; then
  echo "gen/ is stale: run 'npx buf generate' and commit the result" >&2
  git status --porcelain -- gen >&2
  exit 1
fi

step "buf breaking (against ${BUF_BREAKING_AGAINST:=.git#ref=HEAD~1})"
if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:proto 2>/dev/null; then
  npx buf breaking --against "$BUF_BREAKING_AGAINST"
else
  echo "no previous commit with proto/ to compare against: skipped"
fi

step "typecheck"
npx tsc -p tsconfig.json --noEmit

step "tests"
npx vitest run "$@"
