/*
 * cmd_projections.c - the orders module's subcommand `keel projections
 * rebuild orders`: rebuilds the orders read model (orders, order_items)
 * from the event store in one transaction (issue 5;
 * docs/internals/orders.md "Rebuild").
 *
 * It may run while `keel serve` is serving: readers keep seeing the old
 * read model until the rebuild commits, then the new one; commands wait
 * for it (SQLite: the database's single write lock; PostgreSQL: an
 * EXCLUSIVE lock on events, which blocks appends but not reads), up to
 * their statement timeout. On success it prints one JSON line
 * {"projection":"orders","events":N,"orders":M,"items":K} on standard
 * output. Exit codes: 0 rebuilt, 1 failure (nothing changed), 64 usage,
 * 78 bad configuration.
 */
#include <stdio.h>
#include <string.h>

#include "keel/cmd.h"
#include "keel/db.h"
#include "keel/log.h"
#include "keel/migrate.h"
#include "keel/module.h"

#include "orders_int.h"

static void projections_help(FILE *f)
{
    fprintf(f, "Usage: keel projections rebuild orders [OPTIONS]\n\n"
               "Deletes the orders read model and replays every order event into it, in one\n"
               "transaction. Safe while 'keel serve' runs. Takes the options of 'keel serve';\n"
               "KEEL_DATABASE_URL selects the database.\n");
}

static int rebuild_orders(const struct keel_config *cfg)
{
    struct orders_rebuild_stats st = {0};
    struct keel_db *db = NULL;
    keel_status rc;

    rc = keel_db_open(cfg, &db);
    if (rc < 0) {
        fprintf(stderr, "keel projections: cannot open the database (%s)\n", keel_strerror(rc));
        return KEEL_EXIT_FAILURE;
    }
    /* As `keel serve`: development applies pending migrations itself. */
    if (cfg->env == KEEL_ENV_DEVELOPMENT)
        rc = keel_migrate_up(db, NULL);
    if (rc == KEEL_OK)
        rc = orders_rebuild(db, &st);
    keel_db_close(db);
    if (rc < 0) {
        fprintf(stderr, "keel projections: rebuild failed, nothing changed (%s)\n",
                keel_strerror(rc));
        return KEEL_EXIT_FAILURE;
    }
    keel_log(KEEL_LOG_INFO, "projection rebuilt", KEEL_LF_STR("projection", "orders"),
             KEEL_LF_INT("events", st.events), KEEL_LF_INT("orders", st.orders),
             KEEL_LF_INT("items", st.items));
    printf("{\"projection\":\"orders\",\"events\":%lld,\"orders\":%lld,\"items\":%lld}\n",
           (long long)st.events, (long long)st.orders, (long long)st.items);
    return KEEL_EXIT_OK;
}

static int run(int argc, char **argv)
{
    struct keel_config_extra extra[] = {
        {.flag = "--help", .help = "show this help"},
        {.flag = "-h", .help = "show this help"},
    };
    struct keel_config cfg = {0};
    bool proceed;
    int code;

    if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        projections_help(stdout);
        return KEEL_EXIT_OK;
    }
    if (argc < 2 || strcmp(argv[0], "rebuild") != 0 || strcmp(argv[1], "orders") != 0) {
        if (argc > 0)
            fprintf(stderr, "keel projections: unknown action '%s%s%s'\n\n", argv[0],
                    argc > 1 ? " " : "", argc > 1 ? argv[1] : "");
        projections_help(stderr);
        return KEEL_EXIT_USAGE;
    }
    code = keel_cmd_start(&cfg, argc - 2, argv + 2, extra, KEEL_ARRAY_LEN(extra), projections_help,
                          &proceed);
    if (!proceed)
        return code;
    code = rebuild_orders(&cfg);
    keel_config_free(&cfg);
    return code;
}

const struct keel_command orders_cmd_projections = {
    .name = "projections",
    .summary = "rebuild orders: rebuild the orders read model",
    .run = run,
};
