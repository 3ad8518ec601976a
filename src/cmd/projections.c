/* projections.c - PLACEHOLDER being written: keel projections rebuild orders. */
#include <stdio.h>

#include "keel/cmd.h"

int keel_cmd_projections(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "keel projections: not built yet\n");
    return KEEL_EXIT_FAILURE;
}
