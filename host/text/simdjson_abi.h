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

#define FLARE_SIMDJSON_ABI_VERSION 1
/* Bytes after the text that a caller passing padded = 1 lets the parser read. */
#define FLARE_SIMDJSON_PADDING 64

/* One JSON value as events; each returns 0 to go on, anything else to stop. */
typedef struct {
  int (*null_value)(void* ctx);
  int (*boolean)(void* ctx, int b);
  int (*integer)(void* ctx, int64_t n);
  int (*unsigned_integer)(void* ctx, uint64_t n);
  int (*number)(void* ctx, double d);
  int (*string)(void* ctx, const char* s, size_t n);
  int (*begin_array)(void* ctx, size_t size);
  int (*begin_object)(void* ctx, size_t size);
  int (*key)(void* ctx, const char* s, size_t n);
  int (*end_container)(void* ctx);
} flare_json_events;

typedef struct flare_simdjson_parser flare_simdjson_parser;

int flare_simdjson_abi_version(void);
flare_simdjson_parser* flare_simdjson_parser_new(void);
void flare_simdjson_parser_free(flare_simdjson_parser* parser);

/* Parses text[0..len) and sends its value to events. padded = 1: the
 * FLARE_SIMDJSON_PADDING bytes after the text may be read (no copy).
 * Returns 0 when the value was sent, 1 when simdjson refused the text (no
 * event sent), 2 when an event returned nonzero. */
int flare_simdjson_parse(flare_simdjson_parser* parser, const char* text, size_t len, int padded,
                         const flare_json_events* events, void* ctx);

#ifdef __cplusplus
}
#endif

#endif
