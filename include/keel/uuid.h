/*
 * uuid.h - UUIDv7 generation (RFC 9562) and UUID text validation.
 */
#ifndef KEEL_UUID_H
#define KEEL_UUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEEL_UUID_STRLEN 36

/* Writes a new UUIDv7 (48-bit Unix ms timestamp, a 12-bit sequence that
 * keeps ids from one thread monotonic within a millisecond, 62 random bits)
 * as 36 lowercase characters plus NUL into out. Thread-safe. */
void keel_uuid_v7(char out[KEEL_UUID_STRLEN + 1]);

/* True when s[0..len) is a canonical 8-4-4-4-12 hex UUID (either case). */
bool keel_uuid_valid(const char *s, size_t len);

/* Formats 16 bytes as canonical lowercase text. */
void keel_uuid_format(const uint8_t bytes[16], char out[KEEL_UUID_STRLEN + 1]);

#endif
