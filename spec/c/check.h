/*
 * A tiny test harness for the C unit tests: each failed check prints
 * file:line and what was expected, the run continues, and CHECK_EXIT()
 * makes main return non-zero when anything failed.
 *
 *   static void test_x(void) { CHECK(1 + 1 == 2); CHECK_EQ_INT(f(), 3); }
 *   int main(void) { RUN(test_x); return CHECK_EXIT(); }
 */
#ifndef ISO_CHECK_H
#define ISO_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int check_failed; /* failed checks in the whole run */
static int check_total;  /* checks evaluated */

#define CHECK_FAIL_(...)                                \
    do {                                                \
        check_failed++;                                 \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                   \
        fputc('\n', stderr);                            \
    } while (0)

#define CHECK(cond)                                 \
    do {                                            \
        check_total++;                              \
        if (!(cond))                                \
            CHECK_FAIL_("CHECK(%s) failed", #cond); \
    } while (0)

#define CHECK_EQ_INT(actual, expected)                                        \
    do {                                                                      \
        long long check_a_ = (long long)(actual);                             \
        long long check_e_ = (long long)(expected);                           \
        check_total++;                                                        \
        if (check_a_ != check_e_)                                             \
            CHECK_FAIL_("%s == %lld, expected %s == %lld", #actual, check_a_, \
                        #expected, check_e_);                                 \
    } while (0)

/* NUL-terminated strings; a NULL actual fails instead of crashing. */
#define CHECK_EQ_STR(actual, expected)                             \
    do {                                                           \
        const char *check_a_ = (actual);                           \
        const char *check_e_ = (expected);                         \
        check_total++;                                             \
        if (!check_a_ || strcmp(check_a_, check_e_) != 0)          \
            CHECK_FAIL_("%s == \"%s\", expected \"%s\"", #actual,  \
                        check_a_ ? check_a_ : "(null)", check_e_); \
    } while (0)

/* haystack contains needle */
#define CHECK_HAS_STR(haystack, needle)                                    \
    do {                                                                   \
        const char *check_h_ = (haystack);                                 \
        check_total++;                                                     \
        if (!check_h_ || !strstr(check_h_, (needle)))                      \
            CHECK_FAIL_("%s == \"%s\" does not contain \"%s\"", #haystack, \
                        check_h_ ? check_h_ : "(null)", (needle));         \
    } while (0)

#define RUN(test)                                                          \
    do {                                                                   \
        int check_before_ = check_failed;                                  \
        test();                                                            \
        printf("%s %s\n", check_failed == check_before_ ? "ok  " : "FAIL", \
               #test);                                                     \
        fflush(stdout);                                                    \
    } while (0)

/* Print the summary; evaluates to main's exit status. */
#define CHECK_EXIT()                                              \
    (printf("%d checks, %d failed\n", check_total, check_failed), \
     fflush(stdout), check_failed ? 1 : 0)

/* Write to fd as printf does: how a forked probe tells its parent what it
 * saw (tests that confine a child read it back and compare). */
__attribute__((format(printf, 2, 3))) static inline void
say(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdprintf(fd, fmt, ap);
    va_end(ap);
}

#endif
