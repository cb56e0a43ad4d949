/* The worker child's set-up from its CONFIG frame (see main.c). */
#ifndef ISO_SETUP_H
#define ISO_SETUP_H

#include <sys/types.h>

#include "confine.h"
#include "isolate.h"

/* config["fs"], config["net"] -> a plan (one reference), NULL with err. */
iso_plan *iso_worker_plan(const iso_value *config, iso_error *err);
/* A worker child's fds: frames, death note, its cgroup's directory (-1:
 * none) and whether the zygote created it in that cgroup already. */
typedef struct iso_worker_fds {
    int sock, note, cgroup;
    bool born_in_cgroup;
} iso_worker_fds;
/* Confinement in two halves (confine.h): early before the CONFIG frame,
 * keeping only fds open; late as config says. Guest code only after both. */
int iso_worker_confine_early(const iso_worker_fds *fds, iso_confine_report *rep,
                             iso_error *err);
int iso_worker_confine_late(const iso_value *config, const iso_plan *plan,
                            int note, iso_confine_report *rep, iso_error *err);
/* warm.c: fork() into the cgroup whose directory is cgroup_fd (-1: plain
 * fork); *born_in says whether the child was created in it. */
pid_t iso_fork_into(int cgroup_fd, bool *born_in);
/* A pool child, waiting: copy-on-write the pages it shares with the
 * zygote now, and map the page-cache pages of its read-only file
 * mappings. Returns how many pages it touched. */
size_t iso_prefault(void);
/* A moment of the child's start (iso_now()), for the spawn phases. */
typedef struct iso_worker_mark {
    const char *name; /* static */
    double at;
} iso_worker_mark;
/* The READY frame's value: {confinement = one row per layer
 * (iso_confinement_add), phases = [[name, iso_now()], ...] in time order:
 * the marks and one per confinement step}. */
int iso_worker_ready(const iso_confine_report *rep,
                     const iso_worker_mark *marks, size_t n_marks,
                     iso_value *out);
/* config[key] helpers. */
const iso_value *iso_config_field(const iso_value *map, const char *key);
int64_t iso_config_int(const iso_value *map, const char *key);
const char *iso_config_str(const iso_value *map, const char *key);
/* The strings of list map[key], NULL-terminated, borrowed (free the array). */
const char **iso_config_strings(const iso_value *map, const char *key,
                                size_t *n);

#endif
