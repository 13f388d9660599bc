/*
 * The sbx-init program (sbx_pid1.c), built before libsandbox and carried
 * in it as read-only data, so no file has to be found at run time:
 * sbx_init_image_fd() copies it into a memfd that pid 1 execs.
 * SBX_PID1_PATH is set by CMake.
 */
#include "sbx_int.h"

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".globl sbx_pid1_image\n"
        ".globl sbx_pid1_image_end\n"
        "sbx_pid1_image:\n"
        ".incbin \"" SBX_PID1_PATH "\"\n"
        "sbx_pid1_image_end:\n"
        ".previous\n");
