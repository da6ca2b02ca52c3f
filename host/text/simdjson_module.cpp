// libflare-simdjson.so: simdjson's DOM parser behind simdjson_abi.h.
#include <simdjson.h>

#include "text/simdjson_abi.h"

static_assert(simdjson::SIMDJSON_PADDING <= FLARE_SIMDJSON_PADDING);

struct flare_simdjson_parser {
  simdjson::dom::parser parser;
};

namespace {

// Returns nonzero when an event asked to stop.
int walk(simdjson::dom::element e, const flare_json_events& ev, void* ctx) {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::ARRAY: {
      simdjson::dom::array a = e.get_array().value_unsafe();
      if (ev.begin_array(ctx, a.size())) return 1;
      for (simdjson::dom::element item : a)
        if (walk(item, ev, ctx)) return 1;
      return ev.end_container(ctx);
    }
    case element_type::OBJECT: {
      simdjson::dom::object o = e.get_object().value_unsafe();
      if (ev.begin_object(ctx, o.size())) return 1;
      for (simdjson::dom::key_value_pair kv : o) {
        if (ev.key(ctx, kv.key.data(), kv.key.size())) return 1;
        if (walk(kv.value, ev, ctx)) return 1;
      }
      return ev.end_container(ctx);
    }
    case element_type::INT64:
      return ev.integer(ctx, e.get_int64().value_unsafe());
    case element_type::UINT64:
      return ev.unsigned_integer(ctx, e.get_uint64().value_unsafe());
    case element_type::DOUBLE:
      return ev.number(ctx, e.get_double().value_unsafe());
    case element_type::STRING: {
      std::string_view s = e.get_string().value_unsafe();
      return ev.string(ctx, s.data(), s.size());
    }
    case element_type::BOOL:
      return ev.boolean(ctx, e.get_bool().value_unsafe() ? 1 : 0);
    case element_type::NULL_VALUE:
      return ev.null_value(ctx);
  }
  return 1;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int flare_simdjson_abi_version(void) {
  return FLARE_SIMDJSON_ABI_VERSION;
}

__attribute__((visibility("default"))) flare_simdjson_parser* flare_simdjson_parser_new(void) {
  return new (std::nothrow) flare_simdjson_parser();
}

__attribute__((visibility("default"))) void flare_simdjson_parser_free(
    flare_simdjson_parser* parser) {
  delete parser;
}

__attribute__((visibility("default"))) int flare_simdjson_parse(flare_simdjson_parser* parser,
                                                                const char* text, size_t len,
                                                                int padded,
                                                                const flare_json_events* events,
                                                                void* ctx) {
  simdjson::dom::element root;
  if (parser->parser.parse(text, len, padded == 0).get(root)) return 1;
  return walk(root, *events, ctx) ? 2 : 0;
}
}
