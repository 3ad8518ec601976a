/*
 * problem.h - RFC 9457 problem details: the slug and title of each HTTP
 * status Keel answers, and the renderer the error sanitizer uses.
 */
#ifndef KEEL_PROBLEM_H
#define KEEL_PROBLEM_H

#include "keel/http.h"

/* Default slug ("not-found") and title ("Not Found") of an HTTP status;
 * unknown 4xx map to malformed-request, unknown 5xx to internal-error. */
const char *keel_problem_slug(int status);
const char *keel_problem_title(int status);

/* Replaces req's response with the problem+json document for its recorded
 * error (req->problem_* or req->rc). Internal details never appear in it. */
keel_status keel_problem_render(struct keel_request *req);

/* Records on req the answer to rc, a failed storage call (the rc of
 * keel_db_run's done callback, of a cache load, of a transaction), and
 * returns the status for the handler to return, as keel_fail does:
 *
 *   KEEL_E_UNAVAILABLE,   503 service-unavailable with Retry-After: 1 (a
 *   KEEL_E_TIMEOUT        failover or a full pool passes in seconds)
 *   KEEL_E_NOT_FOUND      404 not-found with `not_found` as its detail
 *                         ("No product with this id."); NULL: "not found"
 *   any other rc          rc's own answer (keel_status_http: 409 conflict,
 *                         503 for KEEL_E_NOMEM, 500 for KEEL_E_DB and for
 *                         an rc that is not an error), detail keel_strerror
 *
 * `what` names the store in the logged internal detail ("catalog
 * database" gives "catalog database: timed out"); only `not_found` ever
 * reaches the client. Callers with other words for a case (auth's 409
 * detail, the orders module's "every other error is ours: 500") handle
 * it before calling. Loop thread. */
keel_status keel_fail_storage(struct keel_request *req,
                              keel_status rc,
                              const char *what,
                              const char *not_found);

#endif
