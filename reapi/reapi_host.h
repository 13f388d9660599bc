/*
 * What a machine is, in the terms REAPI platforms match on: the ISA of
 * its kernel and, for actions built with `-C target-cpu=native`, an
 * identity of its CPU.
 *
 * rustc resolves `native` on the machine that runs it (LLVM reads the CPU
 * name from the family and model and the features from CPUID), so the
 * output of such a compile depends on the CPU. The wrapper puts the client's
 * CPU identity into the action's platform and each worker advertises its
 * own: the action key then differs per CPU, and only a worker with the same
 * CPU runs it. The identity comes from /proc/cpuinfo, which both sides can
 * read without a toolchain: vendor, family and model (x86) or implementer,
 * architecture, variant and part (Arm), plus a hash of the sorted feature
 * flags. Two machines with equal identities resolve `native` alike; a
 * kernel that names a flag differently only makes the identities differ
 * (a miss, never a wrong hit).
 *
 * Errors: 0 or a negative DB_E* code (db_err.h).
 */
#ifndef REAPI_HOST_H
#define REAPI_HOST_H

#include <stddef.h>

/* The platform property names. */
#define REAPI_HOST_ISA_KEY "ISA"
#define REAPI_HOST_CPU_KEY "host-cpu"

/* The REAPI ISA name of this machine's kernel (uname): "x86-64" for
 * x86_64, as Bazel's platforms spell it, else the machine name as uname
 * gives it ("aarch64", "riscv64"). Writes into buf (NUL-terminated).
 * DB_EINVAL if buf is too small, DB_ESYS if uname fails. */
int reapi_host_isa(char *buf, size_t len);

/* The CPU identity read from cpuinfo text (the contents of /proc/cpuinfo;
 * only the first processor's block is read), for example
 * "GenuineIntel-6-85-3f2a9c0d41b7e5a1". Writes into buf.
 * DB_EUNSUPP if the text names neither an x86 nor an Arm CPU, DB_EINVAL
 * if buf is too small, DB_ENOMEM. */
int reapi_host_cpu_parse(const char *cpuinfo, char *buf, size_t len);

/* reapi_host_cpu_parse() of this machine's /proc/cpuinfo. DB_EIO if it
 * cannot be read, else as reapi_host_cpu_parse(). */
int reapi_host_cpu(char *buf, size_t len);

#endif
