/*
 * db_util.c - helpers over the public storage API (include/keel/db.h,
 * section "one row") for patterns the repositories kept writing out by
 * hand. Nothing here reaches behind keel_db_query and keel_db_next, so it
 * works the same on every driver.
 */
#include "keel/db.h"

keel_status keel_db_query_one(struct keel_db_conn *c,
                              const char *sql,
                              const struct keel_db_param *params,
                              unsigned nparams,
                              keel_db_row_fn fn,
                              void *arg)
{
    struct keel_db_rows *r;
    keel_status rc;

    rc = keel_db_query(c, sql, params, nparams, &r);
    if (rc < 0)
        return rc;
    rc = keel_db_next(r);
    if (rc == KEEL_OK && fn)
        rc = fn(r, arg);
    else if (rc == KEEL_DONE)
        rc = KEEL_E_NOT_FOUND;
    keel_db_rows_free(r);
    return rc;
}
