/*
 * The frame rules (see wire.h): which frame types exist and what each may
 * carry. The decoder and the encoder both ask here, so that a sender cannot
 * emit what its peer would refuse; a broken rule on receipt is a protocol
 * error, which has its own code (ISO_E_PROTOCOL).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire_internal.h"

typedef enum shape { SHAPE_NIL, SHAPE_ANY, SHAPE_MAP, SHAPE_LIST } shape;

typedef struct frame_rule {
    const char *name; /* NULL: not a frame type */
    bool text, error;
    shape value;
    int items; /* SHAPE_LIST: exact length, -1 for any, or ITEMS_DENIAL */
} frame_rule;

/* A denial's five items, or seven in learn mode (msg.h: iso_denial_mark). */
#define ITEMS_DENIAL (-2)

static const frame_rule rules[] = {
    [ISO_FRAME_EXEC] = {"exec", true, false, SHAPE_NIL, 0},
    [ISO_FRAME_CALL] = {"call", true, false, SHAPE_LIST, -1},
    [ISO_FRAME_REPLY] = {"reply", false, true, SHAPE_ANY, 0},
    [ISO_FRAME_CONFIG] = {"config", false, false, SHAPE_MAP, 0},
    [ISO_FRAME_STOP] = {"stop", false, false, SHAPE_NIL, 0},
    [ISO_FRAME_RELOAD] = {"reload", false, false, SHAPE_MAP, 0},
    [ISO_FRAME_READY] = {"ready", false, false, SHAPE_ANY, 0},
    [ISO_FRAME_RESULT] = {"result", false, true, SHAPE_ANY, 0},
    [ISO_FRAME_POST] = {"post", false, false, SHAPE_ANY, 0},
    [ISO_FRAME_LOG] = {"log", false, false, SHAPE_LIST, 3},
    [ISO_FRAME_METRIC] = {"metric", false, false, SHAPE_LIST, 3},
    [ISO_FRAME_REQUEST] = {"request", false, false, SHAPE_LIST, 3},
    [ISO_FRAME_DENIAL] = {"denial", false, false, SHAPE_LIST, ITEMS_DENIAL},
    [ISO_FRAME_RELOADED] = {"reloaded", false, false, SHAPE_NIL, 0},
    [ISO_FRAME_WAITING] = {"waiting", false, false, SHAPE_NIL, 0},
};

static const frame_rule *rule_of(uint64_t type)
{
    if (type >= sizeof rules / sizeof rules[0] || !rules[type].name)
        return NULL;
    return &rules[type];
}

const char *iso_frame_type_name(int type)
{
    const frame_rule *r = type < 0 ? NULL : rule_of((uint64_t)type);
    return r ? r->name : NULL;
}

bool iso_frame_type_known(uint64_t type)
{
    return rule_of(type) != NULL;
}

/* How deep the frame's value may nest: a wrapping list is not a level of
 * the values it carries (wire.h). */
int iso_frame_value_depth(int type)
{
    const frame_rule *r = rule_of((uint64_t)type);
    return ISO_VALUE_MAX_DEPTH + (r->value == SHAPE_LIST ? 1 : 0);
}

static const char *value_shape_problem(const frame_rule *r, const iso_value *v)
{
    switch (r->value) {
    case SHAPE_NIL:
        return v->type == ISO_NIL ? NULL : "carries no value";
    case SHAPE_MAP:
        return v->type == ISO_MAP ? NULL : "needs a map value";
    case SHAPE_LIST:
        if (v->type != ISO_LIST)
            return "needs a list value";
        if (r->items == ITEMS_DENIAL)
            return v->u.seq.len == 5 || v->u.seq.len == 7
                       ? NULL
                       : "has a list value of the wrong length";
        if (r->items >= 0 && v->u.seq.len != (size_t)r->items)
            return "has a list value of the wrong length";
        return NULL;
    case SHAPE_ANY:
        break;
    }
    return NULL;
}

static const char *frame_problem(const frame_rule *r, const iso_frame *f)
{
    if (r->text && !f->text)
        return "needs text";
    if (!r->text && f->text)
        return "carries no text";
    if (f->error.kind == ISO_OK)
        return value_shape_problem(r, &f->value);
    if (!r->error)
        return "carries no error";
    if ((unsigned)f->error.kind > ISO_VALUE)
        return "has an error of unknown kind";
    if (f->value.type != ISO_NIL)
        return "with an error carries no value";
    return NULL;
}

void iso_frame_clear(iso_frame *f)
{
    if (!f)
        return;
    free(f->text);
    iso_error_clear(&f->error);
    iso_value_free(&f->value);
    memset(f, 0, sizeof *f);
}

const char *iso_frame_problem(const iso_frame *f)
{
    return frame_problem(rule_of((uint64_t)f->type), f);
}

int iso_wire_violation(iso_error *err, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    iso_error_set(err, ISO_CRASHED, "protocol: %s", why);
    if (err)
        err->code = ISO_E_PROTOCOL;
    return -1;
}

int iso_wire_oom(iso_error *err)
{
    return iso_error_set(err, ISO_MEMORY, "out of memory");
}
