#!/bin/bash
# Sandbox integration tests, one case per ctest entry:
#   escape.sh CASE
# Env: SBX_CLI (cargo-distbuild), SBX_HELPER (sbx_escape).
# Exit: 0 pass, 1 fail, 77 skip (namespaces or a cgroup controller missing).
set -u
CASE=${1:?case}
CLI=${SBX_CLI:?}
HELPER=${SBX_HELPER:?}
HDIR=$(dirname "$HELPER")
T=$(mktemp -d /tmp/sbx-test-XXXXXX)
chmod 755 "$T"
PIDS_TO_KILL=()
cleanup() {
  for p in "${PIDS_TO_KILL[@]}"; do kill -9 "$p" 2>/dev/null; done
  mountpoint -q "$T/ro/sub" 2>/dev/null && umount "$T/ro/sub"
  rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
pass() { echo "PASS: $*"; exit 0; }

# run ARGS... : sandboxed, the helper dir bound read-only; stdout in $O,
# stderr (the CLI's lines and the command's) in $E, status in $RC.
O=$T/run.stdout
E=$T/run.stderr
run() {
  "$CLI" sandbox run --ro-bind "$HDIR" "$@" >"$O" 2>"$E"
  RC=$?
  sed 's/^/  | /' "$O" "$E"
}

probe=$("$CLI" sandbox run -- /bin/true 2>&1 >/dev/null)
if echo "$probe" | grep -q "refusing"; then
  skip "sandbox unavailable on this host: $probe"
fi
need_limit() {
  echo "$probe" | grep -q "limits=.*$1" || skip "no $1 limit on this host"
}

case "$CASE" in
net_host_tcp)
  "$HELPER" listen >"$T/port" &
  PIDS_TO_KILL+=($!)
  for _ in $(seq 50); do [ -s "$T/port" ] && break; sleep 0.05; done
  port=$(cat "$T/port")
  [ -n "$port" ] || fail "no listener"
  "$HELPER" connect "$port" || fail "positive control: host cannot connect"
  run -- "$HELPER" connect "$port"
  [ $RC -eq 1 ] || fail "connected to the host's 127.0.0.1:$port (rc=$RC)"
  grep -q "refused\|unreachable" "$O" || fail "unexpected error"
  # Loopback inside works and is the only interface.
  run -- /bin/sh -c "$HELPER listen > /tmp/p & sleep 0.3; $HELPER connect \$(cat /tmp/p)"
  [ $RC -eq 0 ] || fail "loopback inside the sandbox does not work"
  run -- /bin/sh -c "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
  [ "$(cat "$O")" = "lo" ] || fail "interfaces other than lo"
  pass "host port unreachable, lo only" ;;
ptrace_sibling)
  run -- /bin/sh -c "sleep 30 & s=\$!; $HELPER ptrace \$s; r=\$?; kill \$s; exit \$r"
  [ $RC -eq 1 ] || fail "ptrace of a sibling succeeded (rc=$RC)"
  # Positive control: the same attempt outside the sandbox works.
  sleep 30 & s=$!
  PIDS_TO_KILL+=($s)
  "$HELPER" ptrace $s || fail "positive control: host ptrace failed"
  pass "ptrace refused" ;;
mount_unshare_setns)
  run -- "$HELPER" ns
  [ $RC -eq 1 ] || fail "some namespace/mount call succeeded (rc=$RC)"
  grep -q "clone3 (want ENOSYS) *Function not implemented" "$O" ||
    fail "clone3 did not return ENOSYS"
  grep -q "plain fork (want ok) *ok" "$O" || fail "plain fork broken"
  pass "mount, unshare, setns, clone(NEW*) refused" ;;
readonly_bind | readonly_bind_legacy)
  [ "$CASE" = readonly_bind_legacy ] && export SBX_FORCE_LEGACY_MOUNT=1
  mkdir -p "$T/ro/sub" "$T/out"
  echo original >"$T/ro/file"
  # A submount inside the read-only bind must be read-only too.
  mount -t tmpfs -o mode=0777 tmpfs "$T/ro/sub" || skip "cannot mount a tmpfs"
  echo sub >"$T/ro/sub/file"
  chmod 777 "$T/ro" "$T/ro/sub"
  chmod 666 "$T/ro/file" "$T/ro/sub/file"
  chown 65534:65534 "$T/out"
  run --ro-bind "$T/ro" --bind "$T/out" -- /bin/sh -c "
    for f in $T/ro/file $T/ro/sub/file; do
      echo evil > \$f && echo WROTE \$f
      chmod 777 \$f 2>/dev/null && echo CHMOD \$f
    done
    touch $T/ro/new $T/ro/sub/new 2>/dev/null && echo CREATED
    rm -f $T/ro/file 2>/dev/null && echo REMOVED
    echo ok > $T/out/result"
  grep -q "WROTE\|CHMOD\|CREATED\|REMOVED" "$O" && fail "read-only bind modified"
  [ "$(cat "$T/ro/file")" = original ] || fail "host file changed"
  [ "$(cat "$T/ro/sub/file")" = sub ] || fail "host submount file changed"
  [ "$(cat "$T/out/result")" = ok ] || fail "writable output dir not writable"
  pass "read-only binds (and their submounts) are read-only" ;;
write_outside)
  mkdir -p "$T/out"
  chown 65534:65534 "$T/out"
  # Every directory outside /proc that the action may write to (access(2)
  # first, to keep the walk fast, then a real write to confirm).  The
  # output dir sits outside /tmp, so its parents live on the root tmpfs.
  run --bind "$T/out:/build/out" --cwd /build/out -- /bin/sh -c '
    find / -path /proc -prune -o -type d -writable -print 2>/dev/null |
    while read -r d; do
      ( : > "$d/.sbx_w" ) 2>/dev/null && echo "$d" && rm -f "$d/.sbx_w"
    done
    for d in / /usr /etc /dev /build /proc/sys /proc/sys/kernel; do
      ( : > "$d/.sbx_w" ) 2>/dev/null && echo "$d"
    done'
  bad=$(grep -v -x -e /build/out -e /tmp -e "/tmp/.*" "$O")
  [ -z "$bad" ] || fail "writable outside the output dir and /tmp: $bad"
  grep -q -x /build/out "$O" || fail "output dir not writable"
  grep -q -x /tmp "$O" || fail "/tmp not writable"
  pass "only the output dir and /tmp are writable" ;;
hidden_paths)
  mkdir -p "$T/cas/ab"
  echo blob >"$T/cas/ab/cd"
  run -- /bin/sh -c "ls -d $T/cas /root /home /var /sys /run $T 2>&1; test -e $T/cas/ab/cd && echo VISIBLE"
  grep -q VISIBLE "$O" && fail "unbound host path visible"
  ancestors=()
  for p in "$T/cas" /root /sys /var "$T"; do
    case "$HDIR/" in
    "$p"/*) ancestors+=("$p"); continue ;; # holds the bound helper dir
    esac
    grep -q "cannot access '$p'" "$O" || fail "$p exists inside"
  done
  # An ancestor of a bound path (a checkout under /root) exists inside,
  # but holds nothing except the way down to that path.
  for p in "${ancestors[@]}"; do
    next=${HDIR#"$p"/}
    next=${next%%/*}
    run -- /bin/ls -A "$p"
    [ "$(cat "$O")" = "$next" ] || fail "$p inside holds more than $next"
  done
  pass "unbound host paths do not exist inside" ;;
fork_bomb)
  need_limit pids
  run --pids 64 --timeout 20 -- "$HELPER" forkbomb 1000
  grep -q "forked [0-9]* (Resource temporarily unavailable)" "$O" ||
    fail "fork bomb not stopped by the pids limit"
  n=$(sed -n 's/forked \([0-9]*\).*/\1/p' "$O")
  [ "$n" -lt 64 ] || fail "forked $n >= 64"
  # A shell fork bomb, killed at the timeout; nothing may survive.
  run --pids 64 --timeout 3 -- /bin/sh -c 'b() { b | b & }; b 2>/dev/null; sleep 100'
  [ $RC -ne 0 ] || fail "shell fork bomb exited 0"
  pass "fork bomb stopped at $n forks by pids.max=64" ;;
memory_hog)
  need_limit memory
  run --memory 64M --timeout 60 -- "$HELPER" memhog 1024
  grep -q "allocated" "$O" && fail "1 GiB allocated under a 64 MiB limit"
  grep -q "oom-killed" "$E" || fail "OOM kill not reported"
  [ $RC -eq 137 ] || fail "expected SIGKILL (137), got $RC"
  pass "memory hog OOM-killed and reported" ;;
timeout_daemon)
  marker="sbxd$$"
  start=$(date +%s%N)
  run --timeout 1 -- /bin/sh -c "$HELPER daemonize $marker; sleep 1000 & wait"
  end=$(date +%s%N)
  [ $RC -eq 124 ] || fail "expected timeout exit 124, got $RC"
  grep -q "timed-out" "$E" || fail "timeout not reported"
  [ $(((end - start) / 1000000)) -lt 5000 ] || fail "took too long"
  sleep 0.2
  grep -l -x "$marker" /proc/[0-9]*/comm 2>/dev/null && fail "daemon survived"
  pgrep -f "sleep 1000" >/dev/null && fail "sleep survived"
  # A daemon left behind by an action that exits is killed too.
  run -- "$HELPER" daemonize "$marker"
  sleep 0.2
  grep -l -x "$marker" /proc/[0-9]*/comm 2>/dev/null && fail "daemon outlived its action"
  pass "whole tree killed at the timeout, nothing survives" ;;
setuid)
  mkdir -p "$T/suid"
  cp "$HELPER" "$T/suid/sbx_suid"
  chown root:root "$T/suid/sbx_suid"
  chmod 4755 "$T/suid/sbx_suid"
  chmod 755 "$T/suid"
  run --ro-bind "$T/suid" -- "$T/suid/sbx_suid" ids
  grep -q "euid=1000 egid=1000 CapPrm:	0000000000000000 CapEff:	0000000000000000" "$O" ||
    fail "setuid binary changed ids or capabilities"
  pass "setuid binary gains nothing" ;;
proc_isolation)
  run -- /bin/sh -c 'ls /proc | grep -E "^[0-9]+$" | tr "\n" " "; echo; cat /proc/1/comm
    tr "\0" " " </proc/1/cmdline; echo; grep VmRSS /proc/1/status
    head -c 1 /proc/1/mem >/dev/null 2>&1 && echo "pid 1 memory readable"'
  pids=$(head -1 "$O")
  n=$(echo $pids | wc -w)
  [ "$n" -le 8 ] || fail "too many processes visible: $pids"
  for p in $pids; do [ "$p" -le 10 ] || fail "host pid $p visible"; done
  [ "$(sed -n 2p "$O")" = sbx-init ] || fail "pid 1 is not the sandbox init"
  # pid 1 has exec'd the small init (sbx_pid1.c) instead of staying a
  # copy-on-write copy of the supervisor.
  sed -n 3p "$O" | grep -Eq '^sbx-init [0-9]+ [0-9]+ $' ||
    fail "pid 1 did not exec sbx-init: $(sed -n 3p "$O")"
  rss=$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\) kB/\1/p' "$O")
  [ -n "$rss" ] && [ "$rss" -lt 4096 ] || fail "pid 1 holds ${rss:-?} kB"
  grep -q "pid 1 memory readable" "$O" && fail "the action can read pid 1's memory"
  pass "/proc shows only the sandbox ($pids)" ;;
seccomp_i386)
  "$HELPER" i386 | grep -q "getpid = [1-9]" || skip "no IA32 emulation on this kernel"
  run -- "$HELPER" i386
  grep -q "getpid" "$O" && fail "i386 syscall executed"
  [ $RC -eq 159 ] || fail "expected SIGSYS (159), got $RC"
  pass "int \$0x80 killed by the bad-arch action" ;;
seccomp_x32)
  run -- "$HELPER" x32
  grep -q "ok)" "$O" && fail "x32 syscall executed"
  [ $RC -eq 159 ] || grep -q "Function not implemented" "$O" ||
    fail "x32 syscall neither killed nor refused (rc=$RC)"
  pass "x32 syscall blocked" ;;
exit_and_signal)
  run -- /bin/sh -c 'exit 42'
  [ $RC -eq 42 ] || fail "exit 42 -> $RC"
  run -- /bin/sh -c 'kill -SEGV $$'
  [ $RC -eq 139 ] || fail "SIGSEGV -> $RC"
  grep -q "signal=11" "$E" || fail "signal not reported"
  run -- /nonexistent/prog
  [ $RC -eq 127 ] || fail "missing program -> $RC"
  pass "exit codes and signals propagate" ;;
stdio_exact)
  printf 'out\0line\n\377binary' >"$T/exp_out"
  printf 'err line 1\nerr line 2' >"$T/exp_err"
  head -c 1000000 /dev/urandom >"$T/big"
  chmod 644 "$T/big"
  cmd="printf 'out\\0line\\n\\377binary'; printf 'err line 1\\nerr line 2' >&2"
  "$CLI" sandbox run -q --stdout "$T/o1" --stderr "$T/e1" -- /bin/sh -c "$cmd" 2>"$T/cli_err"
  cmp "$T/o1" "$T/exp_out" || fail "stdout file differs"
  cmp "$T/e1" "$T/exp_err" || fail "stderr file differs"
  "$CLI" sandbox run -q -- /bin/sh -c "$cmd" >"$T/o2" 2>"$T/e2"
  cmp "$T/o2" "$T/exp_out" || fail "stdout fd differs"
  cmp "$T/e2" "$T/exp_err" || fail "stderr fd differs"
  "$CLI" sandbox run -q --ro-bind "$T/big" -- /bin/cat "$T/big" | cmp - "$T/big" ||
    fail "1 MB through a pipe differs"
  pass "stdout and stderr captured exactly" ;;
bind_over_layout)
  # On a merged-/usr host the default layout makes /lib (or /bin, /lib64)
  # the same symlink as the host's; an explicit bind there replaces it.
  L=""
  for d in /lib /lib64 /bin /sbin; do [ -L "$d" ] && [ -d "$d" ] && L=$d && break; done
  [ -n "$L" ] || skip "no symlinked system directory on this host"
  run -- /bin/sh -c "test -L $L"
  [ $RC -eq 0 ] || fail "$L is not a symlink in the default layout (rc=$RC)"
  run --ro-bind "$L" -- /bin/sh -c "test -d $L && ! test -L $L && ls $L >/dev/null"
  [ $RC -eq 0 ] || fail "--ro-bind $L over the layout's symlink (rc=$RC)"
  # A set-up error names the path inside the sandbox, not the staging dir.
  run --ro-bind "$HELPER:/usr/no-such-dir/x" -- /bin/true
  [ $RC -eq 125 ] || fail "bind under read-only /usr -> $RC"
  grep -q "at mount /usr/no-such-dir: " "$E" || fail "error does not name /usr/no-such-dir"
  pass "a bind replaces a layout symlink; errors name sandbox paths" ;;
*)
  fail "unknown case $CASE" ;;
esac
