/*
 * validate.c - the VALIDATE phase (SPEC section 2, step 10): a JSON route
 * that declares a schema has its parsed body checked against it before the
 * handler runs; every problem becomes one per-field error of a 400
 * validation-error (src/http/schema.c). Handlers of such routes may then
 * rely on the types, bounds and formats the schema promises.
 */
#include "keel/http.h"
#include "keel/schema.h"

static keel_status validate_body(struct keel_request *req)
{
    const struct keel_route *r = req->route;
    keel_status rc;

    if (!r || !r->schema || (r->body != KEEL_BODY_JSON && r->body != KEEL_BODY_JSON_OPTIONAL))
        return KEEL_DECLINED;
    /* No body on an optional-body route: nothing to check. A body that was
     * sent but parsed to NULL is the document `null`, which is not an
     * object and is refused like any other non-object body. */
    if (!req->json && r->body == KEEL_BODY_JSON_OPTIONAL && req->body_len == 0)
        return KEEL_DECLINED;
    rc = keel_schema_validate(req, r->schema, req->json);
    return rc < 0 ? rc : KEEL_DECLINED;
}

const struct keel_middleware keel_mw_validate = {
    .name = "validate",
    .order = KEEL_MW_ORDER_VALIDATE,
    .phase = KEEL_PHASE_VALIDATE,
    .handler = validate_body,
};
