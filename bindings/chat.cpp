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
#include "module.hpp"
#include "text/chat_template.hpp"

namespace flare::lua {
namespace {

namespace chat = text::chat;

nlohmann::json messages_arg(lua_State* L, const char* who) {
  if (!lua_istable(L, 1)) {
    throw std::runtime_error(std::string("flare.chat.") + who +
                             ": messages must be a list of {role, content}, got " +
                             luaL_typename(L, 1));
  }
  return to_json(L, 1);
}

int chat_format(lua_State* L) {
  nlohmann::json messages = messages_arg(L, "format");
  bool generation_prompt = true;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "add_generation_prompt");
    if (!lua_isnil(L, -1)) {
      if (!lua_isboolean(L, -1)) {
        throw std::runtime_error("flare.chat.format: add_generation_prompt must be a boolean");
      }
      generation_prompt = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, 2)) {
    throw std::runtime_error("flare.chat.format: options must be a table");
  }
  try {
    std::string text = chat::render(messages, generation_prompt, 1);
    lua_pushlstring(L, text.data(), text.size());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(std::string("flare.chat.format: ") + e.what());
  }
  return 1;
}

int chat_split(lua_State* L) {
  nlohmann::json messages = messages_arg(L, "split");
  try {
    chat::Example ex = chat::split(messages, 1);
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, ex.prompt.data(), ex.prompt.size());
    lua_setfield(L, -2, "prompt");
    lua_pushlstring(L, ex.completion.data(), ex.completion.size());
    lua_setfield(L, -2, "completion");
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(std::string("flare.chat.split: ") + e.what());
  }
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
