#include "text/json_parse.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

using flare::text::JsonEvents;
using flare::text::JsonSyntaxError;
using flare::text::thread_json_parser;
using nlohmann::json;

namespace {

// Rebuilds the events as a nlohmann DOM (duplicate keys: the last wins, as in Lua).
struct ToDom : JsonEvents {
  json result;
  std::vector<json*> stack;
  std::string pending_key;

  void put(json v) {
    if (stack.empty()) {
      result = std::move(v);
      stack.push_back(&result);
      if (!result.is_structured()) stack.pop_back();
      return;
    }
    json& parent = *stack.back();
    json* slot;
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      slot = &parent.back();
    } else {
      slot = &(parent[pending_key] = std::move(v));
    }
    if (slot->is_structured()) stack.push_back(slot);
  }
  void null() override { put(nullptr); }
  void boolean(bool b) override { put(b); }
  void integer(std::int64_t n) override { put(n); }
  void unsigned_integer(std::uint64_t n) override { put(n); }
  void number(double d) override { put(d); }
  void string(std::string_view s) override { put(std::string(s)); }
  void begin_array(std::size_t) override { put(json::array()); }
  void begin_object(std::size_t) override { put(json::object()); }
  void key(std::string_view k) override { pending_key.assign(k); }
  void end_container() override { stack.pop_back(); }
};

// "ok:<dump>" or "error:<offset>" from flare's parser and from nlohmann alone.
std::string flare_result(const std::string& text) {
  ToDom dom;
  try {
    thread_json_parser().parse(text, dom);
  } catch (const JsonSyntaxError& e) {
    if (e.detail.find("overflow") != std::string::npos) return "error:overflow";
    return "error:" + std::to_string(e.offset);
  }
  return "ok:" + dom.result.dump();
}

std::string nlohmann_result(const std::string& text) {
  try {
    return "ok:" + json::parse(text).dump();
  } catch (const json::parse_error& e) {
    return "error:" + std::to_string(e.byte > 0 ? e.byte - 1 : 0);
  } catch (const json::out_of_range&) {
    return "error:overflow";  // a number beyond a double
  }
}

}  // namespace

TEST_CASE("simdjson serves (libflare-simdjson.so is found), else this suite tests nothing new") {
  CHECK(flare::text::json_fast_parser_missing() == "");
}

TEST_CASE("the fast parser accepts, refuses and reads values exactly as nlohmann does") {
  const std::vector<std::string> cases = {R"({"a": [1, 2.5, "x", null, true, false], "b": {}})",
                                          "[]",
                                          "{}",
                                          "  7  ",
                                          "-0",
                                          "0.0",
                                          "1e2",
                                          "1E-2",
                                          "-1.5e+300",
                                          "1e400",
                                          "-1e400",
                                          "123456789012345678901234567890",
                                          "9223372036854775807",
                                          "9223372036854775808",
                                          "18446744073709551615",
                                          "18446744073709551616",
                                          "-9223372036854775808",
                                          "-9223372036854775809",
                                          R"("\u00e9\n\t\"\\\/")",
                                          R"("\ud83d\ude00")",
                                          R"("\ud800")",
                                          R"("\udc00x")",
                                          "\"a\xff\"",
                                          "\"\xc0\x80\"",
                                          "\"ctl\x01\"",
                                          R"({"a":1,"a":2})",
                                          "[1,2,]",
                                          "[1 2]",
                                          R"({"a" 1})",
                                          "",
                                          "   ",
                                          "tru",
                                          "nul",
                                          "[1] x",
                                          "01",
                                          "1.",
                                          ".5",
                                          "+1",
                                          "[",
                                          "]",
                                          R"({"a":})",
                                          "\"unterminated",
                                          "[1,\n2,\n3}",
                                          "\xef\xbb\xbf[1]",
                                          "NaN",
                                          "[Infinity]",
                                          R"({"k\u0000":"v"})",
                                          "[\"tab\there\"]",
                                          "{\"\":0}",
                                          "[[[[[]]]]]"};
  for (const auto& text : cases) {
    INFO("text: ", text);
    CHECK(flare_result(text) == nlohmann_result(text));
  }
}

TEST_CASE("random damage to valid documents: both parsers agree on every one") {
  const std::string base =
      R"({"id":"ex-1","messages":[{"role":"user","content":"na\u00efve \"q\" 中文"}],)"
      R"("n":-12,"x":3.25e-3,"big":18446744073709551615,"ok":true,"none":null})";
  std::mt19937 rng(16);
  const std::string alphabet = "{}[]\",:0123456789.eE+-tfnul\\ \n\x01\xff\xc3";
  int refused = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string text = base;
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      std::size_t at = rng() % text.size();
      switch (rng() % 3) {
        case 0:
          text.erase(at, 1);
          break;
        case 1:
          text.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        default:
          text[at] = alphabet[rng() % alphabet.size()];
          break;
      }
    }
    std::string a = flare_result(text), b = nlohmann_result(text);
    if (a.starts_with("error")) ++refused;
    INFO("text: ", text);
    REQUIRE(a == b);
  }
  CHECK(refused > 1000);  // the damage is real
}

TEST_CASE("JSON lines: blank lines skipped, errors name the line and the offset in the text") {
  std::string text = "{\"a\":1}\n\n  \r\n[1,2]\n\"x\"";
  ToDom dom;
  std::vector<std::pair<std::size_t, std::size_t>> seen;
  std::vector<std::string> values;
  thread_json_parser().parse_lines(text, dom, [&](std::size_t line, std::size_t offset) {
    if (!seen.empty()) values.push_back(dom.result.dump());
    seen.emplace_back(line, offset);
  });
  values.push_back(dom.result.dump());
  CHECK(seen == std::vector<std::pair<std::size_t, std::size_t>>{{1, 0}, {4, 13}, {5, 19}});
  CHECK(values == std::vector<std::string>{R"({"a":1})", "[1,2]", R"("x")"});

  std::string bad = "{\"a\":1}\n{\"a\" 1}\n";
  try {
    thread_json_parser().parse_lines(bad, dom, [](std::size_t, std::size_t) {});
    FAIL("no error");
  } catch (const JsonSyntaxError& e) {
    CHECK(e.line == 2);
    CHECK(e.offset == 13);
    CHECK(std::string(e.what()).starts_with("line 2: invalid JSON at byte offset 13: "));
  }
}

TEST_CASE("long JSON lines near the end of the text parse without reading past it") {
  // The last line has less than the padding after it, so it is copied; the others are not.
  std::string text;
  for (int i = 0; i < 50; ++i)
    text += "{\"i\":" + std::to_string(i) + ",\"s\":\"" +
            std::string(static_cast<std::size_t>(i), 'x') + "\"}\n";
  ToDom dom;
  int lines = 0;
  thread_json_parser().parse_lines(text, dom, [&](std::size_t, std::size_t) { ++lines; });
  CHECK(lines == 50);
  CHECK(dom.result["i"] == 49);
}
