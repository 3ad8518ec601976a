/*
 * db_pg_types.c - the binary encoding of the PostgreSQL driver's parameters
 * and results (db_pg.c is the rest of the driver: connections, the
 * statement cache, running statements, transactions).
 *
 * Parameters: each struct keel_db_param becomes one entry of the
 * connection's bind arrays (values, lengths, formats, oids), in binary
 * where the type has a fixed layout (int8, bool, float8, bytea, uuid,
 * timestamptz) and as text of type "unknown" otherwise, so the server
 * infers the column's type as it would for a literal.
 *
 * Results: the driver asks for every column in binary (resultFormat 1);
 * the column readers decode by the column's type OID, so an integer costs a
 * byte swap and a timestamp needs no parser. text() of a non-text column
 * formats it as PostgreSQL's text output would, in per-column scratch
 * space kept in the connection.
 *
 * DESIGN: nothing here allocates on the hot path; the bind buffers and the
 * scratch space live in struct pg_conn and grow to the largest statement
 * seen. docs/internals/storage-postgres.md has the type table.
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/core.h"
#include "keel/db.h"
#include "keel/uuid.h"

#include "db_int.h"
#include "db_pg_int.h"

#define MAX_PARAMS 65535 /* the protocol's limit (int16 count) */

/* 2000-01-01T00:00:00Z, PostgreSQL's timestamp epoch, in Unix microseconds. */
#define PG_EPOCH_US INT64_C(946684800000000)
#define DAY_US      INT64_C(86400000000)

/* ============================================================= binding */

static void put_be(unsigned char *p, uint64_t v, unsigned n)
{
    while (n--) {
        p[n] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static keel_status grow_binds(struct pg_conn *c, unsigned n)
{
    unsigned cap = c->pcap ? c->pcap : 8;
    void *p;

    while (cap < n)
        cap *= 2;
#define GROW(field)                                                                                \
    do {                                                                                           \
        p = realloc((void *)c->field, cap * sizeof(*c->field));                                    \
        if (!p)                                                                                    \
            return KEEL_E_NOMEM;                                                                   \
        c->field = p;                                                                              \
    } while (0)
    GROW(values);
    GROW(lengths);
    GROW(formats);
    GROW(oids);
    GROW(bin);
#undef GROW
    c->pcap = cap;
    return KEEL_OK;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return ch - 'A' + 10; /* the text was validated */
}

/* A UUID parameter's text ends at its NUL or after len (KEEL_DB_UUID says
 * 36 whatever the string). */
static size_t uuid_len(const struct keel_db_param *p)
{
    return strnlen(p->v.s, p->len);
}

/* Text values in the text format must be NUL-terminated, and PostgreSQL
 * text cannot hold NUL: length-delimited text (KEEL_DB_TEXTN, and a UUID
 * that is neither canonical nor NUL-terminated within its length) is copied
 * into c->tbuf. */
static bool needs_copy(const struct keel_db_param *p)
{
    if (!p->v.s || p->len == SIZE_MAX)
        return false;
    if (p->type == KEEL_DB_T_UUID)
        return uuid_len(p) == p->len && !keel_uuid_valid(p->v.s, p->len);
    return p->type == KEEL_DB_T_TEXT;
}

static keel_status copy_texts(struct pg_conn *c, const struct keel_db_param *p, unsigned n)
{
    size_t need = 0, off = 0;
    unsigned i;

    for (i = 0; i < n; i++) {
        if (!needs_copy(&p[i]))
            continue;
        if (memchr(p[i].v.s, '\0', p[i].len)) {
            keel__db_pg_set_err(c, "text parameter contains a NUL byte");
            return KEEL_E_INVALID;
        }
        if (p[i].len > INT_MAX || need > SIZE_MAX / 2) {
            keel__db_pg_set_err(c, "text parameter too large");
            return KEEL_E_TOO_LARGE;
        }
        need += p[i].len + 1;
    }
    if (need > c->tcap) {
        char *t = realloc(c->tbuf, need);

        if (!t) {
            keel__db_pg_set_err(c, "out of memory binding parameters");
            return KEEL_E_NOMEM;
        }
        c->tbuf = t;
        c->tcap = need;
    }
    for (i = 0; i < n; i++) {
        if (!needs_copy(&p[i]))
            continue;
        memcpy(c->tbuf + off, p[i].v.s, p[i].len);
        c->tbuf[off + p[i].len] = '\0';
        c->values[i] = c->tbuf + off;
        off += p[i].len + 1;
    }
    return KEEL_OK;
}

/* Binary value of a fixed-size parameter, into c->bin[i]. */
static void bind_bin(struct pg_conn *c, unsigned i, Oid oid, uint64_t v, unsigned len)
{
    put_be(c->bin[i], v, len);
    c->values[i] = (const char *)c->bin[i];
    c->lengths[i] = (int)len;
    c->formats[i] = 1;
    c->oids[i] = oid;
}

static keel_status bind_uuid(struct pg_conn *c, unsigned i, const struct keel_db_param *p)
{
    unsigned k, o = 0;

    c->oids[i] = OID_UUID;
    if (!keel_uuid_valid(p->v.s, uuid_len(p))) {
        /* Sent as text: the server accepts the other spellings ({...}, no
         * hyphens) and rejects the rest (22P02, KEEL_E_INVALID). */
        if (!needs_copy(p))
            c->values[i] = p->v.s; /* NUL-terminated; else copy_texts */
        return KEEL_OK;
    }
    for (k = 0; k < 36; k++) {
        if (p->v.s[k] == '-')
            continue;
        if (o % 2 == 0)
            c->bin[i][o / 2] = (unsigned char)(hexval(p->v.s[k]) << 4);
        else
            c->bin[i][o / 2] |= (unsigned char)hexval(p->v.s[k]);
        o++;
    }
    c->values[i] = (const char *)c->bin[i];
    c->lengths[i] = 16;
    c->formats[i] = 1;
    return KEEL_OK;
}

static keel_status bind_one(struct pg_conn *c, unsigned i, const struct keel_db_param *p)
{
    uint64_t bits;

    c->values[i] = NULL;
    c->lengths[i] = 0;
    c->formats[i] = 0;
    c->oids[i] = 0;
    switch (p->type) {
    case KEEL_DB_T_NULL:
        return KEEL_OK;
    case KEEL_DB_T_TEXT:
        /* "unknown": the server gives it the type the context needs
         * (a varchar, uuid, enum or jsonb column), as a literal would. */
        if (p->v.s && p->len == SIZE_MAX)
            c->values[i] = p->v.s;
        return KEEL_OK;
    case KEEL_DB_T_INT64:
        bind_bin(c, i, OID_INT8, (uint64_t)p->v.i, 8);
        return KEEL_OK;
    case KEEL_DB_T_BOOL:
        bind_bin(c, i, OID_BOOL, p->v.t ? 1 : 0, 1);
        return KEEL_OK;
    case KEEL_DB_T_DOUBLE:
        memcpy(&bits, &p->v.d, sizeof(bits));
        bind_bin(c, i, OID_FLOAT8, bits, 8);
        return KEEL_OK;
    case KEEL_DB_T_TIME:
        /* INT64_MAX and INT64_MIN are 'infinity' and '-infinity' both ways. */
        if (p->v.i == INT64_MAX || p->v.i == INT64_MIN) {
            bind_bin(c, i, OID_TIMESTAMPTZ, (uint64_t)p->v.i, 8);
            return KEEL_OK;
        }
        if (p->v.i < INT64_MIN + PG_EPOCH_US) {
            keel__db_pg_set_err(c, "timestamp parameter out of range");
            return KEEL_E_INVALID;
        }
        bind_bin(c, i, OID_TIMESTAMPTZ, (uint64_t)(p->v.i - PG_EPOCH_US), 8);
        return KEEL_OK;
    case KEEL_DB_T_BYTES:
        if (p->len > INT_MAX) {
            keel__db_pg_set_err(c, "bytes parameter too large");
            return KEEL_E_TOO_LARGE;
        }
        /* A NULL pointer would mean SQL NULL to libpq: empty stays empty. */
        c->values[i] = p->v.b ? p->v.b : "";
        c->lengths[i] = (int)p->len;
        c->formats[i] = 1;
        c->oids[i] = OID_BYTEA;
        return KEEL_OK;
    case KEEL_DB_T_UUID:
        return p->v.s ? bind_uuid(c, i, p) : KEEL_OK;
    }
    keel__db_pg_set_err(c, "unknown parameter type");
    return KEEL_E_INVALID;
}

keel_status keel__db_pg_bind_params(struct pg_conn *c, const struct keel_db_param *p, unsigned n)
{
    keel_status rc;
    unsigned i;

    if (n > MAX_PARAMS || (n && !p)) {
        keel__db_pg_set_err(c, "bad parameter count");
        return KEEL_E_INVALID;
    }
    if (n > c->pcap) {
        rc = grow_binds(c, n);
        if (rc < 0) {
            keel__db_pg_set_err(c, "out of memory binding parameters");
            return rc;
        }
    }
    for (i = 0; i < n; i++) {
        rc = bind_one(c, i, &p[i]);
        if (rc < 0)
            return rc;
    }
    return copy_texts(c, p, n);
}

/* ============================================================== results */

/* The current row's value of col (binary), or NULL when there is no
 * current row or the value is NULL. */
static const unsigned char *cell(const struct keel_db_rows *r, unsigned col, int *len, Oid *oid)
{
    const struct pg_rows *rs = r->d;

    *len = 0;
    *oid = 0;
    if (!rs || !rs->res || rs->row < 0 || rs->row >= rs->nrows || col >= r->ncols ||
        PQgetisnull(rs->res, rs->row, (int)col))
        return NULL;
    *len = PQgetlength(rs->res, rs->row, (int)col);
    *oid = PQftype(rs->res, (int)col);
    return (const unsigned char *)PQgetvalue(rs->res, rs->row, (int)col);
}

bool keel__db_pg_col_is_null(const struct keel_db_rows *r, unsigned col)
{
    int len;
    Oid oid;

    return cell(r, col, &len, &oid) == NULL;
}

/* Scratch space for col's text form, valid until the next row. */
static char *scratch(struct pg_rows *rs, unsigned col, size_t need)
{
    struct pg_slot *s;

    if (col >= rs->nslots) {
        unsigned n = (unsigned)PQnfields(rs->res);

        s = realloc(rs->slots, n * sizeof(*s));
        if (!s)
            return NULL;
        memset(s + rs->nslots, 0, (n - rs->nslots) * sizeof(*s));
        rs->slots = s;
        rs->nslots = n;
    }
    s = &rs->slots[col];
    if (s->cap < need) {
        size_t cap = need < 64 ? 64 : need;
        char *p = realloc(s->p, cap);

        if (!p)
            return NULL;
        s->p = p;
        s->cap = cap;
    }
    return s->p;
}

static int64_t pg_time_to_unix(int64_t v)
{
    if (v == INT64_MAX || v == INT64_MIN) /* 'infinity', '-infinity' */
        return v;
    return v > INT64_MAX - PG_EPOCH_US ? INT64_MAX : v + PG_EPOCH_US;
}

static int64_t pg_date_to_unix(int32_t days)
{
    if (days == INT32_MAX)
        return INT64_MAX;
    if (days == INT32_MIN)
        return INT64_MIN;
    if (days > INT64_MAX / DAY_US - PG_EPOCH_US / DAY_US)
        return INT64_MAX;
    if (days < INT64_MIN / DAY_US + PG_EPOCH_US / DAY_US)
        return INT64_MIN;
    return (int64_t)days * DAY_US + PG_EPOCH_US;
}

/* ISO 8601 in UTC: 2024-05-01T12:30:00.250000Z (no fraction when zero; no
 * time for a date; no Z for a timestamp without time zone). */
static size_t format_time(char *buf, size_t cap, int64_t us, Oid oid)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    time_t t;
    struct tm tm;
    int n;

    if (us == INT64_MAX || us == INT64_MIN)
        return (size_t)snprintf(buf, cap, "%s", us == INT64_MAX ? "infinity" : "-infinity");
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    t = (time_t)secs;
    if (!gmtime_r(&t, &tm))
        return (size_t)snprintf(buf, cap, "?");
    if (oid == OID_DATE)
        return (size_t)snprintf(buf, cap, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                                tm.tm_mday);
    n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (frac)
        n += snprintf(buf + n, cap - (size_t)n, ".%06d", (int)frac);
    if (oid == OID_TIMESTAMPTZ)
        n += snprintf(buf + n, cap - (size_t)n, "Z");
    return (size_t)n;
}

/* The shortest %g form that reads back as the same float4 or float8, as
 * PostgreSQL prints them (6..9 and 15..17 significant digits). */
static size_t format_float(char *buf, size_t cap, double d, Oid oid)
{
    bool single = oid == OID_FLOAT4;
    int prec, n = 0;

    for (prec = single ? 6 : 15; prec <= (single ? 9 : 17); prec++) {
        n = snprintf(buf, cap, "%.*g", prec, d);
        if (isnan(d) || (single ? strtof(buf, NULL) == (float)d : strtod(buf, NULL) == d))
            break;
    }
    return (size_t)n;
}

/* numeric's binary form: ndigits, weight, sign, dscale (int16 each), then
 * ndigits base-10000 digits, the first one worth 10000^weight. Formatted as
 * PostgreSQL's numeric_out does. */
static const char *
numeric_text(struct pg_rows *rs, unsigned col, const unsigned char *v, int len, size_t *out_len)
{
    int ndigits, weight, sign, dscale, d;
    char *buf, *p;
    size_t need;

    if (len < 8)
        return NULL;
    ndigits = (int)get_be(v, 2);
    weight = (int16_t)get_be(v + 2, 2);
    sign = (int)get_be(v + 4, 2);
    dscale = (int)get_be(v + 6, 2);
    if (len < 8 + 2 * ndigits || dscale > 0x3fff)
        return NULL;
    if (sign == 0xC000 || sign == 0xD000 || sign == 0xF000) {
        *out_len = sign == 0xC000 ? 3 : sign == 0xD000 ? 8 : 9;
        return sign == 0xC000 ? "NaN" : sign == 0xD000 ? "Infinity" : "-Infinity";
    }
    need = 2 + (size_t)(weight >= 0 ? weight + 1 : 1) * 4 + 1 + (size_t)dscale + 4 + 1;
    buf = scratch(rs, col, need);
    if (!buf)
        return NULL;
    p = buf;
    if (sign == 0x4000)
        *p++ = '-';
    if (weight < 0) {
        *p++ = '0';
    } else {
        for (d = 0; d <= weight; d++) {
            int dig = d < ndigits ? (int)get_be(v + 8 + 2 * (size_t)d, 2) : 0;

            p += sprintf(p, d == 0 ? "%d" : "%04d", dig);
        }
    }
    if (dscale > 0) {
        char *end;

        *p++ = '.';
        end = p + dscale;
        for (d = weight + 1; p < end; d++) {
            int dig = d >= 0 && d < ndigits ? (int)get_be(v + 8 + 2 * (size_t)d, 2) : 0;

            p += sprintf(p, "%04d", dig);
        }
        p = end; /* the last group may carry digits beyond the scale */
    }
    *p = '\0';
    *out_len = (size_t)(p - buf);
    return buf;
}

static bool is_int_oid(Oid oid)
{
    return oid == OID_INT2 || oid == OID_INT4 || oid == OID_INT8 || oid == OID_OID;
}

static int64_t int_value(const unsigned char *v, int len, Oid oid)
{
    if (oid == OID_INT2 && len == 2)
        return (int16_t)get_be(v, 2);
    if (oid == OID_INT4 && len == 4)
        return (int32_t)get_be(v, 4);
    if (oid == OID_OID && len == 4)
        return (int64_t)get_be(v, 4);
    if (oid == OID_INT8 && len == 8)
        return (int64_t)get_be(v, 8);
    return 0;
}

static double float_value(const unsigned char *v, int len, Oid oid)
{
    uint64_t bits;
    uint32_t b32;
    double d;
    float f;

    if (oid == OID_FLOAT8 && len == 8) {
        bits = get_be(v, 8);
        memcpy(&d, &bits, sizeof(d));
        return d;
    }
    if (oid == OID_FLOAT4 && len == 4) {
        b32 = (uint32_t)get_be(v, 4);
        memcpy(&f, &b32, sizeof(f));
        return f;
    }
    return 0;
}

/* Microseconds since the Unix epoch of a timestamp, date or integer. */
static int64_t time_value(const unsigned char *v, int len, Oid oid)
{
    if ((oid == OID_TIMESTAMPTZ || oid == OID_TIMESTAMP) && len == 8)
        return pg_time_to_unix((int64_t)get_be(v, 8));
    if (oid == OID_DATE && len == 4)
        return pg_date_to_unix((int32_t)get_be(v, 4));
    return int_value(v, len, oid);
}

/* The text form of a fixed-layout binary value, in col's scratch space. */
static const char *
format_value(struct pg_rows *rs, unsigned col, const unsigned char *v, int vlen, Oid oid, size_t *n)
{
    char *buf = scratch(rs, col, 64);
    uint64_t lsn;

    if (!buf)
        return NULL;
    switch (oid) {
    case OID_FLOAT4:
    case OID_FLOAT8:
        *n = format_float(buf, 64, float_value(v, vlen, oid), oid);
        break;
    case OID_UUID:
        if (vlen != 16)
            return NULL;
        keel_uuid_format(v, buf);
        *n = KEEL_UUID_STRLEN;
        break;
    case OID_PG_LSN:
        lsn = vlen == 8 ? get_be(v, 8) : 0;
        *n = (size_t)snprintf(buf, 64, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
        break;
    case OID_DATE:
    case OID_TIMESTAMP:
    case OID_TIMESTAMPTZ:
        *n = format_time(buf, 64, time_value(v, vlen, oid), oid);
        break;
    default:
        *n = (size_t)snprintf(buf, 64, "%" PRId64, int_value(v, vlen, oid));
        break;
    }
    return buf;
}

static bool fixed_oid(Oid oid)
{
    return is_int_oid(oid) || oid == OID_FLOAT4 || oid == OID_FLOAT8 || oid == OID_UUID ||
           oid == OID_PG_LSN || oid == OID_DATE || oid == OID_TIMESTAMP || oid == OID_TIMESTAMPTZ;
}

const char *keel__db_pg_col_text(const struct keel_db_rows *r, unsigned col, size_t *len)
{
    const unsigned char *v;
    const char *t;
    size_t n = 0;
    Oid oid;
    int vlen;

    if (len)
        *len = 0;
    v = cell(r, col, &vlen, &oid);
    if (!v)
        return NULL;
    if (oid == OID_NUMERIC) {
        t = numeric_text(r->d, col, v, vlen, &n);
    } else if (oid == OID_BOOL) {
        t = vlen == 1 && v[0] ? "true" : "false";
        n = strlen(t);
    } else if (oid == OID_JSONB && vlen >= 1 && v[0] == 1) {
        t = (const char *)v + 1; /* version byte 1, then the JSON text */
        n = (size_t)vlen - 1;
    } else if (fixed_oid(oid)) {
        t = format_value(r->d, col, v, vlen, oid, &n);
    } else {
        /* text, varchar, char, name, json, xml, enums, citext: binary is
         * the text itself (libpq adds a NUL). */
        t = (const char *)v;
        n = (size_t)vlen;
    }
    if (t && len)
        *len = n;
    return t;
}

/* Text-like columns (text, varchar, numeric) read as numbers by parsing. */
static bool texty(Oid oid)
{
    return oid == OID_TEXT || oid == OID_VARCHAR || oid == OID_BPCHAR || oid == OID_NUMERIC;
}

int64_t keel__db_pg_col_int64(const struct keel_db_rows *r, unsigned col)
{
    const unsigned char *v;
    const char *t;
    double d;
    Oid oid;
    int len;

    v = cell(r, col, &len, &oid);
    if (!v)
        return 0;
    if (is_int_oid(oid))
        return int_value(v, len, oid);
    if (oid == OID_BOOL)
        return len == 1 && v[0];
    if (oid == OID_TIMESTAMPTZ || oid == OID_TIMESTAMP || oid == OID_DATE)
        return time_value(v, len, oid);
    if (oid == OID_PG_LSN && len == 8)
        return (int64_t)get_be(v, 8);
    if (oid == OID_FLOAT4 || oid == OID_FLOAT8) {
        d = float_value(v, len, oid);
        /* Out of range (and NaN) would be undefined behaviour to convert. */
        return d >= -9223372036854775808.0 && d < 9223372036854775808.0 ? (int64_t)d : 0;
    }
    if (texty(oid)) {
        t = keel__db_pg_col_text(r, col, NULL);
        return t ? strtoll(t, NULL, 10) : 0;
    }
    return 0;
}

double keel__db_pg_col_dbl(const struct keel_db_rows *r, unsigned col)
{
    const unsigned char *v;
    const char *t;
    Oid oid;
    int len;

    v = cell(r, col, &len, &oid);
    if (!v)
        return 0;
    if (oid == OID_FLOAT4 || oid == OID_FLOAT8)
        return float_value(v, len, oid);
    if (is_int_oid(oid))
        return (double)int_value(v, len, oid);
    if (texty(oid)) {
        t = keel__db_pg_col_text(r, col, NULL);
        return t ? strtod(t, NULL) : 0;
    }
    return 0;
}

bool keel__db_pg_col_bool(const struct keel_db_rows *r, unsigned col)
{
    const unsigned char *v;
    Oid oid;
    int len;

    v = cell(r, col, &len, &oid);
    if (!v)
        return false;
    if (oid == OID_BOOL)
        return len == 1 && v[0];
    if (is_int_oid(oid))
        return int_value(v, len, oid) != 0;
    if (texty(oid))
        return len > 0 && strchr("tTyY1", v[0]) != NULL;
    return false;
}

/* The value's bytes as the server sent them: bytea and text as they are,
 * a uuid as its 16 bytes, other types in PostgreSQL's binary format. */
const void *keel__db_pg_col_bytes(const struct keel_db_rows *r, unsigned col, size_t *len)
{
    const unsigned char *v;
    Oid oid;
    int n;

    v = cell(r, col, &n, &oid);
    *len = (size_t)n;
    return v;
}

int64_t keel__db_pg_col_time(const struct keel_db_rows *r, unsigned col)
{
    const unsigned char *v;
    Oid oid;
    int len;

    v = cell(r, col, &len, &oid);
    return v ? time_value(v, len, oid) : 0;
}
