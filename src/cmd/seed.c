/* seed.c - PLACEHOLDER being written: keel seed --products N. */
#include <stdio.h>

#include "keel/cmd.h"

int keel_cmd_seed(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "keel seed: not built yet\n");
    return KEEL_EXIT_FAILURE;
}
