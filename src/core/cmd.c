/*
 * cmd.c - what every subcommand does first: load the configuration (with
 * --help winning over any problem in it), then initialize libsodium and the
 * JSON logger.
 */
#include "keel/cmd.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keel/log.h"

int keel_cmd_load_config(
    struct keel_config *cfg, int argc, char **argv, struct keel_config_extra *extra, size_t nextra)
{
    struct keel_buf errs;
    bool usage = false;
    keel_status rc;

    keel_buf_init(&errs, 64 * 1024);
    rc = keel_config_load_ex(cfg, argc, argv, extra, nextra, NULL, &errs, &usage);
    for (size_t i = 0; i < nextra; i++) {
        /* --help wins over any configuration problem. */
        if (extra[i].set &&
            (strcmp(extra[i].flag, "--help") == 0 || strcmp(extra[i].flag, "-h") == 0)) {
            keel_buf_free(&errs);
            return KEEL_EXIT_OK;
        }
    }
    if (rc < 0) {
        fputs(errs.data ? errs.data : "config: invalid configuration\n", stderr);
        keel_buf_free(&errs);
        return usage ? KEEL_EXIT_USAGE : KEEL_EXIT_CONFIG;
    }
    keel_buf_free(&errs);
    return KEEL_EXIT_OK;
}

int keel_cmd_start(struct keel_config *cfg,
                   int argc,
                   char **argv,
                   struct keel_config_extra *extra,
                   size_t nextra,
                   void (*help)(FILE *f),
                   bool *proceed)
{
    int code;

    *proceed = false;
    code = keel_cmd_load_config(cfg, argc, argv, extra, nextra);
    if (extra[0].set || extra[1].set) {
        keel_config_free(cfg);
        help(stdout);
        return KEEL_EXIT_OK;
    }
    if (code != KEEL_EXIT_OK)
        return code;
    if (sodium_init() < 0) {
        fprintf(stderr, "keel: libsodium failed to initialize\n");
        keel_config_free(cfg);
        return KEEL_EXIT_FAILURE;
    }
    keel_log_init((enum keel_log_level)cfg->log_level, STDOUT_FILENO);
    *proceed = true;
    return KEEL_EXIT_OK;
}
