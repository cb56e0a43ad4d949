/* What the host checks in a process worker's frames, and the host's queue
 * accounting (issue 17): the pure pieces, without a worker. */
#include <stdlib.h>
#include <string.h>

#include "cell_internal.h" /* the queue accounting is src/core's own */
#include "check.h"
#include "isolate.h"
#include "wire.h"

static void set_str(iso_value *v, const char *s)
{
    CHECK_EQ_INT(iso_value_set_string(v, ISO_STR, s, strlen(s)), 0);
}

static void test_footprint(void)
{
    const size_t one = sizeof(iso_value);
    iso_value v = {0};
    CHECK_EQ_INT(iso_value_footprint(&v), one);
    set_str(&v, "abc");
    CHECK_EQ_INT(iso_value_footprint(&v), one + 3);
    iso_value_set_list(&v);
    iso_value_set_int(iso_list_append(&v), 1);
    set_str(iso_list_append(&v), "ab");
    CHECK_EQ_INT(iso_value_footprint(&v), 3 * one + 2);
    iso_value *k, *x;
    iso_value_set_map(&v);
    CHECK_EQ_INT(iso_map_append(&v, &k, &x), 0);
    set_str(k, "key");
    iso_value_set_nil(x);
    CHECK_EQ_INT(iso_value_footprint(&v), 3 * one + 3);
    /* A list of nils holds no string bytes, and still costs the host. */
    iso_value_set_list(&v);
    for (int i = 0; i < 1000; i++)
        iso_list_append(&v);
    CHECK_EQ_INT(iso_value_string_bytes(&v), 0);
    CHECK_EQ_INT(iso_value_footprint(&v), 1001 * one);
    iso_value_free(&v);
}

static void test_death_note(void)
{
    char note[] = "seccomp\x1b[2J: re\x07"
                  "boot\xff\xfe ok\n";
    CHECK_EQ_INT(iso_death_note_clean(note), strlen("seccomp[2J: reboot ok"));
    CHECK_EQ_STR(note, "seccomp[2J: reboot ok");
    char empty[] = "";
    CHECK_EQ_INT(iso_death_note_clean(empty), 0);
    char all_bad[] = "\x01\x02\x7f\x80";
    CHECK_EQ_INT(iso_death_note_clean(all_bad), 0);
    CHECK_EQ_STR(all_bad, "");
}

static void test_worker_kinds(void)
{
    CHECK(iso_worker_kind_allowed(ISO_GUEST, 0));
    CHECK(iso_worker_kind_allowed(ISO_VALUE, 0));
    CHECK(!iso_worker_kind_allowed(ISO_MEMORY, 0));
    CHECK(iso_worker_kind_allowed(ISO_MEMORY, 1 << 20));
    const iso_kind host_only[] = {ISO_OK,      ISO_INVALID_ARGUMENT,
                                  ISO_POLICY,  ISO_UNENFORCEABLE,
                                  ISO_TIMEOUT, ISO_CPU,
                                  ISO_CLOSED,  ISO_CRASHED,
                                  ISO_OUTPUT,  ISO_NOT_IMPLEMENTED};
    for (size_t i = 0; i < sizeof host_only / sizeof host_only[0]; i++)
        CHECK(!iso_worker_kind_allowed(host_only[i], 1 << 20));
    CHECK_EQ_STR(iso_kind_name(ISO_OUTPUT), "output");
}

static iso_msg *denial(size_t items)
{
    iso_msg *m = iso_msg_new(ISO_MSG_DENIAL);
    iso_value_set_list(&m->value);
    for (size_t i = 0; i < items; i++)
        set_str(iso_list_append(&m->value), "x");
    return m;
}

static void test_denial_source(void)
{
    iso_msg *m = denial(5);
    CHECK_EQ_INT(iso_denial_mark(m, "cell"), 0);
    CHECK_EQ_INT(m->value.u.seq.len, 6);
    CHECK_EQ_STR(m->value.u.seq.items[5].u.str.ptr, "cell");
    CHECK_EQ_INT(iso_denial_mark(m, "host"), 0); /* replaced, not added */
    CHECK_EQ_INT(m->value.u.seq.len, 6);
    CHECK_EQ_STR(m->value.u.seq.items[5].u.str.ptr, "host");
    iso_msg_destroy(m);
    m = denial(7); /* learn mode: an empty source slot, then where */
    iso_value_free(&m->value.u.seq.items[5]);
    set_str(&m->value.u.seq.items[5], "");
    iso_value_free(&m->value.u.seq.items[6]);
    set_str(&m->value.u.seq.items[6], "<c>:1");
    CHECK(!iso_denial_marked(m));
    CHECK_EQ_INT(iso_denial_mark(m, "cell"), 0);
    CHECK_EQ_INT(m->value.u.seq.len, 7);
    CHECK_EQ_STR(m->value.u.seq.items[5].u.str.ptr, "cell");
    CHECK_EQ_STR(m->value.u.seq.items[6].u.str.ptr, "<c>:1");
    CHECK(iso_denial_marked(m));
    iso_msg_destroy(m);
    m = denial(9); /* whatever came after the seven items goes */
    CHECK_EQ_INT(iso_denial_mark(m, "kernel"), 0);
    CHECK_EQ_INT(m->value.u.seq.len, 7);
    CHECK_EQ_STR(m->value.u.seq.items[5].u.str.ptr, "kernel");
    iso_msg_destroy(m);
    m = denial(4); /* too short to be a denial */
    CHECK_EQ_INT(iso_denial_mark(m, "cell"), -1);
    iso_msg_destroy(m);
}

static iso_msg *post_of(size_t bytes)
{
    iso_msg *m = iso_msg_new(ISO_MSG_POST);
    char *s = malloc(bytes + 1);
    memset(s, 'x', bytes);
    iso_value_set_string(&m->value, ISO_BYTES, s, bytes);
    free(s);
    return m;
}

static void test_queue_charge(void)
{
    iso_cell *c = calloc(1, sizeof *c);
    c->queue_values = 2;
    iso_msg *a = post_of(10), *b = post_of(10), *d = post_of(10);
    CHECK_EQ_INT(iso_cell_queue_charge(c, a), 0);
    CHECK(a->charged >= 10);
    CHECK_EQ_INT(iso_cell_queue_charge(c, b), 0);
    CHECK_EQ_INT(iso_cell_queue_charge(c, d), -1);
    CHECK_EQ_INT(d->charged, 0);
    CHECK_EQ_INT(atomic_load(&c->queued_values), 2); /* the refusal undone */
    CHECK_EQ_INT(atomic_load(&c->queued_bytes), a->charged + b->charged);
    char why[96];
    iso_cell_queue_why(c, why, sizeof why);
    CHECK_EQ_STR(why, "limits.queue_values=2 messages");

    iso_cell *e = calloc(1, sizeof *e);
    e->queue_bytes = 1000;
    iso_msg *big = post_of(2000), *small = post_of(100);
    CHECK_EQ_INT(iso_cell_queue_charge(e, big), -1);
    CHECK_EQ_INT(iso_cell_queue_charge(e, small), 0);
    CHECK_EQ_INT(atomic_load(&e->queued_values), 1);
    iso_cell_queue_why(e, why, sizeof why);
    CHECK_EQ_STR(why, "limits.queue_bytes=1000 bytes");
    iso_msg *msgs[] = {a, b, d, big, small};
    for (size_t i = 0; i < 5; i++)
        iso_msg_destroy(msgs[i]);
    free(c);
    free(e);
}

static void test_queue_defaults(void)
{
    iso_error err = {0};
    int64_t bytes, values;
    iso_queue_defaults_get(&bytes, &values);
    CHECK_EQ_INT(bytes, ISO_QUEUE_BYTES_DEFAULT);
    CHECK_EQ_INT(values, ISO_QUEUE_VALUES_DEFAULT);
    CHECK_EQ_INT(iso_queue_defaults_set(0, 10, &err), -1);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    CHECK_EQ_INT(iso_queue_defaults_set(10, -1, &err), -1);
    CHECK_EQ_INT(iso_queue_defaults_set(4096, 7, &err), 0);
    iso_queue_defaults_get(&bytes, &values);
    CHECK_EQ_INT(bytes, 4096);
    CHECK_EQ_INT(values, 7);
    iso_error_clear(&err);
}

/* A worker cannot even spell kind output: the frame rules stop at value. */
static void test_output_not_on_the_wire(void)
{
    iso_frame f = {.type = ISO_FRAME_RESULT};
    iso_error err = {0};
    char *body = NULL;
    size_t len = 0;
    iso_error_set(&f.error, ISO_OUTPUT, "forged");
    CHECK_EQ_INT(iso_frame_encode(&f, &body, &len, &err), -1);
    CHECK(body == NULL);
    iso_frame_clear(&f);
    iso_error_clear(&err);
}

int main(void)
{
    RUN(test_footprint);
    RUN(test_death_note);
    RUN(test_worker_kinds);
    RUN(test_denial_source);
    RUN(test_queue_charge);
    RUN(test_queue_defaults);
    RUN(test_output_not_on_the_wire);
    return CHECK_EXIT();
}
