#!/bin/sh
# Entrypoint of the cargo-distbuild image: `docker run IMAGE <args>` runs
# `cargo-distbuild <args>`.
#
# As the image's default user (distbuild, uid 10001) it simply execs
# cargo-distbuild.  Started as root (`--user 0`) it prepares what only root
# can, then drops to distbuild with no capabilities left:
#   worker: makes this container's own cgroups writable (a bind remount, which
#   needs CAP_SYS_ADMIN: `--cap-add SYS_ADMIN`) and hands them to distbuild,
#   so the sandbox can put memory/pids/cpu limits on each action; and removes
#   Docker's over-mounts of /proc (/proc/kcore, /proc/keys, read-only
#   /proc/sys, ...), without which the kernel refuses the sandbox a fresh
#   /proc ("mount too revealing") -- the same as `--security-opt
#   systempaths=unconfined`, which docker-compose v1 cannot pass.  Without
#   CAP_SYS_ADMIN it says so and the worker runs without cgroup limits.
# CARGO_DISTBUILD_KEEP_ROOT=1 keeps root (the sandbox then maps actions to
# uid 65534; not needed on any host we tested).
set -eu

RUN_AS=distbuild
BIN=/usr/local/bin/cargo-distbuild

say() { echo "entrypoint: $*" >&2; }

# Make one cgroup directory (the container's own cgroup, which Docker
# mounts read-only) writable and owned by $RUN_AS.
delegate() {
  dir=$1
  [ -d "$dir" ] || return 0
  if ! touch "$dir/cgroup.procs" 2>/dev/null; then
    mount -o remount,bind,rw "$dir" 2>/dev/null || {
      say "cannot make $dir writable (needs --cap-add SYS_ADMIN): no cgroup limits"
      return 0
    }
  fi
  chown "$RUN_AS:$RUN_AS" "$dir"
  for f in cgroup.procs tasks cgroup.subtree_control cgroup.threads; do
    [ -e "$dir/$f" ] && chown "$RUN_AS:$RUN_AS" "$dir/$f"
  done
  return 0
}

# Unmount everything mounted below /proc, deepest first.
unmask_proc() {
  awk '$5 ~ "^/proc/" {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
        { say "cannot unmount $m (needs --cap-add SYS_ADMIN)"; break; }
    done
}

if [ "$(id -u)" = 0 ] && [ "${CARGO_DISTBUILD_KEEP_ROOT:-0}" != 1 ]; then
  if [ "${1:-}" = worker ]; then
    unmask_proc
    if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
      # Unified hierarchy (private cgroupns): the sandbox itself moves the
      # worker into a leaf and enables controllers (no internal processes).
      delegate /sys/fs/cgroup
    else
      for c in memory pids cpu cpuacct cpu,cpuacct; do
        [ -L "/sys/fs/cgroup/$c" ] || delegate "/sys/fs/cgroup/$c"
      done
    fi
  fi
  exec setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups \
    --inh-caps=-all --bounding-set=-all -- "$BIN" "$@"
fi
exec "$BIN" "$@"
