/*
 * commands.h - the built-in subcommands of the keel binary (SPEC section
 * 1; src/cmd/). Each takes the arguments after its name and returns the
 * process exit code (KEEL_EXIT_*).
 */
#ifndef KEEL_COMMANDS_H
#define KEEL_COMMANDS_H

int keel_cmd_serve(int argc, char **argv);
int keel_cmd_healthcheck(int argc, char **argv);
int keel_cmd_migrate(int argc, char **argv);
int keel_cmd_worker(int argc, char **argv);

#endif
