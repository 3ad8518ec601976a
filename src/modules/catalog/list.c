/*
 * list.c - GET /api/v1/products: query parameters, cursors, the cache key,
 * and the search argument for each dialect (docs/internals/catalog.md).
 *
 * DESIGN: a list is keyset-paginated on (sort key, id), so a page never
 * repeats or skips a row that stayed put while the client paged, however
 * many rows were added before it. The cursor carries the sort, a hash of
 * the filters and the last row's (key, id); a cursor presented with
 * another sort or other filters would page through a different sequence
 * from an unrelated position, so it is refused (400) rather than
 * silently giving a wrong page.
 *
 * Full-text search never lets FTS syntax through: on SQLite every word of
 * ?q becomes an FTS5 string ("word", quotes doubled), so NEAR, AND, *, ^,
 * column filters and parentheses are only ever text; on PostgreSQL ?q goes
 * to plainto_tsquery, which has no operators at all. A ?q without any
 * letter or digit matches nothing on both.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/cache.h"
#include "keel/db.h"
#include "keel/uuid.h"

#include "catalog_int.h"

/* Lists answer from the cache: a page body is at most the cache's value
 * size. A page of long descriptions can pass it; such a page is rendered
 * into a larger buffer and not cached. */
#define LIST_BODY_MAX ((size_t)8 << 20)

static const char *const sort_names[CATALOG_SORT_COUNT] = {
    [CATALOG_SORT_CREATED_DESC] = "-created_at",
    [CATALOG_SORT_CREATED] = "created_at",
    [CATALOG_SORT_PRICE] = "price",
    [CATALOG_SORT_PRICE_DESC] = "-price",
    [CATALOG_SORT_NAME] = "name",
};

struct list_req {
    struct catalog_list l;
    const char *q;       /* ?q as given (trimmed), for the filter hash and the key */
    const char *cursor;  /* ?cursor as given */
    struct keel_buf big; /* an uncacheable page */
};

/* ---------------------------------------------------------- parameters */

/* Code points of s when it is valid UTF-8, else -1. */
static long utf8_chars(const char *s)
{
    size_t n = strlen(s), i = 0, k;
    long count = 0;

    while (i < n) {
        k = keel_utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0)
            return -1;
        i += k;
        count++;
    }
    return count;
}

/* Reads ?name: KEEL_OK with *out, KEEL_E_NOT_FOUND, or records the failure
 * (a field error for bad percent-encoding or NUL; out of memory in req->rc,
 * which list_params checks) and returns it. */
static keel_status query_param(struct keel_request *req, const char *name, const char **out)
{
    keel_status rc = keel_request_query(req, name, out);

    if (rc == KEEL_E_INVALID)
        keel_fail_field(req, name, "is not valid percent-encoded text");
    else if (rc == KEEL_E_NOMEM)
        keel_errorf(req, rc, "catalog: no memory for ?%s", name);
    return rc;
}

static void parse_limit(struct keel_request *req, struct catalog_list *l)
{
    const char *v;
    char *end;
    long long n;

    l->limit = CATALOG_LIST_DEFAULT;
    if (query_param(req, "limit", &v) != KEEL_OK)
        return;
    n = strtoll(v, &end, 10);
    if (*v < '0' || *v > '9' || *end || n < 1 || n > CATALOG_LIST_MAX)
        keel_fail_field(req, "limit", "must be an integer between 1 and 100");
    else
        l->limit = n;
}

static void parse_sort(struct keel_request *req, struct catalog_list *l)
{
    const char *v;
    unsigned i;

    l->sort = CATALOG_SORT_CREATED_DESC;
    if (query_param(req, "sort", &v) != KEEL_OK)
        return;
    for (i = 0; i < CATALOG_SORT_COUNT; i++)
        if (strcmp(v, sort_names[i]) == 0) {
            l->sort = (enum catalog_sort)i;
            return;
        }
    keel_fail_field(req, "sort", "must be one of: created_at, -created_at, price, -price, name");
}

/* A price bound: digits only (no sign, no spaces), at most 10^12. */
static void parse_price(struct keel_request *req, const char *name, int64_t *out)
{
    const char *v;
    size_t i, n;

    *out = -1;
    if (query_param(req, name, &v) != KEEL_OK)
        return;
    n = strlen(v);
    for (i = 0; i < n && v[i] >= '0' && v[i] <= '9'; i++)
        ;
    if (n == 0 || i != n || n > 13 || strtoll(v, NULL, 10) > CATALOG_PRICE_MAX) {
        keel_fail_field(req, name, "must be a non-negative integer of at most 1000000000000");
        return;
    }
    *out = strtoll(v, NULL, 10);
}

static void parse_category(struct keel_request *req, struct catalog_list *l)
{
    const char *v;
    long n;

    l->category = NULL;
    if (query_param(req, "category", &v) != KEEL_OK)
        return;
    n = utf8_chars(v);
    if (n < 1 || n > CATALOG_CATEGORY_MAX)
        keel_fail_field(req, "category", "must be 1 to 64 characters of valid UTF-8");
    else
        l->category = v;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* True when a word has something a tokenizer indexes: an ASCII letter or
 * digit, or any non-ASCII byte (letters of other scripts). */
static bool searchable(const char *w, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)w[i];

        if (c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
            return true;
    }
    return false;
}

/* The FTS5 query for q: each searchable word as a string, quotes doubled,
 * implicitly ANDed. NULL when no word is searchable. */
static char *fts5_query(struct keel_arena *a, const char *q)
{
    size_t n = strlen(q), i = 0, start, k, o = 0;
    char *out = keel_arena_alloc(a, 3 * n + 4);

    if (!out)
        return NULL;
    while (i < n) {
        while (i < n && is_space(q[i]))
            i++;
        start = i;
        while (i < n && !is_space(q[i]))
            i++;
        if (i == start || !searchable(q + start, i - start))
            continue;
        if (o)
            out[o++] = ' ';
        out[o++] = '"';
        for (k = start; k < i; k++) {
            if (q[k] == '"')
                out[o++] = '"';
            out[o++] = q[k];
        }
        out[o++] = '"';
    }
    out[o] = '\0';
    return o ? out : NULL;
}

static void parse_q(struct keel_request *req, struct list_req *lr)
{
    struct catalog_list *l = &lr->l;
    const char *v;
    size_t n;
    long cp;

    lr->q = NULL;
    if (query_param(req, "q", &v) != KEEL_OK)
        return;
    while (is_space(*v))
        v++;
    n = strlen(v);
    while (n > 0 && is_space(v[n - 1]))
        n--;
    if (n == 0) /* an empty search box: no filter */
        return;
    v = keel_arena_strndup(req->arena, v, n);
    if (!v) {
        keel_errorf(req, KEEL_E_NOMEM, "catalog: no memory for ?q");
        return;
    }
    cp = utf8_chars(v);
    if (cp < 0 || cp > CATALOG_Q_MAX) {
        keel_fail_field(req, "q", "must be at most 200 characters of valid UTF-8");
        return;
    }
    lr->q = v;
    if (!searchable(v, n)) {
        l->match_nothing = true;
        return;
    }
    /* Some word is searchable, so NULL here means out of memory. */
    l->search = catalog_pg ? v : fts5_query(req->arena, v);
    if (!l->search)
        keel_errorf(req, KEEL_E_NOMEM, "catalog: no memory for ?q");
}

/* The filters' hash, carried in cursors: hex of the first 8 bytes of
 * BLAKE2b over the canonical filter values. */
static void filter_tag(struct list_req *lr)
{
    struct catalog_list *l = &lr->l;
    unsigned char h[crypto_generichash_BYTES_MIN];
    crypto_generichash_state st;
    char num[48];

    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const unsigned char *)"q", 2);
    if (lr->q)
        crypto_generichash_update(&st, (const unsigned char *)lr->q, strlen(lr->q) + 1);
    crypto_generichash_update(&st, (const unsigned char *)"c", 2);
    if (l->category)
        crypto_generichash_update(&st, (const unsigned char *)l->category, strlen(l->category) + 1);
    snprintf(num, sizeof(num), "%lld|%lld", (long long)l->min_price, (long long)l->max_price);
    crypto_generichash_update(&st, (const unsigned char *)num, strlen(num));
    crypto_generichash_final(&st, h, sizeof(h));
    sodium_bin2hex(l->tag, sizeof(l->tag), h, CATALOG_TAG_LEN / 2);
}

/* ------------------------------------------------------------- cursors
 *
 * A cursor is base64url (no padding) of: one character for the sort
 * ('a' + enum catalog_sort), the 16-character filter tag, the 36-character
 * id of the last row shown, then that row's sort key (decimal for
 * created_at and price, the name's UTF-8 for name). */

#define CURSOR_HEAD (1 + CATALOG_TAG_LEN + 36)

keel_status catalog_cursor_encode(const struct catalog_list *l,
                                  const char *id,
                                  int64_t key_int,
                                  const char *key_text,
                                  size_t key_len,
                                  char *out,
                                  size_t cap)
{
    unsigned char raw[CURSOR_HEAD + CATALOG_KEY_TEXT_MAX + 24];
    size_t n = CURSOR_HEAD;

    raw[0] = (unsigned char)('a' + l->sort);
    memcpy(raw + 1, l->tag, CATALOG_TAG_LEN);
    memcpy(raw + 1 + CATALOG_TAG_LEN, id, 36);
    if (catalog_sort_is_int(l->sort)) {
        n += (size_t)snprintf((char *)raw + n, sizeof(raw) - n, "%lld", (long long)key_int);
    } else {
        if (key_len > CATALOG_KEY_TEXT_MAX)
            return KEEL_E_TOO_LARGE;
        memcpy(raw + n, key_text, key_len);
        n += key_len;
    }
    if (sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING) > cap)
        return KEEL_E_TOO_LARGE;
    sodium_bin2base64(out, cap, raw, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return KEEL_OK;
}

/* Reads the cursor's key into l; false when it is not one. */
static bool cursor_key(struct keel_request *req, struct catalog_list *l, const char *key, size_t n)
{
    char *end;

    if (catalog_sort_is_int(l->sort)) {
        if (n == 0 || n > 20 || (key[0] != '-' && (key[0] < '0' || key[0] > '9')))
            return false;
        l->after_int = strtoll(key, &end, 10);
        return end == key + n;
    }
    if (n > CATALOG_KEY_TEXT_MAX || memchr(key, '\0', n))
        return false;
    l->after_text = keel_arena_strndup(req->arena, key, n);
    if (!l->after_text) /* list_params answers the failure */
        return keel_errorf(req, KEEL_E_NOMEM, "catalog: no memory for the cursor") < 0;
    return utf8_chars(l->after_text) >= 0;
}

static void parse_cursor(struct keel_request *req, struct list_req *lr)
{
    struct catalog_list *l = &lr->l;
    unsigned char raw[CATALOG_CURSOR_MAX];
    const char *v;
    size_t n = 0;

    if (query_param(req, "cursor", &v) != KEEL_OK)
        return;
    if (strlen(v) >= CATALOG_CURSOR_MAX ||
        sodium_base642bin(raw, sizeof(raw) - 1, v, strlen(v), NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n < CURSOR_HEAD || raw[0] < 'a' || raw[0] >= 'a' + CATALOG_SORT_COUNT ||
        !keel_uuid_valid((const char *)raw + 1 + CATALOG_TAG_LEN, 36)) {
        keel_fail_field(req, "cursor", "is not a cursor this API issued");
        return;
    }
    raw[n] = '\0';
    if (raw[0] != 'a' + l->sort || memcmp(raw + 1, l->tag, CATALOG_TAG_LEN) != 0) {
        keel_fail_field(req, "cursor", "belongs to another sort or other filters");
        return;
    }
    memcpy(l->after_id, raw + 1 + CATALOG_TAG_LEN, 36);
    l->after_id[36] = '\0';
    for (char *p = l->after_id; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    if (!cursor_key(req, l, (const char *)raw + CURSOR_HEAD, n - CURSOR_HEAD)) {
        keel_fail_field(req, "cursor", "is not a cursor this API issued");
        return;
    }
    l->after = true;
    lr->cursor = v;
}

/* Parses and validates every parameter; a 400 lists each bad one. */
static keel_status list_params(struct keel_request *req, struct list_req *lr)
{
    struct catalog_list *l = &lr->l;

    parse_limit(req, l);
    parse_sort(req, l);
    parse_category(req, l);
    parse_price(req, "min_price", &l->min_price);
    parse_price(req, "max_price", &l->max_price);
    if (l->min_price >= 0 && l->max_price >= 0 && l->max_price < l->min_price)
        keel_fail_field(req, "max_price", "must not be less than min_price");
    parse_q(req, lr);
    if (req->rc == KEEL_E_NOMEM)
        return KEEL_E_NOMEM;
    if (req->nproblem_fields)
        return keel_fail(req, 400, "validation-error", "Invalid query.");
    filter_tag(lr);
    parse_cursor(req, lr);
    if (req->rc == KEEL_E_NOMEM)
        return KEEL_E_NOMEM;
    if (req->nproblem_fields)
        return keel_fail(req, 400, "validation-error", "Invalid query.");
    return KEEL_OK;
}

/* ----------------------------------------------------------- cache key */

/* Appends s with everything but [A-Za-z0-9._-] percent-encoded, so the
 * separators of the key cannot appear inside a value. */
static void key_escape(struct keel_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '.' ||
            c == '_' || c == '-')
            keel_buf_appendc(b, (char)c);
        else
            keel_buf_appendf(b, "%%%02X", c);
    }
}

/* "products:" and the canonical query string: the parsed values in a fixed
 * order, so equivalent URLs share an entry. A key longer than the cache
 * allows becomes "products:#" and a 128-bit hash of it. */
static const char *list_key(struct keel_request *req, const struct list_req *lr)
{
    const struct catalog_list *l = &lr->l;
    unsigned char h[16];
    char hex[33];
    struct keel_buf b;
    const char *key;

    keel_buf_init(&b, 16384);
    keel_buf_appendf(&b, "products:sort=%s&limit=%lld", sort_names[l->sort], (long long)l->limit);
    if (l->category) {
        keel_buf_appends(&b, "&category=");
        key_escape(&b, l->category);
    }
    if (l->min_price >= 0)
        keel_buf_appendf(&b, "&min_price=%lld", (long long)l->min_price);
    if (l->max_price >= 0)
        keel_buf_appendf(&b, "&max_price=%lld", (long long)l->max_price);
    if (lr->q) {
        keel_buf_appends(&b, "&q=");
        key_escape(&b, lr->q);
    }
    if (lr->cursor)
        keel_buf_appendf(&b, "&cursor=%s", lr->cursor);
    if (b.len <= KEEL_CACHE_KEY_MAX) {
        key = keel_arena_strndup(req->arena, b.data, b.len);
    } else {
        crypto_generichash(h, sizeof(h), (const unsigned char *)b.data, b.len, NULL, 0);
        sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
        key = keel_arena_sprintf(req->arena, "products:#%s", hex);
    }
    keel_buf_free(&b);
    return key;
}

/* -------------------------------------------------------------- handler */

static keel_status list_load(struct keel_db_conn *c, void *arg, struct keel_buf *out)
{
    struct list_req *lr = arg;

    return catalog_repo_list(c, &lr->l, out);
}

static keel_status answer(struct keel_request *req, const char *body, size_t len)
{
    keel_resp_start(req, 200, "application/json");
    return keel_buf_append(&req->resp.body, body, len) < 0 ? KEEL_E_NOMEM : KEEL_DONE;
}

static keel_status big_load(struct keel_db_conn *c, void *arg)
{
    struct list_req *lr = arg;

    keel_buf_reset(&lr->big);
    return catalog_repo_list(c, &lr->l, &lr->big);
}

static keel_status big_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct list_req *lr = arg;

    if (rc < 0)
        return catalog_db_failure(req, rc);
    return answer(req, lr->big.data, lr->big.len);
}

static void big_free(void *p)
{
    keel_buf_free(p);
}

static keel_status list_got(struct keel_request *req,
                            keel_status rc,
                            const char *value,
                            size_t len,
                            const char *source,
                            void *arg)
{
    struct list_req *lr = arg;

    (void)source;
    if (rc == KEEL_E_TOO_LARGE) {
        keel_buf_init(&lr->big, LIST_BODY_MAX);
        if (keel_arena_defer(req->arena, big_free, &lr->big) < 0)
            return KEEL_E_NOMEM;
        return keel_db_run(req, CATALOG_FILL_INTENT, big_load, big_done, lr);
    }
    if (rc < 0)
        return catalog_db_failure(req, rc);
    return answer(req, value, len);
}

keel_status catalog_products_list(struct keel_request *req)
{
    struct list_req *lr = keel_arena_calloc(req->arena, 1, sizeof(*lr));
    const char *key;
    keel_status rc;

    if (!lr)
        return KEEL_E_NOMEM;
    rc = list_params(req, lr);
    if (rc < 0)
        return rc;
    key = list_key(req, lr);
    if (!key)
        return KEEL_E_NOMEM;
    /* Fills read the primary: see CATALOG_FILL_INTENT. */
    return keel_cache_get(req, key, CATALOG_LIST_TTL_MS, CATALOG_FILL_INTENT, list_load, list_got,
                          lr);
}
