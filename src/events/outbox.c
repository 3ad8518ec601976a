/*
 * outbox.c - the transactional outbox (include/keel/events.h;
 * docs/internals/events.md "Outbox"): one row per message, written in the
 * transaction of the event it announces, so a message exists exactly when
 * its event committed. The job engine's relay turns the rows into jobs
 * (src/jobs); a commit that wrote rows wakes it: in this process through
 * the hook it registered, in the others by NOTIFY keel_outbox
 * (PostgreSQL delivers it at commit, once per transaction).
 */
#include <stdatomic.h>
#include <string.h>

#include "keel/db.h"
#include "keel/events.h"

#include "events_int.h"

static void (*_Atomic on_commit)(void);

void keel_outbox_on_commit(void (*fn)(void))
{
    atomic_store(&on_commit, fn);
}

static void committed(void *arg)
{
    void (*fn)(void) = atomic_load(&on_commit);

    (void)arg;
    if (fn)
        fn();
}

keel_status keel_outbox_put(
    struct keel_db_conn *c, const char *topic, const char *key, const char *payload, size_t len)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(topic), KEEL_DB_TEXT(key), KEEL_DB_TEXTN(payload, len),
                                KEEL_DB_INT(keel__events_now_us())};
    keel_status rc = keel_db_exec_deferred(c,
                                           "INSERT INTO outbox (topic, key, payload, created_us)"
                                           " VALUES ($1, $2, $3, $4)",
                                           p, KEEL_ARRAY_LEN(p));

    if (rc < 0)
        return rc;
    rc = keel_db_after_commit(c, committed, NULL);
    if (rc != KEEL_OK || strcmp(keel_db_conn_dialect(c), "postgres") != 0)
        return rc < 0 ? rc : KEEL_OK;
    return keel_db_exec_deferred(c, "SELECT pg_notify('keel_outbox', '')", NULL, 0);
}
