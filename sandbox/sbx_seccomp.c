/*
 * Step 7: seccomp, via libseccomp.  Default allow plus a deny-list (an
 * allow-list is too brittle for rustc + cc + linkers; nsjail and firejail
 * ship deny-lists too).  Denied calls fail with EPERM, except clone3,
 * which fails with ENOSYS so that libc falls back to clone(), whose flags
 * can be inspected (Chromium, Docker).  Only the native architecture is in
 * the filter and a foreign one kills the process, so i386 (int $0x80) and
 * x32 (__X32_SYSCALL_BIT) numbers cannot bypass it.
 *
 * The filter is compiled to BPF once per process (sbx_seccomp_build, from
 * the probe) and loaded by the action right before execve with the raw
 * seccomp(2) call: no allocation in the child.
 */
#include "sbx_int.h"

#include "db_err.h"

#include <errno.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SECCOMP_FILTER_FLAG_SPEC_ALLOW
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW (1UL << 2)
#endif

/* Native syscall numbers from the kernel headers; a call this libc's
 * headers do not know cannot be made through its wrappers either, and the
 * raw number would be refused by older kernels. */
static const int denied[] = {
    /* debugging other processes */
    __NR_ptrace,
    __NR_process_vm_readv,
    __NR_process_vm_writev,
    __NR_kcmp,
#ifdef __NR_pidfd_getfd
    __NR_pidfd_getfd,
#endif
    /* mounts and roots, including the new mount API */
    __NR_mount,
    __NR_umount2,
    __NR_pivot_root,
    __NR_chroot,
#ifdef __NR_fsopen
    __NR_fsopen,
    __NR_fsconfig,
    __NR_fsmount,
    __NR_fspick,
    __NR_move_mount,
    __NR_open_tree,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
    /* namespaces */
    __NR_unshare,
    __NR_setns,
    /* keyrings are not namespaced */
    __NR_keyctl,
    __NR_add_key,
    __NR_request_key,
    /* kernel attack surface */
    __NR_bpf,
    __NR_perf_event_open,
    __NR_userfaultfd,
#ifdef __NR_io_uring_setup
    __NR_io_uring_setup,
    __NR_io_uring_enter,
    __NR_io_uring_register,
#endif
    __NR_kexec_load,
#ifdef __NR_kexec_file_load
    __NR_kexec_file_load,
#endif
    __NR_init_module,
    __NR_finit_module,
    __NR_delete_module,
    __NR_open_by_handle_at,
    __NR_name_to_handle_at,
    /* host administration */
    __NR_acct,
    __NR_swapon,
    __NR_swapoff,
    __NR_reboot,
    __NR_syslog,
    __NR_fanotify_init,
    __NR_quotactl,
#ifdef __NR_lookup_dcookie
    __NR_lookup_dcookie,
#endif
#ifdef __NR_iopl
    __NR_iopl,
    __NR_ioperm,
#endif
#ifdef __NR_nfsservctl
    __NR_nfsservctl,
#endif
    __NR_vhangup,
    __NR_settimeofday,
    __NR_clock_settime,
    __NR_clock_adjtime,
    __NR_adjtimex,
};

static const unsigned long clone_new_flags[] = {
    CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET,
};

int sbx_seccomp_build(struct sock_fprog *out, char *err, size_t errlen) {
  scmp_filter_ctx ctx;
  size_t i;
  int rc = 0, fd = -1;
  off_t size;
  void *buf = NULL;

  memset(out, 0, sizeof(*out));
  ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) {
    sbx_util_msg(err, errlen, "seccomp_init failed");
    return DB_ENOMEM;
  }
  rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0)
    goto fail;
  /* The filter checks no_new_privs itself; we set it in step 5. */
  rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  for (i = 0; rc == 0 && i < sizeof(denied) / sizeof(denied[0]); i++)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), denied[i], 0);
  if (rc < 0)
    goto fail;
  /* clone(): any CLONE_NEW* flag (one rule per bit: libseccomp has no
   * "masked != 0").  unshare/setns are denied outright above. */
  for (i = 0; rc == 0 && i < sizeof(clone_new_flags) / sizeof(long); i++)
    rc = seccomp_rule_add(
        ctx, SCMP_ACT_ERRNO(EPERM), __NR_clone, 1,
        SCMP_A0(SCMP_CMP_MASKED_EQ, clone_new_flags[i], clone_new_flags[i]));
  if (rc == 0)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), __NR_clone3, 0);
  /* Terminal injection into a shared tty (setsid in the action covers the
   * controlling terminal; this covers inherited tty fds). */
  if (rc == 0)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), __NR_ioctl, 1,
                          SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
  if (rc == 0)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), __NR_ioctl, 1,
                          SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX));
  if (rc < 0)
    goto fail;
  /* Export the BPF program once; the child loads it with seccomp(2). */
  fd = memfd_create("sbx-seccomp", MFD_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
    goto fail;
  }
  rc = seccomp_export_bpf(ctx, fd);
  if (rc < 0)
    goto fail;
  size = lseek(fd, 0, SEEK_END);
  if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0) {
    rc = -EINVAL;
    goto fail;
  }
  buf = malloc((size_t)size);
  if (!buf || pread(fd, buf, (size_t)size, 0) != size) {
    rc = buf ? -EIO : -ENOMEM;
    goto fail;
  }
  out->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
  out->filter = buf; /* owned by the probe for the life of the process */
  buf = NULL;
  rc = 0;
fail:
  if (rc < 0)
    sbx_util_msg(err, errlen, "seccomp filter: %s", strerror(-rc));
  free(buf);
  if (fd >= 0)
    close(fd);
  seccomp_release(ctx);
  return rc < 0 ? DB_ESYS : 0;
}

int sbx_seccomp_apply(const struct sock_fprog *prog, struct sbx_msg *m) {
  /* SPEC_ALLOW: do not force speculative-store-bypass mitigation on the
   * compiler (a large slowdown on some CPUs); this filter is not about
   * side channels. */
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
              SECCOMP_FILTER_FLAG_SPEC_ALLOW, prog) == 0)
    return 0;
  if (errno == EINVAL &&
      syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) == 0)
    return 0;
  return sbx_util_fail(m, SBX_STEP_SECCOMP, errno, "seccomp");
}
