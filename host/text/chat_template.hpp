#pragma once
// flare's chat template for the byte-level models: one definition, used by the
// emulator's /inference/v1/chat/completions and by flare.chat in Lua, so that
// training text and sampling prompts are formatted the same way. The format
// is documented in docs/chat_template.md:
//
//   <|system|>\n{content}<|end|>\n      (any number of messages, in order)
//   <|user|>\n{content}<|end|>\n
//   <|assistant|>\n{content}<|end|>\n
//   <|assistant|>\n                     (the generation prompt)
//
// The model ends its turn by writing <|end|>, which is the stop string.
#include <nlohmann/json.hpp>
#include <string>

namespace flare::text::chat {

inline constexpr const char* kEndOfTurn = "<|end|>";
inline constexpr const char* kGenerationPrompt = "<|assistant|>\n";

// The messages as prompt text: a non-empty JSON array of {role, content},
// role one of "system", "user", "assistant", content a string or a list of
// {type: "text", text} parts (concatenated). With add_generation_prompt the
// text ends with the assistant's header, ready for sampling. Throws
// std::invalid_argument naming the offending field as messages[i].field, with
// i counted from index_base (0 for the HTTP API, 1 for Lua).
std::string render(const nlohmann::json& messages, bool add_generation_prompt, int index_base = 0);

// A training example: the prompt (every message but the last, then the
// generation prompt) and the completion the model must learn (the last
// message's content followed by <|end|>). The last message must be the
// assistant's. prompt + completion is render(messages, false) without its
// final newline.
struct Example {
  std::string prompt;
  std::string completion;
};
Example split(const nlohmann::json& messages, int index_base = 0);

}  // namespace flare::text::chat
