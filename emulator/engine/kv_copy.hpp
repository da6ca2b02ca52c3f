#pragma once
// The KV cache of a prompt for one more choice of the same request.
#include <memory>
#include <span>

#include "emulator/model/model.hpp"

namespace flare::engine {

using CachePtr = std::unique_ptr<model::Model::Cache, void (*)(model::Model::Cache*)>;

// Copies `prefilled` (the cache after prefilling `prompt`) when the model
// offers `copy_cache(const Cache&)`; otherwise prefills the prompt again into a
// new cache, which yields the same keys and values at the cost of the compute.
template <class M = model::Model>
CachePtr copy_cache(const M& m, const typename M::Cache& prefilled, std::span<const int> prompt) {
  if constexpr (requires { m.copy_cache(prefilled); }) {
    return m.copy_cache(prefilled);
  } else {
    CachePtr c = m.new_cache();
    m.prefill(*c, prompt, nullptr, nullptr);
    return c;
  }
}

}  // namespace flare::engine
