/*
 * test.h - the includes every cmocka unit test needs, in the order cmocka
 * requires them (cmocka.h uses jmp_buf, va_list, size_t and uintmax_t
 * without including their headers).
 */
#ifndef KEEL_TEST_H
#define KEEL_TEST_H

/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#endif
