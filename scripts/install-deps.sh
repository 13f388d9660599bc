#!/usr/bin/env bash
# Installs the Debian packages cargo-distbuild needs to build, test and benchmark.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libnghttp2-dev libcurl4-openssl-dev libprotobuf-c-dev protobuf-c-compiler
  libzstd-dev libseccomp-dev libcap-dev libssl-dev libevent-dev libcmocka-dev
  protobuf-compiler python3 python3-protobuf python3-grpcio python3-grpc-tools
  python3-zstandard
  clang-format bubblewrap zstd iproute2 curl openssl strace
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
