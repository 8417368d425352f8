#!/usr/bin/env bash
# Starts a local deltamesh cluster on loopback (PostgreSQL, etcd, three nodes),
# prints the addresses, and stops everything cleanly on Ctrl-C.
# Options: --nodes N, --data-dir DIR (default .deltamesh-cluster), --lease-ttl SECONDS,
# --database-url URL (use that database instead of starting PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec npx tsx deploy/local/cluster.ts "$@"
