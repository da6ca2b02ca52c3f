#pragma once
// What the OpenAI-compatible surface (openai_routes.cpp) and the completions
// route (completion_routes.cpp) share: the completions route hands a batch of
// prompts to complete_batch, and the chat route and complete_batch run each
// single-prompt completion through complete_one.
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "emulator/server/routes.hpp"

namespace flare::emulator {

// One completion request with a single prompt (a string or a list of token
// ids), answered into `res` as JSON or, with stream = true, as SSE.
void complete_one(RouteEnv& env, const nlohmann::json& body, httplib::Response& res);

// Whether body.prompt is a batch: a list of strings or of token-id lists.
bool is_prompt_batch(const nlohmann::json& body);

// Every prompt of the batch with the same parameters; the choices come in
// OpenAI's order, index = prompt_index * n + j.
void complete_batch(RouteEnv& env, const nlohmann::json& body, httplib::Response& res);

}  // namespace flare::emulator
