/* placeholder: being written in this session */
#include "keel/cmd.h"
int keel_cmd_migrate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return KEEL_EXIT_FAILURE;
}
