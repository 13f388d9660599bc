#!/usr/bin/env bash
# Builds a local Debian base image from Debian's own packages, for machines
# that can reach a Debian mirror but no container registry:
#
#   container/build-base.sh            # -> cargo-distbuild/debian:bookworm-slim
#   docker build --build-arg BASE_IMAGE=cargo-distbuild/debian:bookworm-slim \
#                -f container/Dockerfile -t cargo-distbuild .
#
# debootstrap --variant=minbase bookworm into a temporary directory, trimmed
# like the official slim image (no docs, man pages or locales), then
# `docker import`.  Idempotent: does nothing when the image already exists
# (pass --force to rebuild).  Installs debootstrap with apt-get if missing.
# The mirror is the first Debian mirror in the host's apt sources (both the
# one-line sources.list and the deb822 *.sources formats), overridable with
# DEBIAN_MIRROR=URL.  Runs as root or with sudo.
set -euo pipefail

IMAGE="${BASE_IMAGE_NAME:-cargo-distbuild/debian:bookworm-slim}"
SUITE="${DEBIAN_SUITE:-bookworm}"
FORCE=0
for a in "$@"; do
  case "$a" in
  --force) FORCE=1 ;;
  --image=*) IMAGE="${a#--image=}" ;;
  -h | --help)
    sed -n '2,15p' "$0"
    exit 0
    ;;
  *)
    echo "build-base: unknown argument $a" >&2
    exit 2
    ;;
  esac
done

log() { echo "build-base: $*" >&2; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! docker info >/dev/null 2>&1; then
  log "no usable Docker engine (docker info failed)"
  exit 3
fi

if [ "$FORCE" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already exists (use --force to rebuild)"
  exit 0
fi

# First Debian (not -security, not third-party) mirror configured for apt.
find_mirror() {
  local f
  {
    [ -f /etc/apt/sources.list ] && grep -hE '^\s*deb\s' /etc/apt/sources.list |
      sed -E 's/\[[^]]*\]//' | awk '{print $2}'
    for f in /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] && grep -hE '^\s*deb\s' "$f" | sed -E 's/\[[^]]*\]//' | awk '{print $2}'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && grep -hiE '^\s*URIs:' "$f" | sed -E 's/^\s*URIs:\s*//I' | tr ' ' '\n'
    done
  } | grep -E '^https?://' | grep -E '/debian/?$' | grep -v -- '-security' | head -n1
}

MIRROR="${DEBIAN_MIRROR:-$(find_mirror || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
MIRROR="${MIRROR%/}"
log "mirror $MIRROR, suite $SUITE"

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
KEYOPT=()
if [ -f "$KEYRING" ]; then
  KEYOPT=(--keyring="$KEYRING")
else
  log "WARNING: $KEYRING missing; Release signatures are not checked"
  KEYOPT=(--no-check-gpg)
fi

ROOT="$(mktemp -d /tmp/cargo-distbuild-base.XXXXXX)"
cleanup() { $SUDO rm -rf --one-file-system "$ROOT"; }
trap cleanup EXIT

log "debootstrap --variant=minbase $SUITE into $ROOT"
if ! $SUDO debootstrap --variant=minbase "${KEYOPT[@]}" "$SUITE" "$ROOT" \
  "$MIRROR" >"$ROOT.log" 2>&1; then
  tail -n 30 "$ROOT.log" >&2
  rm -f "$ROOT.log"
  log "debootstrap failed"
  exit 1
fi
rm -f "$ROOT.log"

# Same apt sources as the host's Debian mirror, inside the image.
$SUDO tee "$ROOT/etc/apt/sources.list" >/dev/null <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
EOF
# Slim it the way debian:*-slim does: keep no docs, man pages or locales
# for packages installed later either.
$SUDO tee "$ROOT/etc/dpkg/dpkg.cfg.d/docker-slim" >/dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
$SUDO tee "$ROOT/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' | $SUDO tee "$ROOT/etc/apt/apt.conf.d/docker-no-languages" >/dev/null
$SUDO find "$ROOT/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
$SUDO find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
$SUDO rm -rf "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/* \
  "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
  "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/*.log "$ROOT"/tmp/* 2>/dev/null || true
# Fresh machine-id per container, as in the official images.
: | $SUDO tee "$ROOT/etc/machine-id" >/dev/null
$SUDO rm -f "$ROOT/etc/hostname" "$ROOT/etc/resolv.conf"

log "importing as $IMAGE"
$SUDO tar --numeric-owner -C "$ROOT" -c . |
  docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
docker image ls "$IMAGE" >&2
