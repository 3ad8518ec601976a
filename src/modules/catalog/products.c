/* products.c - PLACEHOLDER being written: the catalog module. */
#include "keel/module.h"

const struct keel_module keel_module_catalog = {.name = "catalog"};
