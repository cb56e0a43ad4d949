/* System call names, from libseccomp's table for this architecture. */
#include <seccomp.h>

#include "isolate.h"

bool iso_syscall_known(const char *name)
{
    return name && *name && seccomp_syscall_resolve_name(name) >= 0;
}
