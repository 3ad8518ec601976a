/*
 * main.c - the keel binary: dispatches to a subcommand (SPEC section 1).
 */
#include <stdio.h>
#include <string.h>

#include "keel/cmd.h"
#include "keel/core.h"

#include "keel_commit.h"
#include "keel_version.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"serve", keel_cmd_serve, "run the API server"},
    {"healthcheck", keel_cmd_healthcheck, "probe the local server's /health/ready (exit 0/1)"},
    {"migrate", keel_cmd_migrate, "apply (up) or list (status) schema migrations"},
    {"users", keel_cmd_users, "create-admin --email E: create an administrator"},
    {"seed", keel_cmd_seed, "--products N: load a demo catalog"},
    {"projections", keel_cmd_projections, "rebuild orders: rebuild the orders read model"},
};

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "Usage: keel COMMAND [OPTIONS]\n\nCommands:\n");
    for (i = 0; i < KEEL_ARRAY_LEN(commands); i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-12s %s\n", "version", "print the version");
    fprintf(f, "\nRun 'keel COMMAND --help' for the options of a command.\n"
               "Exit codes: 0 ok, 1 runtime failure, 64 bad usage, 78 bad configuration.\n");
}

int main(int argc, char **argv)
{
    size_t i;

    if (argc < 2) {
        usage(stderr);
        return KEEL_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return KEEL_EXIT_OK;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("keel %s (%s)\n", KEEL_VERSION, KEEL_COMMIT);
        return KEEL_EXIT_OK;
    }
    for (i = 0; i < KEEL_ARRAY_LEN(commands); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "keel: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return KEEL_EXIT_USAGE;
}
