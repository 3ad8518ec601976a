/*
 * config_int.h - what config.c (the option table and the loader) shares
 * with config_parse.c (the value parsers): the option row, the value on its
 * way into a field, and the functions that cross between the two files.
 * Only src/core/config*.c include this file.
 */
#ifndef KEEL_CONFIG_INT_H
#define KEEL_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/config.h"

struct keel_json;
struct loader; /* config.c: the state of one keel_config_load_ex() */

/* The type of an option picks its parser (keel__config_parsers). */
enum opt_type {
    T_STR,     /* char *: free text */
    T_URL,     /* char *: text that starts with one of `words` */
    T_URLS,    /* struct keel_config_list of T_URL entries */
    T_ENUM,    /* int: index into `words` */
    T_BOOL,    /* bool */
    T_U32,     /* uint32_t in min..max */
    T_U64,     /* uint64_t in min..max */
    T_MS,      /* uint64_t milliseconds, written as seconds; min..max in ms */
    T_ADDR,    /* struct keel_config_addr */
    T_RATE,    /* struct keel_config_rate; min..max bound the count */
    T_ORIGINS, /* struct keel_config_list of CORS origins (+ cors_allow_any) */
};

/* struct opt flags. */
enum {
    F_SECRET = 1 << 0,    /* never printed; also read from NAME_FILE */
    F_NONEMPTY = 1 << 1,  /* the empty string is refused */
    F_AUTO_CPUS = 1 << 2, /* "auto" means the number of usable CPUs */
    F_NOFILE = 1 << 3,    /* cannot be set in the INI file (KEEL_CONFIG) */
};

/* One row of options[] (config.c). */
struct opt {
    const char *env;
    enum opt_type type;
    unsigned flags;
    size_t off;
    const char *def; /* NULL: unset */
    uint64_t min, max;
    const char *const *words;
    const char *metavar;
    const char *help;
};

/* Where a value came from, for messages (config.c). */
enum src { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG };

struct origin {
    enum src src;
    int line;      /* SRC_FILE */
    bool file_var; /* read from the file that NAME_FILE (name_file, --name-file) names */
};

/* One value on its way into a field. */
struct val {
    struct loader *ld;
    size_t idx;
    const struct opt *o;
    struct origin org;
    const char *text;
    struct keel_config *cfg; /* ld->cfg: parse_origins() also sets cors_allow_any */
};

/* config.c: reports that v's value (or the part `got`) is refused because
 * of `fmt`. A secret's text is never shown. Always returns false. */
__attribute__((format(printf, 3, 4))) bool
keel__config_reject(struct val *v, const char *got, const char *fmt, ...);

/* config_parse.c: the parser of each enum opt_type. Each one returns true
 * after writing the field, or false after keel__config_reject(). */
extern bool (*const keel__config_parsers[])(struct val *, void *);

/* config_parse.c: writes an option's value as JSON (secrets redacted). */
void keel__config_json_value(struct keel_json *j, const struct opt *o, const void *field);

/* config_parse.c: 1 for a true word (1, true, yes, on), 0 for a false one,
 * -1 for anything else; any case. */
int keel__config_bool_value(const char *s);

/* config_parse.c: frees s, zeroing it first when it is a secret. */
void keel__config_wipe_free(char *s, bool secret);

/* config_parse.c: frees a T_URLS or T_ORIGINS list and zeroes it. */
void keel__config_list_release(const struct opt *o, void *field);

#endif
