// Chooses the float product's instruction set once, from the CPU (and the
// FLARE_MATMUL_ISA cap).
#include "emulator/model/matmul_isa.hpp"

#include <cstdlib>
#include <cstring>

namespace flare::model::detail {

MatmulIsa matmul_isa() {
  static const MatmulIsa isa = [] {
    __builtin_cpu_init();
    const bool fma = __builtin_cpu_supports("fma") != 0;
    MatmulIsa best = MatmulIsa::kGeneric;
    if (fma && __builtin_cpu_supports("avx2")) best = MatmulIsa::kAvx2Fma;
    if (fma && __builtin_cpu_supports("avx512f")) best = MatmulIsa::kAvx512;
    const char* cap = std::getenv("FLARE_MATMUL_ISA");
    if (cap && std::strcmp(cap, "generic") == 0) best = MatmulIsa::kGeneric;
    if (cap && std::strcmp(cap, "avx2") == 0 && best == MatmulIsa::kAvx512)
      best = MatmulIsa::kAvx2Fma;
    return best;
  }();
  return isa;
}

}  // namespace flare::model::detail
