/*
 * migrate.c - `keel migrate up|status`: applies the pending schema
 * migrations, or prints the state of every version (include/keel/migrate.h).
 *
 * It reads the same configuration as `keel serve` (KEEL_DATABASE_URL
 * above all). Log lines go to stdout as JSON; the status table goes to
 * stdout too. Exit codes: 0 ok, 1 failure (database unreachable, a failing
 * or tampered migration, an unknown newer version), 64 usage, 78 bad
 * configuration.
 */
#include "keel/migrate.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keel/cmd.h"
#include "keel/commands.h"
#include "keel/db.h"
#include "keel/log.h"

static void migrate_help(FILE *f)
{
    fprintf(f,
            "Usage: keel migrate up|status [OPTIONS]\n\n"
            "  up       apply every pending migration, each in its own transaction\n"
            "  status   list every version: applied or pending, when, checksum ok or MISMATCH\n\n"
            "Migrations are built into the binary. An applied migration whose SQL was\n"
            "edited afterwards is refused (exit 1). Takes the options of 'keel serve';\n"
            "KEEL_DATABASE_URL selects the database.\n");
}

static int run(const char *action, const struct keel_config *cfg)
{
    struct keel_db *db = NULL;
    unsigned applied = 0;
    keel_status rc;

    rc = keel_db_open(cfg, &db);
    if (rc < 0) {
        /* keel_db_open logged why (without the URL's password). */
        fprintf(stderr, "keel migrate: cannot open the database (%s)\n", keel_strerror(rc));
        return rc == KEEL_E_INVALID ? KEEL_EXIT_CONFIG : KEEL_EXIT_FAILURE;
    }
    if (strcmp(action, "up") == 0)
        rc = keel_migrate_up(db, &applied);
    else
        rc = keel_migrate_status(db, stdout);
    fflush(stdout);
    keel_db_close(db);
    if (rc == KEEL_E_CONFLICT)
        fprintf(stderr, "keel migrate: the database does not match this binary's migrations "
                        "(edited or unknown migration; see the log)\n");
    else if (rc < 0)
        fprintf(stderr, "keel migrate %s failed: %s\n", action, keel_strerror(rc));
    return rc < 0 ? KEEL_EXIT_FAILURE : KEEL_EXIT_OK;
}

int keel_cmd_migrate(int argc, char **argv)
{
    struct keel_config_extra extra[] = {
        {.flag = "--help", .help = "show this help"},
        {.flag = "-h", .help = "show this help"},
    };
    struct keel_config cfg = {0};
    const char *action = argc > 0 ? argv[0] : NULL;
    bool proceed;
    int code;

    if (action && (strcmp(action, "--help") == 0 || strcmp(action, "-h") == 0)) {
        migrate_help(stdout);
        return KEEL_EXIT_OK;
    }
    if (!action || (strcmp(action, "up") != 0 && strcmp(action, "status") != 0)) {
        if (action)
            fprintf(stderr, "keel migrate: unknown action '%s'\n\n", action);
        migrate_help(stderr);
        return KEEL_EXIT_USAGE;
    }
    code = keel_cmd_start(&cfg, argc - 1, argv + 1, extra, KEEL_ARRAY_LEN(extra), migrate_help,
                          &proceed);
    if (!proceed)
        return code;
    code = run(action, &cfg);
    keel_config_free(&cfg);
    return code;
}
