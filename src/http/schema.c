/* schema.c - placeholder, being written. */
#include "keel/http.h"
#include "keel/schema.h"

keel_status keel_schema_validate(struct keel_request *req,
                                 const struct keel_schema *s,
                                 const struct json_object *body)
{
    (void)req;
    (void)s;
    (void)body;
    return KEEL_E_INTERNAL;
}
