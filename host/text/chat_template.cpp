#include "text/chat_template.hpp"

#include <stdexcept>

namespace flare::text::chat {
namespace {

[[noreturn]] void fail(const std::string& field, const std::string& why) {
  throw std::invalid_argument(field + ": " + why);
}

std::string type_name(const nlohmann::json& v) {
  return v.type_name();
}

// The text of one message's content: a string, or the array-of-parts form.
std::string content_text(const nlohmann::json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) {
    fail(where,
         "must be a string or a list of {type = \"text\", text} parts, got " + type_name(content));
  }
  std::string text;
  for (size_t k = 0; k < content.size(); ++k) {
    const auto& part = content[k];
    std::string at = where + "[" + std::to_string(k) + "]";
    if (!part.is_object()) fail(at, "must be an object {type = \"text\", text}");
    auto type = part.find("type");
    if (type == part.end() || !type->is_string() || *type != "text") {
      fail(at + ".type", "must be \"text\" (the byte-level models read text only)");
    }
    auto t = part.find("text");
    if (t == part.end() || !t->is_string()) fail(at + ".text", "must be a string");
    for (const auto& [key, _] : part.items()) {
      if (key != "type" && key != "text") fail(at + "." + key, "is not a field of a text part");
    }
    text += t->get<std::string>();
  }
  return text;
}

struct Message {
  std::string role;
  std::string content;
};

Message check_message(const nlohmann::json& m, const std::string& where) {
  if (!m.is_object()) fail(where, "must be an object {role, content}, got " + type_name(m));
  for (const auto& [key, _] : m.items()) {
    if (key != "role" && key != "content") {
      fail(where + "." + key, "is not supported by flare's chat template (only role and content)");
    }
  }
  auto role = m.find("role");
  if (role == m.end() || !role->is_string()) fail(where + ".role", "must be a string");
  const std::string& r = role->get_ref<const std::string&>();
  if (r != "system" && r != "user" && r != "assistant") {
    fail(where + ".role", "must be one of system, user, assistant, got '" + r + "'");
  }
  auto content = m.find("content");
  if (content == m.end() || content->is_null()) fail(where + ".content", "is required");
  return {r, content_text(*content, where + ".content")};
}

void append_turn(std::string& out, const Message& m) {
  out += "<|";
  out += m.role;
  out += "|>\n";
  out += m.content;
  out += kEndOfTurn;
  out += '\n';
}

void check_list(const nlohmann::json& messages) {
  if (!messages.is_array() || messages.empty()) {
    fail("messages", "must be a non-empty list of {role, content}");
  }
}

std::string at(int index_base, size_t i) {
  return "messages[" + std::to_string(static_cast<long>(i) + index_base) + "]";
}

}  // namespace

std::string render(const nlohmann::json& messages, bool add_generation_prompt, int index_base) {
  check_list(messages);
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    append_turn(out, check_message(messages[i], at(index_base, i)));
  }
  if (add_generation_prompt) out += kGenerationPrompt;
  return out;
}

Example split(const nlohmann::json& messages, int index_base) {
  check_list(messages);
  Example ex;
  for (size_t i = 0; i + 1 < messages.size(); ++i) {
    append_turn(ex.prompt, check_message(messages[i], at(index_base, i)));
  }
  Message last = check_message(messages.back(), at(index_base, messages.size() - 1));
  if (last.role != "assistant") {
    fail(at(index_base, messages.size() - 1) + ".role",
         "the last message of a training example must be the assistant's, got '" + last.role + "'");
  }
  ex.prompt += kGenerationPrompt;
  ex.completion = last.content + kEndOfTurn;
  return ex;
}

}  // namespace flare::text::chat
