/*
 * outbox.c - the transactional outbox (include/keel/events.h;
 * docs/internals/events.md "Outbox"): one row per message, written in the
 * transaction of the event it announces, so a message exists exactly when
 * its event committed. Publishing the rows is the jobs issue's.
 */
#include "keel/db.h"
#include "keel/events.h"

#include "events_int.h"

keel_status keel_outbox_put(
    struct keel_db_conn *c, const char *topic, const char *key, const char *payload, size_t len)
{
    struct keel_db_param p[] = {KEEL_DB_TEXT(topic), KEEL_DB_TEXT(key), KEEL_DB_TEXTN(payload, len),
                                KEEL_DB_INT(keel__events_now_us())};

    return keel_db_exec_deferred(c,
                                 "INSERT INTO outbox (topic, key, payload, created_us)"
                                 " VALUES ($1, $2, $3, $4)",
                                 p, KEEL_ARRAY_LEN(p));
}
