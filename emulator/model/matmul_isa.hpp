#pragma once
// The float matrix product compiled for wider instruction sets, chosen at run
// time so that the library still runs on any x86-64 CPU. Declarations only:
// the kernels live in files compiled with their own -m flags.
#include <cstddef>

namespace flare::model::detail {

// The instruction sets of the float product, weakest first.
enum class MatmulIsa { kGeneric, kAvx2Fma, kAvx512 };

// The widest set this CPU runs, chosen once. The environment variable
// FLARE_MATMUL_ISA=generic|avx2 caps it (to exercise the portable path).
MatmulIsa matmul_isa();

// y[i, o] (+)= Σ_k x(i, k) · wt[k·out + o] over rows i < rows, with
// x(i, k) = x[i·x_row + k·x_k]: rows of x (x_row = in, x_k = 1) or columns of
// a transposed one (x_row = 1). Each y element is one fused multiply-add chain
// over k in increasing order started from 0, then added to the old y when
// `accumulate`: both sets give the same bits for every shape and row grouping.
void matmul_f32_avx2(const float* x, size_t x_row, size_t x_k, int rows, int in, const float* wt,
                     int out, float* y, bool accumulate);
void matmul_f32_avx512(const float* x, size_t x_row, size_t x_k, int rows, int in, const float* wt,
                       int out, float* y, bool accumulate);

}  // namespace flare::model::detail
