/* orders.c - PLACEHOLDER being written: the orders module. */
#include "keel/module.h"

const struct keel_module keel_module_orders = {.name = "orders"};
