/*
 * main.c - the keel binary: dispatches to a subcommand (SPEC section 1).
 * The built-in ones (keel/cmd.h) come first, then every module's
 * (keel/module.h, in registry order), then version; `keel --help` lists
 * them in that order.
 */
#include <stdio.h>
#include <string.h>

#include "keel/commands.h"
#include "keel/core.h"
#include "keel/module.h"

#include "keel_commit.h"
#include "keel_version.h"

static const struct keel_command builtins[] = {
    {.name = "serve", .summary = "run the API server", .run = keel_cmd_serve},
    {.name = "worker", .summary = "run job workers only (--queues a,b)", .run = keel_cmd_worker},
    {.name = "healthcheck",
     .summary = "probe the local server's /health/ready (exit 0/1)",
     .run = keel_cmd_healthcheck},
    {.name = "migrate",
     .summary = "apply (up) or list (status) schema migrations",
     .run = keel_cmd_migrate},
};

static int print_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("keel %s (%s)\n", KEEL_VERSION, KEEL_COMMIT);
    return KEEL_EXIT_OK;
}

static const struct keel_command version = {
    .name = "version", .summary = "print the version", .run = print_version};

static void list_command(const struct keel_command *c, void *f)
{
    fprintf(f, "  %-12s %s\n", c->name, c->summary);
}

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "Usage: keel COMMAND [OPTIONS]\n\nCommands:\n");
    for (i = 0; i < KEEL_ARRAY_LEN(builtins); i++)
        list_command(&builtins[i], f);
    keel_modules_each_command(list_command, f);
    list_command(&version, f);
    fprintf(f, "\nRun 'keel COMMAND --help' for the options of a command.\n"
               "Exit codes: 0 ok, 1 runtime failure, 64 bad usage, 78 bad configuration.\n");
}

/* The subcommand called name, or NULL. */
static const struct keel_command *find_command(const char *name)
{
    size_t i;

    if (strcmp(name, version.name) == 0 || strcmp(name, "--version") == 0)
        return &version;
    for (i = 0; i < KEEL_ARRAY_LEN(builtins); i++)
        if (strcmp(name, builtins[i].name) == 0)
            return &builtins[i];
    return keel_modules_command(name);
}

int main(int argc, char **argv)
{
    const struct keel_command *c;

    if (argc < 2) {
        usage(stderr);
        return KEEL_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return KEEL_EXIT_OK;
    }
    c = find_command(argv[1]);
    if (c)
        return c->run(argc - 2, argv + 2);
    fprintf(stderr, "keel: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return KEEL_EXIT_USAGE;
}
