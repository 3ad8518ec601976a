/*
 * util.c - checked allocation, assertion failure, string views and clocks.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "keel/core.h"

static _Noreturn void oom(size_t n)
{
    /* No logger here: the logger itself may need memory. */
    fprintf(stderr, "keel: out of memory allocating %zu bytes\n", n);
    abort();
}

void *keel_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p)
        oom(n);
    return p;
}

void *keel_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);

    if (!p)
        oom(count * n);
    return p;
}

void *keel_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (!q)
        oom(n);
    return q;
}

char *keel_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = keel_xmalloc(n);

    memcpy(p, s, n);
    return p;
}

_Noreturn void keel__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr,
            "{\"level\":\"error\",\"msg\":\"assertion failed\",\"expr\":\"%s\","
            "\"file\":\"%s\",\"line\":%d}\n",
            expr, file, line);
    abort();
}

size_t keel_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t need, i;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    if (cp >= 0xd800 && cp <= 0xdfff)
        return 0;
    return need;
}

bool keel_str_eq(struct keel_str a, const char *lit)
{
    size_t n = strlen(lit);

    return a.len == n && memcmp(a.p, lit, n) == 0;
}

bool keel_str_caseeq(struct keel_str a, const char *lit)
{
    size_t n = strlen(lit);

    return a.len == n && strncasecmp(a.p, lit, n) == 0;
}

unsigned keel_cpu_count(void)
{
    cpu_set_t set;
    long n = -1;

    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (unsigned)n;
}

struct timespec keel_deadline_in(clockid_t clock, unsigned ms)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

uint64_t keel_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t keel_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool keel_time_format(int64_t us, char out[KEEL_TIME_STRLEN])
{
    int64_t ms = us / 1000;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char day[24];

    out[0] = '\0';
    if (us < 0 || !gmtime_r(&t, &tm) || !strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm))
        return false;
    snprintf(out, KEEL_TIME_STRLEN, "%s.%03dZ", day, (int)(ms % 1000));
    return true;
}

void keel_mutex_init_fast(pthread_mutex_t *mu)
{
    pthread_mutexattr_t a;

    KEEL_ASSERT(pthread_mutexattr_init(&a) == 0);
    KEEL_ASSERT(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP) == 0);
    KEEL_ASSERT(pthread_mutex_init(mu, &a) == 0);
    pthread_mutexattr_destroy(&a);
}
