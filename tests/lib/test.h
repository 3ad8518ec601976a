/*
 * test.h - the includes every cmocka unit test needs, in the order cmocka
 * requires them.
 */
#ifndef KEEL_TEST_H
#define KEEL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#endif
