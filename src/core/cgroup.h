#ifndef ISO_CGROUP_H
#define ISO_CGROUP_H
/* placeholder: being written */
#endif
