#!/bin/sh
# The front (cargo-distbuild-wrapper) runs for every rustc call, local ones
# included, where the issue asks for no measurable overhead: it must not
# load the remote client's libraries. libcrypto alone cost ~1 ms per call.
#   front_libs.sh PATH-TO-cargo-distbuild-wrapper
set -eu
needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] || { echo "no NEEDED entries read from $1" >&2; exit 1; }
bad=$(echo "$needed" | grep -E 'libcrypto|libssl|libcurl|libnghttp2|libprotobuf|libevent|libzstd|libseccomp|libcap' || true)
if [ -n "$bad" ]; then
  echo "the front links libraries it must not load:" $bad >&2
  exit 1
fi
echo "front links only:" $needed
