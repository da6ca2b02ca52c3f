// flare.chat: flare's chat template for the byte-level models (docs/chat_template.md),
// the one the emulator's /inference/v1/chat/completions applies.
//   chat.format(messages, {add_generation_prompt = true}) -> text
//   chat.split(messages) -> {prompt = text, completion = text}  (a training example:
//       the last message is the assistant's; completion ends with chat.stop)
//   chat.stop        "<|end|>", the end of a turn: the stop string for sampling
// messages = {{role = "system"|"user"|"assistant", content = "..." or
//   {{type = "text", text = "..."}, ...}}, ...}. Bad input raises naming
// messages[i].field (i from 1).
#include <lua.hpp>
#include <stdexcept>
#include <string>

#include "json_convert.hpp"
#include "lua_support.hpp"
#include "module.hpp"
#include "text/chat_template.hpp"

namespace flare::lua {
namespace {

namespace chat = text::chat;

nlohmann::json messages_arg(lua_State* L, const char* who) {
  check_table(L, 1, who, "messages");
  return to_json(L, 1);
}

// The template's own checks (messages[i].role, ...) raise as misuse too.
template <typename Fn>
auto render_or_raise(const char* who, Fn fn) {
  try {
    return fn();
  } catch (const std::invalid_argument& e) {
    raise_invalid(who, e.what());
  }
}

int chat_format(lua_State* L) {
  const char* who = "flare.chat.format";
  nlohmann::json messages = messages_arg(L, who);
  Options o(L, 2, who, false);
  bool generation_prompt = o.boolean("add_generation_prompt", true);
  o.finish();
  std::string text =
      render_or_raise(who, [&] { return chat::render(messages, generation_prompt, 1); });
  lua_pushlstring(L, text.data(), text.size());
  return 1;
}

int chat_split(lua_State* L) {
  const char* who = "flare.chat.split";
  nlohmann::json messages = messages_arg(L, who);
  chat::Example ex = render_or_raise(who, [&] { return chat::split(messages, 1); });
  lua_createtable(L, 0, 2);
  lua_pushlstring(L, ex.prompt.data(), ex.prompt.size());
  lua_setfield(L, -2, "prompt");
  lua_pushlstring(L, ex.completion.data(), ex.completion.size());
  lua_setfield(L, -2, "completion");
  return 1;
}

int open_chat(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"format", chat_format}, {"split", chat_split}, {nullptr, nullptr}};
  lua_createtable(L, 0, 4);
  luaL_register(L, nullptr, functions);
  lua_pushstring(L, chat::kEndOfTurn);
  lua_setfield(L, -2, "stop");
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(chat, flare::lua::open_chat);
