/* iso_signal: wake-ups cross threads, deadlines expire, nothing is lost. */
#include <pthread.h>

#include "check.h"
#include "handoff.h"

static iso_signal ping, pong;
enum { ROUNDS = 20000 };

static void *echo(void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < ROUNDS; i++) {
        while (iso_signal_peek(&ping) == i)
            iso_signal_wait(&ping, i, -1);
        iso_signal_notify(&pong);
    }
    return NULL;
}

/* Every notify is seen: the ping-pong would hang otherwise. */
static void test_ping_pong(void)
{
    pthread_t t;
    pthread_create(&t, NULL, echo, NULL);
    for (uint32_t i = 0; i < ROUNDS; i++) {
        iso_signal_notify(&ping);
        while (iso_signal_peek(&pong) == i)
            iso_signal_wait(&pong, i, -1);
    }
    pthread_join(t, NULL);
    CHECK_EQ_INT(iso_signal_peek(&ping), ROUNDS);
    CHECK_EQ_INT(iso_signal_peek(&pong), ROUNDS);
}

static void test_deadline(void)
{
    iso_signal s = {0};
    double start = iso_now();
    CHECK_EQ_INT(iso_signal_wait(&s, 0, start + 0.02), -1);
    double waited = iso_now() - start;
    CHECK(waited >= 0.02);
    CHECK(waited < 1.0);
    CHECK_EQ_INT(iso_signal_wait(&s, 0, start - 1), -1); /* already past */
}

static void test_already_moved(void)
{
    iso_signal s = {0};
    iso_signal_notify(&s);
    CHECK_EQ_INT(iso_signal_wait(&s, 0, -1), 0); /* returns at once */
}

static void *late_notify(void *arg)
{
    struct timespec ts = {0, 5 * 1000 * 1000}; /* past the spin phase */
    nanosleep(&ts, NULL);
    iso_signal_notify(arg);
    return NULL;
}

static void test_sleeper_is_woken(void)
{
    iso_signal s = {0};
    pthread_t t;
    pthread_create(&t, NULL, late_notify, &s);
    CHECK_EQ_INT(iso_signal_wait(&s, 0, iso_now() + 10), 0);
    CHECK_EQ_INT(atomic_load(&s.sleepers), 0);
    pthread_join(t, NULL);
}

/* sleep: no spin, yet the same deadline and wake-up contract. */
static void test_sleep(void)
{
    iso_signal s = {0};
    double start = iso_now();
    CHECK_EQ_INT(iso_signal_sleep(&s, 0, start + 0.02), -1);
    CHECK(iso_now() - start >= 0.02);
    pthread_t t;
    pthread_create(&t, NULL, late_notify, &s);
    CHECK_EQ_INT(iso_signal_sleep(&s, 0, iso_now() + 10), 0);
    CHECK_EQ_INT(atomic_load(&s.sleepers), 0);
    pthread_join(t, NULL);
    CHECK_EQ_INT(iso_signal_sleep(&s, 0, -1), 0); /* already moved */
}

int main(void)
{
    RUN(test_ping_pong);
    RUN(test_deadline);
    RUN(test_already_moved);
    RUN(test_sleeper_is_woken);
    RUN(test_sleep);
    return CHECK_EXIT();
}
