#include "text/chat_template.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>

namespace chat = flare::text::chat;

namespace {

nlohmann::json fixtures() {
  std::ifstream in(FLARE_CHAT_FIXTURES);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str())["cases"];
}

std::string error_of(const auto& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("chat template: every fixture shared with flare.chat renders as documented") {
  nlohmann::json cases = fixtures();
  REQUIRE(cases.size() >= 10);
  for (const auto& c : cases) {
    CAPTURE(c["name"].get<std::string>());
    const auto& m = c["messages"];
    if (c.contains("error")) {
      std::string want = c["error"];
      CHECK(error_of([&] { chat::render(m, true); }).starts_with(want));
      CHECK(error_of([&] { chat::render(m, false); }).starts_with(want));
      continue;
    }
    if (c.contains("split_error")) {
      CHECK(error_of([&] { chat::split(m); }).starts_with(c["split_error"].get<std::string>()));
      continue;
    }
    CHECK(chat::render(m, true) == c["prompt"].get<std::string>());
    CHECK(chat::render(m, false) == c["text"].get<std::string>());
    if (c.contains("split")) {
      chat::Example ex = chat::split(m);
      CHECK(ex.prompt == c["split"]["prompt"].get<std::string>());
      CHECK(ex.completion == c["split"]["completion"].get<std::string>());
      // Training text is the full conversation: prompt + completion + "\n".
      CHECK(ex.prompt + ex.completion + "\n" == c["text"].get<std::string>());
    }
  }
}

TEST_CASE("chat template: error indices follow the caller's base") {
  nlohmann::json m = nlohmann::json::parse(R"([{"role":"user","content":"a"},{"role":"x"}])");
  CHECK(error_of([&] { chat::render(m, true, 1); }).starts_with("messages[2].role:"));
}
