// bf16 linear layers for the few tokens of a decode step, on x86 CPUs with AVX-512 BF16.
//
// out (n, O) = x (n, K) @ W (O, K)^T + bias, W and x bf16, accumulated in fp32 with vdpbf16ps.
// A decode step multiplies 1-32 tokens by every attention projection and by the 201088-row
// unembedding: the work is reading W once, so each 32-weight chunk of a row is loaded once and
// multiplied with the same chunk of every token of the step (up to 8 at a time), and rows are
// split across threads. PyTorch's CPU bf16 GEMM is tuned for large M and runs this shape far
// below memory speed. Plain C ABI, loaded with ctypes (see kernels/build.py).
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

// Bytes ahead of the current chunk prefetched in every row of a tile. 24 layers of gpt-oss-20b's
// attention weights (1.27 GB) at 2 threads, 1/2/4/8 tokens: none 15.0/16.5/14.0/9.2 GB/s, 1 KB
// 17.4/17.2/15.2/11.3, 4 KB 16.0/16.6/13.2/11.1 (PyTorch 12.7/13.1/11.4/10.9).
#ifndef PREFETCH
#define PREFETCH 1024
#endif

namespace {

// Weights below which a parallel region costs more than it saves (small models: gpt-oss-nano, tests).
constexpr int64_t PARALLEL_MIN = 1 << 18;

inline float bf16_to_float(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_bf16(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);  // round to nearest even
}

// R rows of W x NT tokens: out[t, row + r] = dot(x[t], W[row + r]) + bias
template <int R, int NT>
inline void tile(const uint16_t* x, int64_t K, const uint16_t* w, int64_t row, const uint16_t* bias,
                 void* out, int64_t O, bool out_bf16) {
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  const uint16_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (row + r) * K;
  for (int64_t k = 0; k < K; k += 32) {
    __m512i wv[R];
    for (int r = 0; r < R; ++r) {
      if constexpr (PREFETCH > 0) _mm_prefetch((const char*)(wr[r] + k) + PREFETCH, _MM_HINT_T0);
      wv[r] = _mm512_loadu_si512(wr[r] + k);
    }
    for (int t = 0; t < NT; ++t) {
      __m512bh xv = (__m512bh)_mm512_loadu_si512(x + t * K + k);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], xv);
    }
  }
  for (int r = 0; r < R; ++r) {
    const float b = bias ? bf16_to_float(bias[row + r]) : 0.0f;
    for (int t = 0; t < NT; ++t) {
      const float v = _mm512_reduce_add_ps(acc[r][t]) + b;
      if (out_bf16)
        ((uint16_t*)out)[t * O + row + r] = float_to_bf16(v);
      else
        ((float*)out)[t * O + row + r] = v;
    }
  }
}

template <int NT>
void tokens(const uint16_t* x, int64_t K, const uint16_t* w, int64_t O, const uint16_t* bias, void* out,
            bool out_bf16) {
  // 4 rows a tile for few tokens (more independent accumulator chains), 2 for many (registers)
  constexpr int R = NT <= 4 ? 4 : 2;
  const int64_t tiles = O / R;
#pragma omp parallel for schedule(dynamic, 16) if (O * K >= PARALLEL_MIN)
  for (int64_t i = 0; i < tiles; ++i) tile<R, NT>(x, K, w, i * R, bias, out, O, out_bf16);
  for (int64_t row = tiles * R; row < O; ++row) tile<1, NT>(x, K, w, row, bias, out, O, out_bf16);
}

}  // namespace

extern "C" {

// out (n, O) fp32 or bf16 = x (n, K) bf16 @ W (O, K)^T bf16 + bias (O,) bf16 or null.  K % 32 == 0.
void bf16_linear(const uint16_t* x, int64_t n, const uint16_t* w, int64_t O, int64_t K, const uint16_t* bias,
                 void* out, int32_t out_bf16) {
  constexpr int64_t NT = 8;  // tokens sharing one read of W
  const int64_t elem = out_bf16 ? 2 : 4;
  for (int64_t t0 = 0; t0 < n; t0 += NT) {
    const uint16_t* xs = x + t0 * K;
    void* o = (char*)out + t0 * O * elem;
    switch (std::min(NT, n - t0)) {
      case 1: tokens<1>(xs, K, w, O, bias, o, out_bf16); break;
      case 2: tokens<2>(xs, K, w, O, bias, o, out_bf16); break;
      case 3: tokens<3>(xs, K, w, O, bias, o, out_bf16); break;
      case 4: tokens<4>(xs, K, w, O, bias, o, out_bf16); break;
      case 5: tokens<5>(xs, K, w, O, bias, o, out_bf16); break;
      case 6: tokens<6>(xs, K, w, O, bias, o, out_bf16); break;
      case 7: tokens<7>(xs, K, w, O, bias, o, out_bf16); break;
      default: tokens<8>(xs, K, w, O, bias, o, out_bf16); break;
    }
  }
}

}  // extern "C"
