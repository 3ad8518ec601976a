/*
 * compress.c - gzip for responses of 1 KiB or more when the client accepts
 * it (SPEC section 2, step 5). Runs as the last filter, so it compresses
 * the final body; HEAD responses are compressed too, so their
 * Content-Length matches the GET they stand for.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "keel/http.h"

#define MIN_BYTES 1024

static bool compressible(const char *ct)
{
    return ct && (strncmp(ct, "application/json", 16) == 0 ||
                  strncmp(ct, "application/problem+json", 24) == 0 ||
                  strncmp(ct, "text/", 5) == 0 || strncmp(ct, "application/javascript", 22) == 0);
}

/* True when Accept-Encoding lists gzip without q=0 (RFC 9110 12.5.3). */
static bool accepts_gzip(const struct keel_request *req)
{
    const struct keel_header *h = keel_request_header(req, "Accept-Encoding");
    const char *p, *end, *tok, *q;

    if (!h)
        return false;
    p = h->value.p;
    end = p + h->value.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            p++;
        tok = p;
        while (p < end && *p != ',')
            p++;
        if ((size_t)(p - tok) >= 4 && strncasecmp(tok, "gzip", 4) == 0 &&
            (tok + 4 == p || tok[4] == ';' || tok[4] == ' ')) {
            q = memchr(tok, '=', (size_t)(p - tok));
            return !q || strtod(q + 1, NULL) > 0;
        }
    }
    return false;
}

static void compress_body(struct keel_request *req)
{
    struct keel_response *r = &req->resp;
    struct keel_buf out;
    z_stream zs = {0};
    uLong bound;

    if (r->stream_fn || r->body.len < MIN_BYTES || !compressible(r->content_type) ||
        keel_resp_get_header(req, "Content-Encoding") ||
        (req->route && (req->route->flags & KEEL_ROUTE_NO_COMPRESS)))
        return;
    keel_resp_header(req, "Vary", "Accept-Encoding");
    if (!accepts_gzip(req))
        return;
    if (deflateInit2(&zs, 5, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return;
    bound = deflateBound(&zs, r->body.len);
    keel_buf_init(&out, bound + 64);
    if (keel_buf_reserve(&out, bound) == KEEL_OK) {
        zs.next_in = (Bytef *)r->body.data;
        zs.avail_in = (uInt)r->body.len;
        zs.next_out = (Bytef *)out.data;
        zs.avail_out = (uInt)bound;
        if (deflate(&zs, Z_FINISH) == Z_STREAM_END) {
            out.len = zs.total_out;
            keel_buf_free(&r->body);
            r->body = out;
            out.data = NULL;
            keel_resp_header(req, "Content-Encoding", "gzip");
        }
    }
    deflateEnd(&zs);
    keel_buf_free(&out);
}

const struct keel_middleware keel_mw_compress = {
    .name = "compress",
    .order = KEEL_MW_ORDER_COMPRESS,
    .filter = compress_body,
};
