/*
 * The cell object (cell.c) against a fake backend: spawn, exec, call,
 * results, posts, broker requests, limits, close and kill, with no thread,
 * interpreter or process behind them. The fake takes the microvm slot of
 * the backend registry, which this build leaves empty.
 *
 * The fake "guest" answers its source text at the next receive:
 *   "ok"       a RESULT with the value 7
 *   "posts:N"  N posts ("p0", "p1", ...), then a RESULT
 *   "fail"     a RESULT carrying a guest error
 *   "ask"      a broker REQUEST; the RESULT is the host's reply
 *   "deny"     a DENIAL event the cell claims, then a RESULT
 *   "die"      the cell dies under the request
 *   "hang"     never answers (until it is killed)
 * and a call answers the number of its arguments.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cell_internal.h" /* the cell object's own test */
#include "check.h"

#define FAKE ISO_BACKEND_MICROVM

typedef struct fake {
    iso_req *req;        /* the request to answer at the next receive */
    bool asked;          /* "ask": the REQUEST went out, the reply awaited */
    bool replied;        /* the host answered it */
    iso_value answer;    /* what it answered */
    int refused;         /* deliveries a queue limit refused */
    iso_host_hooks host; /* given at start */
} fake;

static struct {
    int starts, stops, forced_stops, overruns, destroys;
    bool unavailable, start_fails;
} seen;

static int fake_check(iso_error *err)
{
    if (seen.unavailable)
        return iso_error_set(err, ISO_NOT_IMPLEMENTED, "fake: unavailable");
    return 0;
}

/* The fake's handle, as the host holds it. */
static fake *fake_of(iso_backend_cell *h)
{
    return (fake *)h;
}

static int fake_start(iso_cell *c, const iso_cell_config *cfg,
                      const iso_host_hooks *host, iso_backend_cell **out,
                      iso_error *err)
{
    (void)c, (void)cfg;
    seen.starts++;
    if (seen.start_fails)
        return iso_error_set(err, ISO_CRASHED, "fake: cannot start");
    fake *f = calloc(1, sizeof(fake));
    if (!f)
        return iso_error_set(err, ISO_MEMORY, "out of memory");
    f->host = *host;
    *out = (iso_backend_cell *)f;
    return 0;
}

static int fake_submit(iso_backend_cell *h, iso_req *r, iso_error *err)
{
    (void)err;
    fake *f = fake_of(h);
    iso_req_destroy(f->req);
    f->req = r;
    return 0;
}

static void deliver(fake *f, iso_msg *m)
{
    iso_error err = {0};
    if (m && iso_host_deliver(&f->host, m, &err))
        f->refused += err.kind == ISO_OUTPUT; /* the hook says which limit */
    iso_error_clear(&err);
}

static iso_msg *with_int(iso_msg_type type, int64_t n)
{
    iso_msg *m = iso_msg_new(type);
    if (m)
        iso_value_set_int(&m->value, n);
    return m;
}

static iso_msg *with_str(iso_msg_type type, const char *s)
{
    iso_msg *m = iso_msg_new(type);
    if (m)
        iso_value_set_string(&m->value, ISO_STR, s, strlen(s));
    return m;
}

/* An exec request's answer; false while it has none yet. */
static bool answer_exec(fake *f, const char *text)
{
    if (strncmp(text, "posts:", 6) == 0) {
        for (int i = 0, n = atoi(text + 6); i < n; i++) {
            char s[16];
            snprintf(s, sizeof s, "p%d", i);
            deliver(f, with_str(ISO_MSG_POST, s));
        }
    } else if (strcmp(text, "fail") == 0) {
        iso_msg *m = iso_msg_new(ISO_MSG_RESULT);
        iso_error_set(&m->error, ISO_GUEST, "fake: the guest raised");
        deliver(f, m);
        return true;
    } else if (strcmp(text, "ask") == 0 && !f->asked) {
        f->asked = true;
        deliver(f, with_str(ISO_MSG_REQUEST, "cap"));
        return false;
    } else if (strcmp(text, "ask") == 0) {
        if (!f->replied)
            return false;
        iso_msg *m = iso_msg_new(ISO_MSG_RESULT);
        iso_value_move(&m->value, &f->answer);
        deliver(f, m);
        return true;
    } else if (strcmp(text, "hang") == 0) {
        return false;
    } else if (strcmp(text, "deny") == 0) {
        iso_msg *m = iso_msg_new(ISO_MSG_DENIAL);
        iso_value_set_list(&m->value);
        for (int i = 0; i < 5; i++) /* capability ... layer: no source */
            iso_value_set_string(iso_list_append(&m->value), ISO_STR, "x", 1);
        deliver(f, m);
    }
    deliver(f, with_int(ISO_MSG_RESULT, 7));
    return true;
}

static int fake_receive(iso_backend_cell *h, double deadline, iso_error *err)
{
    (void)deadline; /* never sleeps: cell.c's loop looks again */
    fake *f = fake_of(h);
    iso_req *r = f->req;
    if (!r)
        return 0;
    if (r->type == ISO_REQ_EXEC && strcmp(r->text, "die") == 0) {
        iso_host_retire(&f->host, ISO_STATE_DEAD);
        return iso_error_set(err, ISO_CRASHED, "fake: the cell died");
    }
    bool done =
        r->type == ISO_REQ_CALL
            ? (deliver(f, with_int(ISO_MSG_RESULT, (int64_t)r->args.u.seq.len)),
               true)
            : answer_exec(f, r->text);
    if (done) {
        iso_req_destroy(r);
        f->req = NULL;
        f->asked = f->replied = false;
    }
    return 0;
}

static void fake_reply(iso_backend_cell *h, iso_value *value, const char *error)
{
    fake *f = fake_of(h);
    (void)error;
    if (value)
        iso_value_move(&f->answer, value);
    f->replied = true;
}

static bool fake_overrun(iso_backend_cell *h, double overdue, double *again)
{
    (void)overdue, (void)again;
    seen.overruns++;
    iso_host_retire(&fake_of(h)->host, ISO_STATE_DEAD); /* killed at once */
    return false;
}

static void fake_stop(iso_backend_cell *h, bool force, bool busy)
{
    (void)busy;
    seen.stops++;
    seen.forced_stops += force;
    iso_host_retire(&fake_of(h)->host, ISO_STATE_CLOSED);
}

static void fake_destroy(iso_backend_cell *h)
{
    fake *f = fake_of(h);
    seen.destroys++;
    if (f) {
        iso_req_destroy(f->req);
        iso_value_free(&f->answer);
    }
    free(f);
}

static const iso_cell_ops fake_ops = {
    .check = fake_check,
    .start = fake_start,
    .submit = fake_submit,
    .receive = fake_receive,
    .reply = fake_reply,
    .overrun = fake_overrun,
    .stop = fake_stop,
    .destroy = fake_destroy,
};

/* ---- helpers ----------------------------------------------------------- */

static iso_cell *spawn_cfg(iso_cell_config cfg, iso_error *err)
{
    iso_cell *c = NULL;
    cfg.backend = FAKE;
    iso_error_clear(err);
    return iso_cell_spawn(&cfg, &c, err) == 0 ? c : NULL;
}

static iso_cell *spawn(const char *name)
{
    iso_error err = {0};
    iso_cell *c = spawn_cfg((iso_cell_config){.name = name}, &err);
    CHECK(c != NULL);
    iso_error_clear(&err);
    return c;
}

/* Wait for what, forever; the message (NULL on error, err set). */
static iso_msg *wait_for(iso_cell *c, iso_wait what, iso_error *err)
{
    iso_msg *m = NULL;
    iso_error_clear(err);
    return iso_cell_wait(c, what, -1, &m, err) == 0 ? m : NULL;
}

static int exec_kind(iso_cell *c, const char *src)
{
    iso_error err = {0};
    int rc = iso_cell_exec(c, src, strlen(src), &err);
    iso_kind kind = rc ? err.kind : ISO_OK;
    iso_error_clear(&err);
    return (int)kind;
}

/* ---- tests ------------------------------------------------------------- */

static void test_exec_result_posts(void)
{
    iso_cell *c = spawn("fake-a");
    iso_error err = {0};
    CHECK_EQ_INT(exec_kind(c, "posts:2"), ISO_OK);
    iso_cell_stats st;
    iso_cell_stats_get(c, &st);
    CHECK_EQ_STR(st.state, "running");
    iso_msg *m = wait_for(c, ISO_WAIT_RESULT, &err);
    CHECK(m && m->type == ISO_MSG_RESULT && m->value.type == ISO_INT &&
          m->value.u.i == 7);
    iso_msg_destroy(m);
    for (int i = 0; i < 2; i++) {
        char want[4];
        snprintf(want, sizeof want, "p%d", i);
        m = wait_for(c, ISO_WAIT_POST, &err);
        CHECK(m && m->type == ISO_MSG_POST);
        CHECK_EQ_STR(m ? m->value.u.str.ptr : NULL, want);
        iso_msg_destroy(m);
    }
    iso_cell_stats_get(c, &st);
    CHECK_EQ_INT(st.calls, 1);
    CHECK_EQ_INT(st.posts, 2);
    CHECK_EQ_STR(st.state, "idle");
    CHECK_EQ_STR(iso_cell_name(c), "fake-a");
    CHECK_EQ_INT(iso_cell_backend(c), FAKE);
    iso_cell_release(c);
}

static void test_call_and_guest_error(void)
{
    iso_cell *c = spawn("fake-b");
    iso_error err = {0};
    iso_value args = {0};
    iso_value_set_list(&args);
    iso_value_set_int(iso_list_append(&args), 1);
    iso_value_set_int(iso_list_append(&args), 2);
    iso_value_set_int(iso_list_append(&args), 3);
    CHECK_EQ_INT(iso_cell_call(c, "f", &args, &err), 0);
    iso_msg *m = wait_for(c, ISO_WAIT_RESULT, &err);
    CHECK(m && m->value.type == ISO_INT && m->value.u.i == 3);
    iso_msg_destroy(m);
    CHECK_EQ_INT(exec_kind(c, "fail"), ISO_OK);
    m = wait_for(c, ISO_WAIT_RESULT, &err);
    CHECK(m && m->error.kind == ISO_GUEST); /* the guest's, not a failure */
    iso_msg_destroy(m);
    iso_cell_release(c);
}

static void test_one_request_at_a_time(void)
{
    iso_cell *c = spawn("fake-c");
    iso_error err = {0};
    CHECK(wait_for(c, ISO_WAIT_RESULT, &err) == NULL);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT); /* nothing running */
    CHECK_EQ_INT(exec_kind(c, "hang"), ISO_OK);
    CHECK_EQ_INT(exec_kind(c, "ok"), ISO_INVALID_ARGUMENT); /* busy */
    iso_msg *m = NULL;
    iso_error_clear(&err);
    CHECK_EQ_INT(iso_cell_wait(c, ISO_WAIT_RESULT, 0.01, &m, &err), 1);
    CHECK_EQ_INT(err.kind, ISO_TIMEOUT); /* the caller's deadline only */
    CHECK(iso_cell_is_open(c));
    iso_error_clear(&err);
    iso_cell_release(c);
}

static void test_broker_request(void)
{
    iso_cell *c = spawn("fake-d");
    iso_error err = {0};
    CHECK_EQ_INT(exec_kind(c, "ask"), ISO_OK);
    iso_msg *m = wait_for(c, ISO_WAIT_RESULT, &err);
    CHECK(m && m->type == ISO_MSG_REQUEST); /* before the result */
    iso_msg_destroy(m);
    iso_value answer = {0};
    iso_value_set_int(&answer, 42);
    CHECK_EQ_INT(iso_cell_reply(c, &answer, NULL), 0);
    m = wait_for(c, ISO_WAIT_RESULT, &err);
    CHECK(m && m->type == ISO_MSG_RESULT && m->value.type == ISO_INT &&
          m->value.u.i == 42);
    iso_msg_destroy(m);
    iso_cell_release(c);
}

static void test_names(void)
{
    iso_error err = {0};
    CHECK(spawn_cfg((iso_cell_config){.name = "bad name"}, &err) == NULL);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    iso_cell *a = spawn("fake-e");
    CHECK(spawn_cfg((iso_cell_config){.name = "fake-e"}, &err) == NULL);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT); /* a live cell has it */
    iso_cell_close(a);
    iso_cell *b = spawn_cfg((iso_cell_config){.name = "fake-e"}, &err);
    CHECK(b != NULL); /* closing freed the name */
    iso_cell_release(b);
    iso_cell_release(a);
    iso_error_clear(&err);
}

static void test_unavailable_and_failed_start(void)
{
    iso_error err = {0};
    seen.unavailable = true;
    CHECK(spawn_cfg((iso_cell_config){.name = "fake-f"}, &err) == NULL);
    CHECK_EQ_INT(err.kind, ISO_NOT_IMPLEMENTED);
    seen.unavailable = false;
    int starts = seen.starts;
    seen.start_fails = true;
    CHECK(spawn_cfg((iso_cell_config){.name = "fake-f"}, &err) == NULL);
    CHECK_EQ_INT(err.kind, ISO_CRASHED);
    CHECK_EQ_INT(seen.starts, starts + 1);
    seen.start_fails = false;
    iso_cell *c = spawn_cfg((iso_cell_config){.name = "fake-f"}, &err);
    CHECK(c != NULL); /* the failed start released the name */
    iso_cell_release(c);
    iso_error_clear(&err);
}

static void test_close_and_kill(void)
{
    iso_error err = {0};
    int stops = seen.stops, forced = seen.forced_stops;
    int destroys = seen.destroys;
    iso_cell *c = spawn("fake-g");
    iso_cell_close(c);
    CHECK_EQ_INT(seen.stops, stops + 1);
    CHECK_EQ_INT(seen.forced_stops, forced);
    CHECK(!iso_cell_is_open(c));
    CHECK_EQ_INT(exec_kind(c, "ok"), ISO_CLOSED);
    iso_cell_stats st;
    iso_cell_stats_get(c, &st);
    CHECK_EQ_STR(st.state, "closed");
    iso_cell_close(c); /* twice: nothing more to stop */
    CHECK_EQ_INT(seen.stops, stops + 1);
    iso_cell_release(c);
    CHECK_EQ_INT(seen.destroys, destroys + 1);

    c = spawn("fake-g");
    CHECK_EQ_INT(exec_kind(c, "hang"), ISO_OK);
    iso_cell_kill(c);
    CHECK_EQ_INT(seen.forced_stops, forced + 1);
    iso_cell_stats_get(c, &st);
    CHECK_EQ_STR(st.state, "dead");
    CHECK(wait_for(c, ISO_WAIT_RESULT, &err) == NULL);
    CHECK_EQ_INT(err.kind, ISO_CLOSED);
    iso_cell_release(c);
    iso_error_clear(&err);
}

static void test_death_under_a_request(void)
{
    iso_cell *c = spawn("fake-h");
    iso_error err = {0};
    CHECK_EQ_INT(exec_kind(c, "die"), ISO_OK);
    CHECK(wait_for(c, ISO_WAIT_RESULT, &err) == NULL);
    CHECK_EQ_INT(err.kind, ISO_CRASHED);
    CHECK(!iso_cell_is_open(c));
    CHECK_EQ_INT(exec_kind(c, "ok"), ISO_CLOSED);
    iso_cell_release(c);
    iso_error_clear(&err);
}

static void test_wall_ms(void)
{
    iso_error err = {0};
    iso_cell *c =
        spawn_cfg((iso_cell_config){.name = "fake-i", .wall_ms = 20}, &err);
    CHECK(c != NULL);
    int overruns = seen.overruns;
    double t0 = iso_now();
    CHECK_EQ_INT(exec_kind(c, "hang"), ISO_OK);
    CHECK(wait_for(c, ISO_WAIT_RESULT, &err) == NULL);
    CHECK_EQ_INT(err.kind, ISO_TIMEOUT);
    CHECK(iso_now() - t0 >= 0.02);
    CHECK_EQ_INT(seen.overruns, overruns + 1);
    iso_cell_stats st;
    iso_cell_stats_get(c, &st);
    CHECK_EQ_STR(st.state, "dead");
    iso_cell_release(c);
    iso_error_clear(&err);
}

static void test_queue_limit(void)
{
    iso_error err = {0};
    iso_cell *c =
        spawn_cfg((iso_cell_config){.name = "fake-j", .queue_values = 2}, &err);
    CHECK(c != NULL);
    CHECK_EQ_INT(exec_kind(c, "posts:3"), ISO_OK);
    iso_msg *m = wait_for(c, ISO_WAIT_RESULT, &err);
    CHECK(m && m->type == ISO_MSG_RESULT); /* a result has a slot */
    iso_msg_destroy(m);
    CHECK_EQ_INT(fake_of(c->handle)->refused, 1);
    iso_cell_stats st;
    iso_cell_stats_get(c, &st);
    CHECK_EQ_INT(st.posts, 2);
    for (int i = 0; i < 2; i++)
        iso_msg_destroy(wait_for(c, ISO_WAIT_POST, &err));
    CHECK_EQ_INT(exec_kind(c, "posts:1"), ISO_OK); /* room again */
    iso_msg_destroy(wait_for(c, ISO_WAIT_RESULT, &err));
    CHECK_EQ_INT(fake_of(c->handle)->refused, 1);
    m = wait_for(c, ISO_WAIT_POST, &err);
    CHECK_EQ_STR(m ? m->value.u.str.ptr : NULL, "p0");
    iso_msg_destroy(m);
    iso_cell_release(c);
    iso_error_clear(&err);
}

static void test_bad_limits(void)
{
    iso_error err = {0};
    CHECK(spawn_cfg((iso_cell_config){.name = "fake-k", .wall_ms = -1}, &err) ==
          NULL);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    CHECK(spawn_cfg((iso_cell_config){.name = "fake-k", .queue_bytes = -1},
                    &err) == NULL);
    CHECK_EQ_INT(err.kind, ISO_INVALID_ARGUMENT);
    iso_error_clear(&err);
}

static void test_denial_event(void)
{
    iso_cell *c = spawn("fake-l");
    iso_error err = {0};
    CHECK_EQ_INT(exec_kind(c, "deny"), ISO_OK);
    iso_msg_destroy(wait_for(c, ISO_WAIT_RESULT, &err));
    iso_msg *m = iso_cell_next_event(c);
    CHECK(m && m->type == ISO_MSG_DENIAL && m->value.u.seq.len == 6);
    if (m && m->value.u.seq.len == 6) /* the cell's claim: source "cell" */
        CHECK_EQ_STR(m->value.u.seq.items[5].u.str.ptr, "cell");
    iso_msg_destroy(m);
    CHECK(iso_cell_next_event(c) == NULL);
    iso_cell_stats st;
    iso_cell_stats_get(c, &st);
    CHECK_EQ_INT(st.denials, 1);
    iso_cell_release(c);
}

static void test_wait_any(void)
{
    iso_cell *cells[2] = {spawn("fake-m"), spawn("fake-n")};
    bool ready[2] = {true, true};
    CHECK_EQ_INT(exec_kind(cells[0], "hang"), ISO_OK);
    CHECK_EQ_INT(exec_kind(cells[1], "ok"), ISO_OK);
    CHECK_EQ_INT(iso_cell_wait_any(cells, 2, 1.0, ready), 1);
    CHECK(!ready[0] && ready[1]);
    double t0 = iso_now();
    CHECK_EQ_INT(iso_cell_wait_any(cells, 1, 0.02, ready), 0);
    CHECK(!ready[0]);
    CHECK(iso_now() - t0 >= 0.02); /* slept until its timeout */
    iso_cell_release(cells[0]);
    iso_cell_release(cells[1]);
}

int main(void)
{
    iso_backend_ops_set(FAKE, &fake_ops);
    RUN(test_exec_result_posts);
    RUN(test_call_and_guest_error);
    RUN(test_one_request_at_a_time);
    RUN(test_broker_request);
    RUN(test_names);
    RUN(test_unavailable_and_failed_start);
    RUN(test_close_and_kill);
    RUN(test_death_under_a_request);
    RUN(test_wall_ms);
    RUN(test_queue_limit);
    RUN(test_bad_limits);
    RUN(test_denial_event);
    RUN(test_wait_any);
    return CHECK_EXIT();
}
