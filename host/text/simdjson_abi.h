/* The C interface of libflare-simdjson.so: simdjson's DOM parser behind plain C,
 * opened by json_parse.cpp on the first JSON text it parses. flare links at
 * start-up only libc, libm and libgcc_s (bench/startup); libsimdjson and the
 * shared C++ runtime it needs are mapped only by a program that parses JSON, and
 * no C++ object or exception crosses between the program and the module. */
#ifndef FLARE_SIMDJSON_ABI_H
#define FLARE_SIMDJSON_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLARE_SIMDJSON_ABI_VERSION 2
/* Bytes after the text that a caller passing padded = 1 lets the parser read. */
#define FLARE_SIMDJSON_PADDING 64

/* One JSON value as a flat list of events in document order: a container's
 * FLARE_JSON_ARRAY or FLARE_JSON_OBJECT (size = its element or member count, at most
 * 0xffffff: a hint), its items (an object's as FLARE_JSON_KEY then the value), then
 * FLARE_JSON_END. Strings and keys point into the parser's buffers (size bytes, valid
 * until its next parse). */
enum {
  FLARE_JSON_NULL,
  FLARE_JSON_FALSE,
  FLARE_JSON_TRUE,
  FLARE_JSON_INT64,
  FLARE_JSON_UINT64,
  FLARE_JSON_DOUBLE,
  FLARE_JSON_STRING,
  FLARE_JSON_KEY,
  FLARE_JSON_ARRAY,
  FLARE_JSON_OBJECT,
  FLARE_JSON_END
};

typedef struct {
  uint32_t kind;
  uint32_t size;
  union {
    const char* s;
    int64_t i;
    uint64_t u;
    double d;
  } v;
} flare_json_event;

typedef struct flare_simdjson_parser flare_simdjson_parser;

int flare_simdjson_abi_version(void);
flare_simdjson_parser* flare_simdjson_parser_new(void);
void flare_simdjson_parser_free(flare_simdjson_parser* parser);

/* Parses text[0..len) into events (*events, *count; owned by the parser, valid until
 * its next parse). padded = 1: the FLARE_SIMDJSON_PADDING bytes after the text may be
 * read (no copy). Returns 0 when parsed, 1 when simdjson refused the text, 2 when out
 * of memory (no events either way). */
int flare_simdjson_parse(flare_simdjson_parser* parser, const char* text, size_t len, int padded,
                         const flare_json_event** events, size_t* count);

#ifdef __cplusplus
}
#endif

#endif
