/*
 * err.c - the one table that maps a keel_status to its name, message and
 * HTTP status (STYLE.md section 6). The problem+json slug for each HTTP
 * status lives in src/http/problem.c.
 */
#include "keel/core.h"

struct status_info {
    const char *name;
    const char *message;
    int http;
};

/* Indexed by -rc for errors; flow codes are handled before the lookup. */
static const struct status_info errors[] = {
    [0] = {"KEEL_OK", "ok", 200},
    [1] = {"KEEL_E_NOMEM", "out of memory", 503},
    [2] = {"KEEL_E_INVALID", "invalid input", 400},
    [3] = {"KEEL_E_NOT_FOUND", "not found", 404},
    [4] = {"KEEL_E_CONFLICT", "conflict", 409},
    [5] = {"KEEL_E_AUTH", "authentication required", 401},
    [6] = {"KEEL_E_FORBIDDEN", "forbidden", 403},
    [7] = {"KEEL_E_TOO_LARGE", "too large", 413},
    [8] = {"KEEL_E_DB", "database error", 500},
    [9] = {"KEEL_E_UNAVAILABLE", "service unavailable", 503},
    [10] = {"KEEL_E_TIMEOUT", "timed out", 503},
    [11] = {"KEEL_E_INTERNAL", "internal error", 500},
};

static const struct status_info flow[] = {
    [KEEL_OK] = {"KEEL_OK", "ok", 200},
    [KEEL_DECLINED] = {"KEEL_DECLINED", "declined", 200},
    [KEEL_DONE] = {"KEEL_DONE", "done", 200},
    [KEEL_AGAIN] = {"KEEL_AGAIN", "again", 200},
};

static const struct status_info unknown = {"KEEL_E_UNKNOWN", "unknown status", 500};

static const struct status_info *info(keel_status rc)
{
    if (rc >= 0 && (size_t)rc < KEEL_ARRAY_LEN(flow))
        return &flow[rc];
    if (rc < 0 && rc >= KEEL_E_MIN)
        return &errors[-rc];
    return &unknown;
}

const char *keel_status_name(keel_status rc)
{
    return info(rc)->name;
}

const char *keel_strerror(keel_status rc)
{
    return info(rc)->message;
}

int keel_status_http(keel_status rc)
{
    return info(rc)->http;
}
