// libflare-simdjson.so: simdjson's DOM parser behind simdjson_abi.h.
#include <simdjson.h>

#include <new>
#include <vector>

#include "text/simdjson_abi.h"

static_assert(simdjson::SIMDJSON_PADDING <= FLARE_SIMDJSON_PADDING);

struct flare_simdjson_parser {
  simdjson::dom::parser parser;
  std::vector<flare_json_event> events;
};

namespace {

void add(std::vector<flare_json_event>& out, std::uint32_t kind, std::uint32_t size = 0) {
  out.push_back({kind, size, {nullptr}});
}

void add_text(std::vector<flare_json_event>& out, std::uint32_t kind, std::string_view s) {
  flare_json_event e{kind, static_cast<std::uint32_t>(s.size()), {nullptr}};
  e.v.s = s.data();
  out.push_back(e);
}

// simdjson refuses documents of 4 GiB or more, so string sizes fit in 32 bits.
void walk(simdjson::dom::element e, std::vector<flare_json_event>& out) {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::ARRAY: {
      simdjson::dom::array a = e.get_array().value_unsafe();
      add(out, FLARE_JSON_ARRAY, static_cast<std::uint32_t>(a.size()));
      for (simdjson::dom::element item : a) walk(item, out);
      add(out, FLARE_JSON_END);
      return;
    }
    case element_type::OBJECT: {
      simdjson::dom::object o = e.get_object().value_unsafe();
      add(out, FLARE_JSON_OBJECT, static_cast<std::uint32_t>(o.size()));
      for (simdjson::dom::key_value_pair kv : o) {
        add_text(out, FLARE_JSON_KEY, kv.key);
        walk(kv.value, out);
      }
      add(out, FLARE_JSON_END);
      return;
    }
    case element_type::INT64: {
      flare_json_event ev{FLARE_JSON_INT64, 0, {nullptr}};
      ev.v.i = e.get_int64().value_unsafe();
      out.push_back(ev);
      return;
    }
    case element_type::UINT64: {
      flare_json_event ev{FLARE_JSON_UINT64, 0, {nullptr}};
      ev.v.u = e.get_uint64().value_unsafe();
      out.push_back(ev);
      return;
    }
    case element_type::DOUBLE: {
      flare_json_event ev{FLARE_JSON_DOUBLE, 0, {nullptr}};
      ev.v.d = e.get_double().value_unsafe();
      out.push_back(ev);
      return;
    }
    case element_type::STRING:
      add_text(out, FLARE_JSON_STRING, e.get_string().value_unsafe());
      return;
    case element_type::BOOL:
      add(out, e.get_bool().value_unsafe() ? FLARE_JSON_TRUE : FLARE_JSON_FALSE);
      return;
    case element_type::NULL_VALUE:
      add(out, FLARE_JSON_NULL);
      return;
  }
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
                                                                const flare_json_event** events,
                                                                size_t* count) {
  *events = nullptr;
  *count = 0;
  simdjson::dom::element root;
  if (parser->parser.parse(text, len, padded == 0).get(root)) return 1;
  try {
    parser->events.clear();
    walk(root, parser->events);
  } catch (const std::bad_alloc&) {
    parser->events.clear();
    return 2;
  }
  *events = parser->events.data();
  *count = parser->events.size();
  return 0;
}
}
