/* Messages, confinement rows and cell names (msg.h). */
#include <stdlib.h>
#include <string.h>

#include "handoff.h"
#include "msg.h"

iso_msg *iso_msg_new(iso_msg_type type)
{
    iso_msg *m = calloc(1, sizeof *m);
    if (m) {
        m->type = type;
        m->time = iso_wallclock();
    }
    return m;
}

void iso_msg_destroy(iso_msg *m)
{
    if (!m)
        return;
    iso_value_free(&m->value);
    iso_error_clear(&m->error);
    free(m);
}

bool iso_cell_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > ISO_NAME_MAX)
        return false;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_-") == n;
}

static int add_field(iso_value *map, const char *key, const char *value)
{
    iso_value *k, *v;
    if (iso_map_append(map, &k, &v))
        return -1;
    return iso_value_set_string(k, ISO_STR, key, strlen(key)) ||
           iso_value_set_string(v, ISO_STR, value, strlen(value));
}

int iso_confinement_add(iso_value *list, const char *layer, const char *state,
                        const char *scope, const char *detail)
{
    iso_value *row = iso_list_append(list);
    if (!row)
        return -1;
    iso_value_set_map(row);
    return add_field(row, "layer", layer) || add_field(row, "state", state) ||
           add_field(row, "scope", scope) ||
           add_field(row, "detail", detail ? detail : "");
}

int iso_denial_mark(iso_msg *m, const char *source)
{
    iso_value *list = &m->value;
    while (list->u.seq.len > 7) /* past where the guest was: dropped */
        iso_value_free(&list->u.seq.items[--list->u.seq.len]);
    if (list->u.seq.len < 5 || (list->u.seq.len == 5 && !iso_list_append(list)))
        return -1;
    iso_value *slot = &list->u.seq.items[5]; /* whoever set one: replaced */
    iso_value_free(slot);
    return iso_value_set_string(slot, ISO_STR, source, strlen(source));
}

bool iso_denial_marked(const iso_msg *m)
{
    const iso_value *list = &m->value;
    return list->u.seq.len >= 6 && list->u.seq.items[5].type == ISO_STR &&
           list->u.seq.items[5].u.str.len > 0;
}
