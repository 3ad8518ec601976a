/*
 * schema.c - request body validation against a route's schema (see
 * include/keel/schema.h for the rules and the exact messages).
 *
 * DESIGN: one depth-first walk over the schema and the parsed json-c tree.
 * The field path of the value being checked lives in a fixed buffer in the
 * walk state, extended on the way down and cut back on the way up, so a
 * valid body costs no allocation at all; only a problem copies its path and
 * message into the request arena (keel_fail_field). Nesting is bounded by
 * the body parser (KEEL_JSON_MAX_DEPTH), the path by KEEL_SCHEMA_MAX_PATH
 * and the number of errors by KEEL_SCHEMA_MAX_ERRORS, after which the walk
 * stops: a hostile body (a million bad array elements, thousands of unknown
 * keys) costs at most one pass and 32 small allocations.
 *
 * Messages are fixed text, with numbers and enumeration values that come
 * from the schema only: echoing submitted values would reflect passwords
 * and tokens into responses and logs. Unknown member names do appear in
 * paths (that is what the client must fix); they are bounded and the
 * problem renderer escapes them.
 */
#include "keel/schema.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "keel/http.h"
#include "keel/uuid.h"

/* Path bytes before truncation; "..." and the NUL still fit after them. */
#define PATH_CAP (KEEL_SCHEMA_MAX_PATH - 3)

struct walk {
    struct keel_request *req;
    /* The request's problem state before the walk, put back when the walk
     * fails hard, so a 500 or 503 is not rendered as the 400 it began. */
    unsigned nfields0;
    int status0;
    const char *slug0;
    const char *detail0;
    unsigned nerrors; /* errors recorded by this walk */
    bool full;        /* KEEL_SCHEMA_MAX_ERRORS reached: stop */
    keel_status rc;   /* KEEL_E_NOMEM or KEEL_E_INTERNAL: stop */
    bool cut;         /* the path was truncated; longer paths stay as they are */
    size_t len;
    char path[KEEL_SCHEMA_MAX_PATH + 1];
};

/* A saved path position, restored when a member or element is done. */
struct mark {
    size_t len;
    bool cut;
};

/* ----------------------------------------------------------------- paths */

static struct mark path_mark(const struct walk *w)
{
    return (struct mark){w->len, w->cut};
}

static void path_reset(struct walk *w, struct mark m)
{
    w->len = m.len;
    w->cut = m.cut;
    w->path[w->len] = '\0';
}

/* Appends n bytes of s. What does not fit is dropped at a UTF-8 boundary
 * (paths are valid UTF-8: schema names or keys the parser checked) and
 * "..." marks the cut; nothing more is appended below that point. */
static void path_append(struct walk *w, const char *s, size_t n)
{
    if (w->cut)
        return;
    if (n > PATH_CAP - w->len) {
        n = PATH_CAP - w->len;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
        memcpy(w->path + w->len, s, n);
        memcpy(w->path + w->len + n, "...", 4);
        w->len += n + 3;
        w->cut = true;
        return;
    }
    memcpy(w->path + w->len, s, n);
    w->len += n;
    w->path[w->len] = '\0';
}

/* "name" at the top level, "parent.name" below it. */
static void path_key(struct walk *w, const char *name)
{
    if (w->len)
        path_append(w, ".", 1);
    path_append(w, name, strlen(name));
}

/* "parent[i]". */
static void path_index(struct walk *w, size_t i)
{
    char b[32];
    int n = snprintf(b, sizeof(b), "[%zu]", i);

    path_append(w, b, (size_t)n);
}

/* ---------------------------------------------------------------- errors */

static bool stopped(const struct walk *w)
{
    return w->full || w->rc < 0;
}

/* Records `msg` for the current path, unless the walk has stopped. The
 * error past the cap is not recorded; it only stops the walk and says, in
 * the public detail, that the list is incomplete. */
static void report(struct walk *w, const char *msg)
{
    if (stopped(w))
        return;
    if (w->nerrors == KEEL_SCHEMA_MAX_ERRORS) {
        char *detail = keel_arena_sprintf(w->req->arena,
                                          "The request body failed validation; only the first "
                                          "%d problems are listed.",
                                          KEEL_SCHEMA_MAX_ERRORS);

        w->full = true;
        if (!detail)
            w->rc = KEEL_E_NOMEM;
        else
            w->req->problem_detail = detail;
        return;
    }
    if (keel_fail_field(w->req, w->path, msg) == KEEL_E_NOMEM) {
        w->rc = KEEL_E_NOMEM;
        return;
    }
    w->nerrors++;
}

/* Reports "must <verb> at <edge> <n><unit>", unit pluralized: "must be at
 * least 3 characters", "must have at most 1 item", "must be at most 100".
 * The number comes from the schema; keel_fail_field copies the text. */
static void
report_bound(struct walk *w, const char *verb, const char *edge, int64_t n, const char *unit)
{
    char msg[128];

    snprintf(msg, sizeof(msg), "must %s at %s %lld%s%s", verb, edge, (long long)n, unit,
             *unit && n != 1 ? "s" : "");
    report(w, msg);
}

/* A malformed schema is the programmer's error: it is logged, not shown. */
static void schema_bug(struct walk *w, const char *why)
{
    if (w->rc < 0)
        return;
    w->rc = keel_errorf(w->req, KEEL_E_INTERNAL, "schema: %s at \"%s\"", why, w->path);
}

/* --------------------------------------------------------------- strings */

/* Code points of valid UTF-8 (the parser has checked it): every byte that
 * is not a continuation byte starts one. */
static size_t utf8_count(const char *s, size_t n)
{
    size_t i, count = 0;

    for (i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            count++;
    return count;
}

/* The domain part: a dot inside, none at either end, no empty label. */
static bool domain_ok(const char *d, size_t n)
{
    size_t i;

    if (n < 3 || d[0] == '.' || d[n - 1] == '.' || !memchr(d, '.', n))
        return false;
    for (i = 1; i < n; i++)
        if (d[i] == '.' && d[i - 1] == '.')
            return false;
    return true;
}

static bool email_ok(const char *s, size_t n)
{
    const char *at;
    size_t i;

    if (n == 0 || n > 254)
        return false;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return false;
    at = memchr(s, '@', n);
    if (!at || at == s || memchr(at + 1, '@', n - (size_t)(at + 1 - s)))
        return false;
    return domain_ok(at + 1, n - (size_t)(at + 1 - s));
}

/* The shape of an ISO 4217 code; whether it exists is the module's call. */
static bool currency_ok(const char *s, size_t n)
{
    size_t i;

    if (n != 3)
        return false;
    for (i = 0; i < n; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return true;
}

/* Reports a format mismatch; returns true when it did. */
static bool check_format(struct walk *w, enum keel_schema_format fmt, const char *s, size_t n)
{
    switch (fmt) {
    case KEEL_FMT_NONE:
        return false;
    case KEEL_FMT_EMAIL:
        if (email_ok(s, n))
            return false;
        report(w, "must be a valid email address");
        return true;
    case KEEL_FMT_UUID:
        if (keel_uuid_valid(s, n))
            return false;
        report(w, "must be a valid UUID");
        return true;
    case KEEL_FMT_CURRENCY:
        if (currency_ok(s, n))
            return false;
        report(w, "must be a three-letter currency code");
        return true;
    }
    schema_bug(w, "unknown string format");
    return true;
}

/* The allowed values come from the schema, so listing them is safe; a list
 * that does not fit a short message is summarized. */
static void report_enum(struct walk *w, const char *const *vals)
{
    char msg[256];
    size_t len = (size_t)snprintf(msg, sizeof(msg), "must be one of: ");
    size_t i;
    int k;

    for (i = 0; vals[i]; i++) {
        k = snprintf(msg + len, sizeof(msg) - len, "%s%s", i ? ", " : "", vals[i]);
        if (k < 0 || (size_t)k >= sizeof(msg) - len) {
            report(w, "must be one of the allowed values");
            return;
        }
        len += (size_t)k;
    }
    report(w, msg);
}

static void check_enum(struct walk *w, const char *const *vals, const char *s, size_t n)
{
    size_t i;

    if (!vals[0]) {
        schema_bug(w, "empty enumeration");
        return;
    }
    for (i = 0; vals[i]; i++)
        if (strlen(vals[i]) == n && memcmp(vals[i], s, n) == 0)
            return;
    report_enum(w, vals);
}

/* Reports a count (code points, elements) outside f's min..max, where max 0
 * means no upper limit; `verb` and `unit` make "must have at least 2 items"
 * (unit " item").
 * Returns true when it reported (or found the bounds malformed). */
static bool check_count(
    struct walk *w, const struct keel_schema_field *f, size_t n, const char *verb, const char *unit)
{
    if (f->max < 0 || (f->max && f->min > f->max)) {
        schema_bug(w, "min > max");
        return true;
    }
    if (f->min > 0 && (uint64_t)n < (uint64_t)f->min) {
        report_bound(w, verb, "least", f->min, unit);
        return true;
    }
    if (f->max && (uint64_t)n > (uint64_t)f->max) {
        report_bound(w, verb, "most", f->max, unit);
        return true;
    }
    return false;
}

/* Type, NUL bytes (C string APIs would see a shorter value than the one
 * checked here), length, format, enumeration: the first failure only. */
static void check_string(struct walk *w, const struct keel_schema_field *f, struct json_object *v)
{
    const char *s;
    size_t n;

    if (json_object_get_type(v) != json_type_string) {
        report(w, "must be a string");
        return;
    }
    s = json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    if (memchr(s, '\0', n)) {
        report(w, "must not contain NUL characters");
        return;
    }
    if (check_count(w, f, utf8_count(s, n), "be", " character"))
        return;
    if (check_format(w, f->format, s, n))
        return;
    if (f->enum_values)
        check_enum(w, f->enum_values, s, n);
}

/* ---------------------------------------------------------------- values */

/* Integers only: json-c types 1.0 and 1e2 as doubles, "1" as a string. An
 * integer above INT64_MAX reads as INT64_MAX through get_int64 but keeps a
 * larger uint64 reading, which is how the overflow is told apart. */
static void check_int(struct walk *w, const struct keel_schema_field *f, struct json_object *v)
{
    int64_t n;
    bool over;

    if (json_object_get_type(v) != json_type_int) {
        report(w, "must be an integer");
        return;
    }
    n = json_object_get_int64(v);
    over = n == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX;
    if (f->min == 0 && f->max == 0) {
        if (over)
            report(w, "is out of range");
        return;
    }
    if (f->min > f->max) {
        schema_bug(w, "min > max");
        return;
    }
    if (over || n > f->max)
        report_bound(w, "be", "most", f->max, "");
    else if (n < f->min)
        report_bound(w, "be", "least", f->min, "");
}

static void check_value(struct walk *w, const struct keel_schema_field *f, struct json_object *v);
static void check_object(struct walk *w, const struct keel_schema *s, const struct json_object *o);

/* The count, then each element under "path[i]" until the walk stops. */
static void check_array(struct walk *w, const struct keel_schema_field *f, struct json_object *v)
{
    struct mark m = path_mark(w);
    size_t i, n;

    if (!f->items) {
        schema_bug(w, "array without items");
        return;
    }
    if (json_object_get_type(v) != json_type_array) {
        report(w, "must be an array");
        return;
    }
    n = json_object_array_length(v);
    if (check_count(w, f, n, "have", " item"))
        return;
    for (i = 0; i < n && !stopped(w); i++) {
        path_index(w, i);
        check_value(w, f->items, json_object_array_get_idx(v, i));
        path_reset(w, m);
    }
}

/* One value at the current path; v is NULL for JSON null. */
static void check_value(struct walk *w, const struct keel_schema_field *f, struct json_object *v)
{
    if (!v) {
        if (!(f->flags & KEEL_SF_NULLABLE))
            report(w, "must not be null");
        return;
    }
    switch (f->type) {
    case KEEL_SCHEMA_STRING:
        check_string(w, f, v);
        return;
    case KEEL_SCHEMA_INT:
        check_int(w, f, v);
        return;
    case KEEL_SCHEMA_BOOL:
        if (json_object_get_type(v) != json_type_boolean)
            report(w, "must be a boolean");
        return;
    case KEEL_SCHEMA_OBJECT:
        if (!f->object)
            schema_bug(w, "object without schema");
        else
            check_object(w, f->object, v);
        return;
    case KEEL_SCHEMA_ARRAY:
        check_array(w, f, v);
        return;
    }
    schema_bug(w, "unknown field type");
}

/* --------------------------------------------------------------- objects */

static const struct keel_schema_field *find_field(const struct keel_schema *s, const char *name)
{
    unsigned i;

    for (i = 0; i < s->nfields; i++)
        if (strcmp(s->fields[i].name, name) == 0)
            return &s->fields[i];
    return NULL;
}

/* A declared field of object o: presence, then read-only, then its value. */
static void
check_member(struct walk *w, const struct keel_schema_field *f, const struct json_object *o)
{
    struct mark m = path_mark(w);
    struct json_object *v;

    path_key(w, f->name);
    if (!json_object_object_get_ex(o, f->name, &v)) {
        if (f->flags & KEEL_SF_REQUIRED)
            report(w, "is required");
    } else if (f->flags & KEEL_SF_READ_ONLY) {
        /* Known but not writable: refusing it (rather than dropping it)
         * tells the client its update of "role" or "id" did not happen. */
        report(w, "is read-only");
    } else {
        check_value(w, f, v);
    }
    path_reset(w, m);
}

/* Members the schema does not declare (mass assignment, OWASP API3), in
 * document order; the loop ends with the walk, so thousands of unknown
 * keys cost no more than KEEL_SCHEMA_MAX_ERRORS lookups past the cap. */
static void check_unknown(struct walk *w, const struct keel_schema *s, const struct json_object *o)
{
    struct mark m = path_mark(w);

    json_object_object_foreach(o, key, val)
    {
        (void)val;
        if (stopped(w))
            break;
        if (find_field(s, key))
            continue;
        path_key(w, key);
        report(w, "is not allowed");
        path_reset(w, m);
    }
}

/* An object at the current path against schema s. */
static void check_object(struct walk *w, const struct keel_schema *s, const struct json_object *o)
{
    unsigned i;

    if (json_object_get_type(o) != json_type_object) {
        report(w, "must be an object");
        return;
    }
    /* Any member present is either a writable field, or read-only or
     * unknown and reported as such: an empty object is the only way to
     * present no writable field without another error. */
    if (s->require_one && json_object_object_length(o) == 0)
        report(w, "must contain at least one field");
    for (i = 0; i < s->nfields && !stopped(w); i++)
        check_member(w, &s->fields[i], o);
    check_unknown(w, s, o);
}

keel_status keel_schema_validate(struct keel_request *req,
                                 const struct keel_schema *s,
                                 const struct json_object *body)
{
    struct walk w;

    w.req = req;
    w.nfields0 = req->nproblem_fields;
    w.status0 = req->problem_status;
    w.slug0 = req->problem_slug;
    w.detail0 = req->problem_detail;
    w.nerrors = 0;
    w.full = false;
    w.rc = KEEL_OK;
    w.cut = false;
    w.len = 0;
    w.path[0] = '\0';
    check_object(&w, s, body);
    if (w.rc < 0) {
        req->nproblem_fields = w.nfields0;
        req->problem_status = w.status0;
        req->problem_slug = w.slug0;
        req->problem_detail = w.detail0;
        req->rc = w.rc;
        return w.rc;
    }
    return w.nerrors ? KEEL_E_INVALID : KEEL_OK;
}
