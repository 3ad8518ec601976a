/*
 * cmd.h - what every subcommand of the keel binary does first (SPEC
 * section 1): its configuration, its help, libsodium and the logger. The
 * built-in subcommands are declared in keel/commands.h; modules add their
 * own (struct keel_command, keel/module.h); src/main.c lists them all.
 */
#ifndef KEEL_CMD_H
#define KEEL_CMD_H

#include <stdio.h>

#include "keel/config.h"

/* Loads the configuration for a subcommand, printing problems to stderr.
 * Returns KEEL_EXIT_OK, or the exit code to stop with (64 or 78). Extra
 * flags as keel_config_load_ex; "--help" is handled by the caller. */
int keel_cmd_load_config(
    struct keel_config *cfg, int argc, char **argv, struct keel_config_extra *extra, size_t nextra);

/* The start of every subcommand: loads the configuration; when extra[0]
 * or extra[1] (the command's "--help" and "-h") was given, prints help(f)
 * and stops with 0; on a configuration problem stops with 64 or 78; then
 * initializes libsodium and the logger. *proceed says whether the command
 * goes on; otherwise return the returned code (cfg is then freed). */
int keel_cmd_start(struct keel_config *cfg,
                   int argc,
                   char **argv,
                   struct keel_config_extra *extra,
                   size_t nextra,
                   void (*help)(FILE *f),
                   bool *proceed);

#endif
