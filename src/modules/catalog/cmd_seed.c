/*
 * cmd_seed.c - the catalog module's subcommand `keel seed --products N
 * [--if-empty]`: loads a demo catalog (issue 5; docs/internals/catalog.md,
 * "Seeding"). Takes the options of `keel serve` (KEEL_DATABASE_URL
 * selects the database); in development it applies pending migrations
 * first, as serve does. Prints one JSON line: {"requested": N,
 * "inserted": K, "skipped": null | "<why>"}.
 * Exit codes: 0 done (also when --if-empty found products), 1 failure
 * (database), 64 usage, 78 bad configuration.
 *
 * A running server caches product lists for up to 30 s: products seeded
 * behind its back show up in lists within that time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/cmd.h"
#include "keel/db.h"
#include "keel/json.h"
#include "keel/log.h"
#include "keel/migrate.h"
#include "keel/module.h"

#include "catalog_int.h"

static void seed_help(FILE *f)
{
    fprintf(f,
            "Usage: keel seed --products N [--if-empty] [OPTIONS]\n\n"
            "Loads a demo catalog of N products (1..%d) in %d categories, priced in EUR.\n"
            "The catalog is deterministic: product i is always the same, and SKUs that\n"
            "exist already are skipped, so seeding again adds only what is missing.\n"
            "--if-empty does nothing when the catalog has any product. Takes the options\n"
            "of 'keel serve'; KEEL_DATABASE_URL selects the database.\n",
            CATALOG_SEED_MAX, 10);
}

/* N: decimal digits only, 1..CATALOG_SEED_MAX. */
static bool parse_count(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!s || *s < '0' || *s > '9')
        return false;
    v = strtoll(s, &end, 10);
    if (*end || v < 1 || v > CATALOG_SEED_MAX)
        return false;
    *out = v;
    return true;
}

static void print_result(const struct catalog_seed_result *r)
{
    struct keel_json j;
    struct keel_buf out;

    keel_buf_init(&out, 4096);
    keel_json_begin(&j, &out);
    keel_json_obj_open(&j);
    keel_json_key(&j, "requested");
    keel_json_int(&j, r->requested);
    keel_json_key(&j, "inserted");
    keel_json_int(&j, r->inserted);
    keel_json_key(&j, "skipped");
    if (r->skipped)
        keel_json_str(&j, "the catalog has products (--if-empty)");
    else
        keel_json_null(&j);
    keel_json_obj_close(&j);
    if (keel_json_end(&j) == KEEL_OK)
        printf("%s\n", out.data);
    keel_buf_free(&out);
}

static int seed(const struct keel_config *cfg, int64_t n, bool if_empty)
{
    struct catalog_seed_result res;
    struct keel_db *db = NULL;
    keel_status rc;

    rc = keel_db_open(cfg, &db);
    if (rc < 0) {
        fprintf(stderr, "keel seed: cannot open the database (%s)\n", keel_strerror(rc));
        return KEEL_EXIT_FAILURE;
    }
    if (cfg->env == KEEL_ENV_DEVELOPMENT)
        rc = keel_migrate_up(db, NULL);
    if (rc == KEEL_OK)
        rc = catalog_seed(db, n, if_empty, &res);
    keel_db_close(db);
    if (rc < 0) {
        fprintf(stderr,
                "keel seed: cannot seed the catalog (%s; is the schema migrated? "
                "run 'keel migrate up')\n",
                keel_strerror(rc));
        return KEEL_EXIT_FAILURE;
    }
    keel_log(KEEL_LOG_INFO, "catalog seeded", KEEL_LF_INT("requested", res.requested),
             KEEL_LF_INT("inserted", res.inserted), KEEL_LF_BOOL("skipped", res.skipped));
    print_result(&res);
    return KEEL_EXIT_OK;
}

static int run(int argc, char **argv)
{
    struct keel_config_extra extra[] = {
        {.flag = "--help", .help = "show this help"},
        {.flag = "-h", .help = "show this help"},
        {.flag = "--products", .has_value = true, .help = "how many products (1..1000000)"},
        {.flag = "--if-empty", .help = "do nothing when the catalog has products"},
    };
    struct keel_config cfg = {0};
    bool proceed;
    int64_t n = 0;
    int code;

    code = keel_cmd_start(&cfg, argc, argv, extra, KEEL_ARRAY_LEN(extra), seed_help, &proceed);
    if (!proceed)
        return code;
    if (!extra[2].set || !parse_count(extra[2].value, &n)) {
        fprintf(stderr, "keel seed: --products N is required, N from 1 to %d\n", CATALOG_SEED_MAX);
        keel_config_free(&cfg);
        return KEEL_EXIT_USAGE;
    }
    code = seed(&cfg, n, extra[3].set);
    keel_config_free(&cfg);
    return code;
}

const struct keel_command catalog_cmd_seed = {
    .name = "seed",
    .summary = "--products N: load a demo catalog",
    .run = run,
};
