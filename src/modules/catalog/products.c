/*
 * products.c - the catalog module (issue 5; SPEC section 3, "Catalog and
 * inventory"): its routes as data, body schemas, and the handlers of one
 * product: read (cached, ETag, If-None-Match), create, patch (If-Match),
 * delete and stock adjustments. Lists are in list.c, SQL in repo.c.
 *
 * DESIGN: reads go through the cache (keel/cache.h) whose value for a
 * product is its ETag line and its JSON body, rendered on the storage-lane thread
 * by the loader, so a hit costs no rendering at all and the ETag always
 * names the body it travels with. Every write runs in one transaction
 * through keel_db_run and invalidates "product:<id>" and the "products:*"
 * namespace in its done callback, which runs after the commit: a read
 * between the commit and the invalidation can only fill the cache with
 * the new state, never the old one.
 */
#include <json-c/json.h>
#include <string.h>

#include "keel/cache.h"
#include "keel/catalog.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/module.h"
#include "keel/problem.h"
#include "keel/schema.h"
#include "keel/uuid.h"

#include "catalog_int.h"

#define CACHE_CONTROL "public, max-age=60"

/* ------------------------------------------------------------- module */

static keel_status init(const struct keel_config *cfg)
{
    struct keel_db *db = keel_db_default();

    (void)cfg;
    if (!db)
        return KEEL_E_INVALID;
    catalog_pg = strcmp(keel_db_dialect(db), "postgres") == 0;
    return KEEL_OK;
}

/* Schemas are tables: one field per line. */
/* clang-format off */
#define READ_ONLY(n) {.name = n, .type = KEEL_SCHEMA_STRING, .flags = KEEL_SF_READ_ONLY}
#define F_STR(n, fl, lo, hi) \
    {.name = n, .type = KEEL_SCHEMA_STRING, .flags = fl, .min = lo, .max = hi}
#define F_INT(n, fl, lo, hi) \
    {.name = n, .type = KEEL_SCHEMA_INT, .flags = fl, .min = lo, .max = hi}
#define F_CURRENCY(fl) \
    {.name = "currency", .type = KEEL_SCHEMA_STRING, .flags = fl, .format = KEEL_FMT_CURRENCY}

#define F_REQ KEEL_SF_REQUIRED

static const struct keel_schema_field create_fields[] = {
    F_STR("sku", F_REQ, 1, CATALOG_SKU_MAX),
    F_STR("name", F_REQ, 1, CATALOG_NAME_MAX),
    F_STR("description", 0, 0, CATALOG_DESCRIPTION_MAX),
    F_INT("price_cents", F_REQ, 0, CATALOG_PRICE_MAX),
    F_CURRENCY(F_REQ),
    F_STR("category", 0, 0, CATALOG_CATEGORY_MAX),
    F_INT("stock", 0, 0, CATALOG_STOCK_MAX),
    READ_ONLY("id"),
    READ_ONLY("version"),
    READ_ONLY("created_at"),
    READ_ONLY("updated_at"),
};
static const struct keel_schema create_schema = {create_fields, KEEL_ARRAY_LEN(create_fields),
                                                 false};

/* The same fields, none required, at least one present. Stock changes go
 * through /stock, where they are relative and atomic. */
static const struct keel_schema_field patch_fields[] = {
    F_STR("sku", 0, 1, CATALOG_SKU_MAX),
    F_STR("name", 0, 1, CATALOG_NAME_MAX),
    F_STR("description", 0, 0, CATALOG_DESCRIPTION_MAX),
    F_INT("price_cents", 0, 0, CATALOG_PRICE_MAX),
    F_CURRENCY(0),
    F_STR("category", 0, 0, CATALOG_CATEGORY_MAX),
    READ_ONLY("stock"),
    READ_ONLY("id"),
    READ_ONLY("version"),
    READ_ONLY("created_at"),
    READ_ONLY("updated_at"),
};
static const struct keel_schema patch_schema = {patch_fields, KEEL_ARRAY_LEN(patch_fields), true};

static const struct keel_schema_field stock_fields[] = {
    F_INT("delta", F_REQ, -CATALOG_DELTA_MAX, CATALOG_DELTA_MAX),
};
/* clang-format on */
static const struct keel_schema stock_schema = {stock_fields, 1, false};

/* The body of a single product can be long (descriptions), but it is not
 * gzipped: its ETag is strong, and a strong validator names one sequence
 * of bytes, which a content coding would change (RFC 9110 section 8.8.3). */
#define ITEM_FLAGS KEEL_ROUTE_NO_COMPRESS

static const struct keel_route routes[] = {
    {.method = KEEL_HTTP_GET, .pattern = "/api/v1/products", .handler = catalog_products_list},
    {.method = KEEL_HTTP_POST,
     .pattern = "/api/v1/products",
     .handler = catalog_product_create,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "products:write",
     .schema = &create_schema,
     .body = KEEL_BODY_JSON,
     .flags = ITEM_FLAGS},
    {.method = KEEL_HTTP_GET,
     .pattern = "/api/v1/products/{id:uuid}",
     .handler = catalog_product_get,
     .flags = ITEM_FLAGS},
    {.method = KEEL_HTTP_PATCH,
     .pattern = "/api/v1/products/{id:uuid}",
     .handler = catalog_product_patch,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "products:write",
     .schema = &patch_schema,
     .body = KEEL_BODY_JSON,
     .flags = ITEM_FLAGS},
    {.method = KEEL_HTTP_DELETE,
     .pattern = "/api/v1/products/{id:uuid}",
     .handler = catalog_product_delete,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "products:delete"},
    {.method = KEEL_HTTP_POST,
     .pattern = "/api/v1/products/{id:uuid}/stock",
     .handler = catalog_product_stock,
     .auth = KEEL_AUTH_REQUIRED,
     .permission = "inventory:write",
     .schema = &stock_schema,
     .body = KEEL_BODY_JSON},
};

extern const struct keel_command catalog_cmd_seed; /* cmd_seed.c */

const struct keel_module keel_module_catalog = {
    .name = "catalog",
    .init = init,
    .routes = routes,
    .nroutes = KEEL_ARRAY_LEN(routes),
    .commands = &catalog_cmd_seed,
    .ncommands = 1,
};

/* ------------------------------------------------------------ helpers */

keel_status catalog_db_failure(struct keel_request *req, keel_status rc)
{
    return keel_fail_storage(req, rc, "catalog database", "No product with this id.");
}

/* The {id} of the path, lowercased (ids are stored lowercase). */
static bool path_id(struct keel_request *req, char out[37])
{
    struct keel_str s = keel_request_param(req, "id");

    if (s.len != 36)
        return false;
    for (size_t i = 0; i < 36; i++)
        out[i] = (char)(s.p[i] >= 'A' && s.p[i] <= 'F' ? s.p[i] - 'A' + 'a' : s.p[i]);
    out[36] = '\0';
    return true;
}

/* Drops the product's entry and every cached list, on every instance;
 * then the request ends with the response already written. */
static keel_status invalidate(struct keel_request *req, const char *id)
{
    return keel_catalog_invalidate(req, &id, 1, KEEL_DONE);
}

/* Splits a cache entry into its ETag (copied to the arena) and body. */
static bool entry_split(struct keel_request *req,
                        const char *v,
                        size_t len,
                        const char **etag,
                        const char **body,
                        size_t *blen)
{
    const char *nl = memchr(v, '\n', len);

    if (!nl)
        return false;
    *etag = keel_arena_strndup(req->arena, v, (size_t)(nl - v));
    *body = nl + 1;
    *blen = len - (size_t)(nl - v) - 1;
    return *etag != NULL;
}

/* Answers `status` with a cached-form product: its ETag and body. */
static keel_status answer_entry(struct keel_request *req, int status, const char *v, size_t len)
{
    const char *etag, *body;
    size_t blen;

    if (!entry_split(req, v, len, &etag, &body, &blen))
        return keel_errorf(req, KEEL_E_INTERNAL, "catalog: malformed cache entry");
    keel_resp_start(req, status, "application/json");
    keel_resp_set_header(req, "ETag", etag);
    return keel_buf_append(&req->resp.body, body, blen) < 0 ? KEEL_E_NOMEM : KEEL_OK;
}

/* ------------------------------------------------------------ ETags
 *
 * Our ETags are "v<version>". A list header (If-Match, If-None-Match;
 * RFC 9110 section 13.1) is "*" or entity tags separated by commas, each
 * perhaps W/-prefixed; several header lines form one list. */

struct etag_set {
    bool present; /* the header was sent */
    bool any;     /* "*" */
    unsigned n;
    int64_t versions[CATALOG_IF_MATCH_MAX];
};

/* The version named by one entity tag, or -1 for a tag that is not ours. */
static int64_t tag_version(const char *p, size_t n)
{
    int64_t v = 0;
    size_t i;

    if (n < 4 || n > 21 || p[0] != '"' || p[1] != 'v' || p[n - 1] != '"')
        return -1;
    for (i = 2; i < n - 1; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static void etag_list(struct etag_set *s, const char *p, size_t len, bool weak_ok)
{
    const char *end = p + len, *tok;
    bool weak;
    int64_t v;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        tok = p;
        while (p < end && *p != ',')
            p++;
        len = (size_t)(p - tok);
        while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
            len--;
        if (len == 1 && tok[0] == '*') {
            s->any = true;
            continue;
        }
        weak = len > 2 && tok[0] == 'W' && tok[1] == '/';
        if (weak && !weak_ok) /* strong comparison: a weak tag never matches */
            continue;
        v = weak ? tag_version(tok + 2, len - 2) : tag_version(tok, len);
        if (v >= 0 && s->n < CATALOG_IF_MATCH_MAX)
            s->versions[s->n++] = v;
    }
}

/* Collects every `name` header of the request. */
static void
etag_headers(const struct keel_request *req, const char *name, bool weak_ok, struct etag_set *s)
{
    unsigned i;

    memset(s, 0, sizeof(*s));
    for (i = 0; i < req->nheaders; i++) {
        if (!keel_str_caseeq(req->headers[i].name, name))
            continue;
        s->present = true;
        etag_list(s, req->headers[i].value.p, req->headers[i].value.len, weak_ok);
    }
}

static bool etag_matches(const struct etag_set *s, const char *etag)
{
    int64_t v = tag_version(etag, strlen(etag));
    unsigned i;

    if (s->any)
        return true;
    for (i = 0; i < s->n; i++)
        if (s->versions[i] == v)
            return true;
    return false;
}

/* ------------------------------------------------------------ GET one */

struct one {
    char id[37];
};

static keel_status get_load(struct keel_db_conn *c, void *arg, struct keel_buf *out)
{
    return catalog_repo_get(c, ((struct one *)arg)->id, out);
}

static keel_status get_done(struct keel_request *req,
                            keel_status rc,
                            const char *value,
                            size_t len,
                            const char *source,
                            void *arg)
{
    struct etag_set inm;

    (void)source;
    (void)arg;
    if (rc < 0)
        return catalog_db_failure(req, rc);
    rc = answer_entry(req, 200, value, len);
    if (rc < 0)
        return rc;
    keel_resp_set_header(req, "Cache-Control", CACHE_CONTROL);
    /* If-None-Match uses the weak comparison (RFC 9110 section 13.1.2). */
    etag_headers(req, "If-None-Match", true, &inm);
    if (inm.present && etag_matches(&inm, keel_resp_get_header(req, "ETag"))) {
        keel_buf_reset(&req->resp.body);
        req->resp.status = 304;
        req->resp.content_type = NULL;
    }
    return KEEL_DONE;
}

keel_status catalog_product_get(struct keel_request *req)
{
    struct one *o = keel_arena_calloc(req->arena, 1, sizeof(*o));
    const char *key;

    if (!o || !path_id(req, o->id))
        return KEEL_E_NOMEM;
    /* In the arena: the cache may keep the key while the load runs. */
    key = keel_arena_sprintf(req->arena, CATALOG_ITEM_KEY, o->id);
    if (!key)
        return KEEL_E_NOMEM;
    return keel_cache_get(req, key, CATALOG_ITEM_TTL_MS, CATALOG_FILL_INTENT, get_load, get_done,
                          o);
}

/* ----------------------------------------------------- body checks */

/* SKUs appear in URLs, CSV exports and labels: a conservative alphabet. */
static bool sku_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || ((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z') || *s == '.' ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    return true;
}

/* The string member `name` of the (validated) body, or NULL when absent. */
static const char *body_str(const struct keel_request *req, const char *name)
{
    struct json_object *v;

    if (!json_object_object_get_ex(req->json, name, &v) ||
        !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static bool body_int(const struct keel_request *req, const char *name, int64_t *out)
{
    struct json_object *v;

    if (!json_object_object_get_ex(req->json, name, &v) || !json_object_is_type(v, json_type_int))
        return false;
    *out = json_object_get_int64(v);
    return true;
}

/* What the schema cannot say about sku and name; records field errors. */
static keel_status check_text(struct keel_request *req, const char *sku, const char *name)
{
    if (sku && !sku_ok(sku))
        keel_fail_field(req, "sku", "must contain only letters, digits, '.', '_' and '-'");
    if (name && blank(name))
        keel_fail_field(req, "name", "must not be blank");
    return req->nproblem_fields ? KEEL_E_INVALID : KEEL_OK;
}

static struct keel_str str_of(const char *s)
{
    return (struct keel_str){s ? s : "", s ? strlen(s) : 0};
}

static keel_status sku_taken(struct keel_request *req)
{
    return keel_fail(req, 409, "conflict", "A product with this sku exists already.");
}

/* ------------------------------------------------------------- create */

static keel_status create_tx(struct keel_db_conn *c, void *arg)
{
    return catalog_repo_insert(c, arg);
}

static keel_status create_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct product *p = arg;
    struct keel_buf entry;
    const char *location;

    if (rc == KEEL_E_CONFLICT)
        return sku_taken(req);
    if (rc < 0)
        return catalog_db_failure(req, rc);
    keel_buf_init(&entry, KEEL_CACHE_VALUE_MAX);
    rc = catalog_product_entry(&entry, p);
    if (rc == KEEL_OK)
        rc = answer_entry(req, 201, entry.data, entry.len);
    keel_buf_free(&entry);
    location = keel_arena_sprintf(req->arena, "/api/v1/products/%s", p->id);
    if (rc < 0 || !location)
        return rc < 0 ? rc : KEEL_E_NOMEM;
    keel_resp_set_header(req, "Location", location);
    return invalidate(req, p->id);
}

keel_status catalog_product_create(struct keel_request *req)
{
    struct product *p = keel_arena_calloc(req->arena, 1, sizeof(*p));
    const char *sku = body_str(req, "sku"), *name = body_str(req, "name");

    if (!p)
        return KEEL_E_NOMEM;
    if (check_text(req, sku, name) < 0)
        return KEEL_E_INVALID;
    keel_uuid_v7(p->id);
    p->sku = str_of(sku);
    p->name = str_of(name);
    p->description = str_of(body_str(req, "description"));
    p->currency = str_of(body_str(req, "currency"));
    p->category = str_of(body_str(req, "category"));
    body_int(req, "price_cents", &p->price_cents);
    if (!body_int(req, "stock", &p->stock))
        p->stock = 0;
    p->version = 1;
    p->created_us = p->updated_us = keel_wall_ms() * 1000;
    return keel_db_run(req, KEEL_DB_WRITE, create_tx, create_done, p);
}

/* -------------------------------------------------------------- patch */

static void patch_free(void *p)
{
    keel_buf_free(p);
}

static keel_status patch_tx(struct keel_db_conn *c, void *arg)
{
    return catalog_repo_update(c, arg);
}

static keel_status patch_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct product_patch *pt = arg;

    if (rc == KEEL_E_CONFLICT)
        return sku_taken(req);
    if (rc < 0)
        return catalog_db_failure(req, rc);
    if (pt->outcome == CATALOG_ABSENT)
        return catalog_db_failure(req, KEEL_E_NOT_FOUND);
    if (pt->outcome == CATALOG_PRECONDITION)
        return keel_fail(req, 412, "precondition-failed",
                         "The product changed: If-Match names another version.");
    rc = answer_entry(req, 200, pt->entry.data, pt->entry.len);
    return rc < 0 ? rc : invalidate(req, pt->id);
}

/* If-Match into the patch: "*", or the versions its strong tags name. */
static void patch_if_match(const struct keel_request *req, struct product_patch *pt)
{
    struct etag_set s;

    etag_headers(req, "If-Match", false, &s);
    pt->if_match = s.present;
    pt->if_match_any = s.any;
    pt->nversions = s.n;
    memcpy(pt->versions, s.versions, sizeof(pt->versions));
}

keel_status catalog_product_patch(struct keel_request *req)
{
    struct product_patch *pt = keel_arena_calloc(req->arena, 1, sizeof(*pt));

    if (!pt || !path_id(req, pt->id))
        return KEEL_E_NOMEM;
    pt->sku = body_str(req, "sku");
    pt->name = body_str(req, "name");
    if (check_text(req, pt->sku, pt->name) < 0)
        return KEEL_E_INVALID;
    pt->description = body_str(req, "description");
    pt->currency = body_str(req, "currency");
    pt->category = body_str(req, "category");
    pt->has_price = body_int(req, "price_cents", &pt->price_cents);
    pt->now_us = keel_wall_ms() * 1000;
    patch_if_match(req, pt);
    keel_buf_init(&pt->entry, KEEL_CACHE_VALUE_MAX);
    if (keel_arena_defer(req->arena, patch_free, &pt->entry) < 0)
        return KEEL_E_NOMEM;
    return keel_db_run(req, KEEL_DB_WRITE, patch_tx, patch_done, pt);
}

/* ------------------------------------------------------------- delete */

struct removal {
    char id[37];
    enum catalog_outcome outcome;
};

static keel_status delete_tx(struct keel_db_conn *c, void *arg)
{
    struct removal *d = arg;

    return catalog_repo_delete(c, d->id, &d->outcome);
}

static keel_status delete_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct removal *d = arg;

    if (rc == KEEL_OK && d->outcome == CATALOG_ABSENT)
        rc = KEEL_E_NOT_FOUND;
    if (rc < 0)
        return catalog_db_failure(req, rc);
    keel_resp_start(req, 204, NULL);
    return invalidate(req, d->id);
}

keel_status catalog_product_delete(struct keel_request *req)
{
    struct removal *d = keel_arena_calloc(req->arena, 1, sizeof(*d));

    if (!d || !path_id(req, d->id))
        return KEEL_E_NOMEM;
    return keel_db_run(req, KEEL_DB_WRITE, delete_tx, delete_done, d);
}

/* -------------------------------------------------------------- stock */

static keel_status stock_tx(struct keel_db_conn *c, void *arg)
{
    return catalog_repo_stock(c, arg);
}

static keel_status stock_done(struct keel_request *req, keel_status rc, void *arg)
{
    struct stock_change *s = arg;
    struct keel_json j;
    char *etag;

    if (rc < 0)
        return catalog_db_failure(req, rc);
    switch (s->outcome) {
    case CATALOG_ABSENT:
        return catalog_db_failure(req, KEEL_E_NOT_FOUND);
    case CATALOG_OUT_OF_STOCK:
        return keel_fail(req, 409, "out-of-stock", "Not enough stock: stock cannot go below 0.");
    case CATALOG_STOCK_OVERFLOW:
        return keel_fail(req, 409, "conflict", "Stock cannot exceed 1000000000.");
    default:
        break;
    }
    etag = keel_arena_alloc(req->arena, 32);
    if (!etag)
        return KEEL_E_NOMEM;
    catalog_etag(s->version, etag, 32);
    keel_resp_start(req, 200, "application/json");
    keel_resp_set_header(req, "ETag", etag);
    keel_json_begin(&j, &req->resp.body);
    keel_json_obj_open(&j);
    keel_json_key(&j, "id");
    keel_json_str(&j, s->id);
    keel_json_key(&j, "stock");
    keel_json_int(&j, s->stock);
    keel_json_key(&j, "version");
    keel_json_int(&j, s->version);
    keel_json_obj_close(&j);
    if (keel_json_end(&j) < 0)
        return KEEL_E_NOMEM;
    return invalidate(req, s->id);
}

keel_status catalog_product_stock(struct keel_request *req)
{
    struct stock_change *s = keel_arena_calloc(req->arena, 1, sizeof(*s));

    if (!s || !path_id(req, s->id))
        return KEEL_E_NOMEM;
    body_int(req, "delta", &s->delta);
    if (s->delta == 0)
        return keel_fail_field(req, "delta", "must not be 0");
    s->now_us = keel_wall_ms() * 1000;
    return keel_db_run(req, KEEL_DB_WRITE, stock_tx, stock_done, s);
}
