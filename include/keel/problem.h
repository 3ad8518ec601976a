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

#endif
