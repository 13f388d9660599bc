/*
 * Step 4: the UTS namespace.  A fixed hostname, so builds cannot depend on
 * the worker's name and the host's name does not leak into outputs.
 */
#include "sbx_int.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int sbx_uts_set_hostname(struct sbx_msg *m) {
  if (sethostname(SBX_HOSTNAME, strlen(SBX_HOSTNAME)) < 0)
    return sbx_util_fail(m, SBX_STEP_UTS, errno, "sethostname");
  if (setdomainname("localdomain", strlen("localdomain")) < 0)
    return sbx_util_fail(m, SBX_STEP_UTS, errno, "setdomainname");
  return 0;
}
