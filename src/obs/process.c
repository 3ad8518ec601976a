/*
 * process.c - the standard process_* metrics, read from /proc/self at scrape
 * time (the names and meanings of the Prometheus client libraries, so stock
 * dashboards and alerts work unchanged).
 *
 * DESIGN
 * Nothing is sampled in the background: a scrape reads /proc/self/stat once
 * for CPU time and memory, counts /proc/self/fd and asks getrlimit, which is a
 * few syscalls every scrape interval. The start time needs the boot time from
 * /proc/stat and never changes, so it is computed once. A value that cannot
 * be read (no procfs, a sandbox) is left out rather than reported as 0, which
 * Prometheus would take for a real measurement.
 */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "keel/metrics.h"

struct proc_stat {
    double cpu_seconds;
    double start_ticks;
    double vsize;
    double rss_pages;
};

static pthread_once_t g_boot_once = PTHREAD_ONCE_INIT;
static double g_boot_time = -1; /* seconds since the epoch, -1 if unknown */

static void read_boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[256];
    long long btime;

    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "btime %lld", &btime) == 1) {
            g_boot_time = (double)btime;
            break;
        }
    }
    fclose(f);
}

/* Parses the fields of /proc/self/stat after the command name, which is in
 * parentheses and may itself contain spaces and parentheses. */
static bool read_stat(struct proc_stat *st)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    size_t n;
    const char *p;
    unsigned long long utime, stime, start, vsize;
    long long rss;
    long tck = sysconf(_SC_CLK_TCK);

    if (!f)
        return false;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    /* Fields 3.. of proc(5): state ppid pgrp session tty_nr tpgid flags minflt
     * cminflt majflt cmajflt utime(14) stime(15) cutime cstime priority nice
     * num_threads itrealvalue starttime(22) vsize(23) rss(24). */
    if (!p || tck <= 0 ||
        sscanf(p + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d"
               " %llu %llu %lld",
               &utime, &stime, &start, &vsize, &rss) != 5)
        return false;
    st->cpu_seconds = (double)(utime + stime) / (double)tck;
    st->start_ticks = (double)start / (double)tck;
    st->vsize = (double)vsize;
    st->rss_pages = (double)rss;
    return true;
}

/* Open descriptors, not counting the one opendir() itself uses. */
static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

static keel_status
put_metric(struct keel_buf *out, const char *name, const char *type, const char *help, double v)
{
    /* Values here are integers or tick counts / CLK_TCK, so %.15g is exact
     * enough and never prints an exponent for realistic sizes. */
    if (isinf(v))
        return keel_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s +Inf\n", name, help, name,
                                type, name);
    return keel_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.15g\n", name, help, name, type,
                            name, v);
}

keel_status keel_metrics_render_process(struct keel_buf *out)
{
    struct proc_stat st;
    struct rlimit rl;
    long fds = count_fds();
    long page = sysconf(_SC_PAGESIZE);
    keel_status rc = KEEL_OK;

    pthread_once(&g_boot_once, read_boot_time);
    if (read_stat(&st)) {
        rc = put_metric(out, "process_cpu_seconds_total", "counter",
                        "Total user and system CPU time spent in seconds.", st.cpu_seconds);
        if (rc == KEEL_OK && page > 0)
            rc = put_metric(out, "process_resident_memory_bytes", "gauge",
                            "Resident memory size in bytes.", st.rss_pages * (double)page);
        if (rc == KEEL_OK)
            rc = put_metric(out, "process_virtual_memory_bytes", "gauge",
                            "Virtual memory size in bytes.", st.vsize);
        if (rc == KEEL_OK && g_boot_time >= 0)
            rc = put_metric(out, "process_start_time_seconds", "gauge",
                            "Start time of the process since unix epoch in seconds.",
                            g_boot_time + st.start_ticks);
    }
    if (rc == KEEL_OK && fds >= 0)
        rc = put_metric(out, "process_open_fds", "gauge", "Number of open file descriptors.",
                        (double)fds);
    if (rc == KEEL_OK && getrlimit(RLIMIT_NOFILE, &rl) == 0)
        rc = put_metric(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                        rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
    return rc;
}
