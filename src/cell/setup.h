/* The worker child's set-up from its CONFIG frame (see main.c). */
#ifndef ISO_SETUP_H
#define ISO_SETUP_H

#include "confine.h"
#include "isolate.h"

/* config["fs"], config["net"] -> a plan (one reference), NULL with err. */
iso_plan *iso_worker_plan(const iso_value *config, iso_error *err);
/* Confine this process as config says, keeping only sock and note open. */
int iso_worker_confine(const iso_value *config, const iso_plan *plan,
                       int sock, int note, iso_confine_report *rep,
                       iso_error *err);
/* The READY frame's value: one row per layer (iso_confinement_add). */
int iso_worker_report(const iso_confine_report *rep, iso_value *out);
/* config[key] helpers. */
const iso_value *iso_config_field(const iso_value *map, const char *key);
int64_t iso_config_int(const iso_value *map, const char *key);
const char *iso_config_str(const iso_value *map, const char *key);
/* The strings of list map[key], NULL-terminated, borrowed (free the array). */
const char **iso_config_strings(const iso_value *map, const char *key,
                                size_t *n);

#endif
