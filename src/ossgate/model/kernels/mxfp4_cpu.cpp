// MXFP4 expert kernels for x86 CPUs with AVX-512 BF16 (Sapphire Rapids and later, Zen 4/5).
//
// Weights stay packed as published: blocks (O, K/32, 16) bytes, two E2M1 codes a byte (low nibble
// first), scales (O, K/32) E8M0 bytes. Two blocks (64 weights) are decoded at a time:
//   - the 32 bytes widen to 32 16-bit lanes; low and high nibbles become two 32-lane index vectors,
//     the second block's lanes offset by 16 so each block indexes its own half of a 32-entry table;
//   - the table is E2M1 as bf16 with the block's scale added to the exponent field (an exact
//     multiply by 2**(scale-127) while the result stays a normal bf16; the caller checks the range),
//   - vpermw looks up 32 bf16 weights at once, and vdpbf16ps multiplies them with the activations
//     (de-interleaved into even and odd positions once per call) into fp32 accumulators.
// No weight is ever written back to memory on the fused path, so a decode step reads 4.25 bits a
// weight: the step is bound by memory bandwidth, not by the decoding.
//
// Plain C ABI (loaded with ctypes): builds in a second with g++ and needs no PyTorch headers.
// OpenMP resolves to the libgomp PyTorch already loaded, so both share one thread pool.
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <algorithm>
#include <vector>

// Bytes ahead of the current block that are prefetched: a stream from DRAM needs ~1 KB in flight per
// row pair to hide the latency (2 lines ahead reached 3 GB/s, see the note in mxfp4_cpu.py).
#ifndef PREFETCH
#define PREFETCH 2048
#endif

namespace {

const uint16_t E2M1_BF16[16] = {0x0000, 0x3F00, 0x3F80, 0x3FC0, 0x4000, 0x4040, 0x4080, 0x40C0,
                                0x8000, 0xBF00, 0xBF80, 0xBFC0, 0xC000, 0xC040, 0xC080, 0xC0C0};
// The 32-entry table interleaves the two blocks of a pair: lane 2*code + block. Then one dword
// broadcast (a plain load, no shuffle port) gives every lane its block's scale.
// Lanes that hold +-0 (codes 0 and 8) must not get a scale added.
const __mmask32 NONZERO = ~((3u << 0) | (3u << 16));
constexpr int64_t MAX_PAIRS = 256;  // K up to 16384
// Weights below which a parallel region costs more than it saves (small models: gpt-oss-nano, tests).
constexpr int64_t PARALLEL_MIN = 1 << 18;

// Exponent offsets (scale - 127) << 7 of a row's blocks as int16, so that dword p holds pair p's two.
inline void row_deltas(const uint8_t* sc, int64_t G, int16_t* out) {
  const __m512i bias = _mm512_set1_epi16(127);
  for (int64_t g = 0; g < G; g += 32) {
    const __mmask32 m = G - g >= 32 ? ~0u : (1u << (G - g)) - 1;
    __m512i v = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, sc + g));
    _mm512_storeu_si512(out + g, _mm512_slli_epi16(_mm512_sub_epi16(v, bias), 7));
  }
}

struct Decoder {
  __m512i base, sel_hi, mask;
  Decoder() {
    uint16_t t[32];
    for (int i = 0; i < 32; ++i) t[i] = E2M1_BF16[i / 2];
    base = _mm512_loadu_si512(t);
    sel_hi = _mm512_mask_set1_epi16(_mm512_setzero_si512(), 0xFFFF0000u, 1);  // second block's bytes
    mask = _mm512_set1_epi16(0x1E);
  }
  // 32 bytes (two blocks) + the pair's packed exponent offsets -> weights at even (lo) and odd (hi)
  // positions, bf16
  // HALF: only the first block exists (the last of a row with an odd block count); the second's lanes
  // decode to zeros
  template <bool HALF = false>
  inline void pair(const uint8_t* blk, int32_t deltas, __m512i& lo, __m512i& hi) const {
    __m512i v = _mm512_cvtepu8_epi16(HALF ? _mm256_maskz_loadu_epi8(0xFFFFu, blk)
                                          : _mm256_loadu_si256((const __m256i*)blk));
    __m512i ilo = _mm512_ternarylogic_epi32(_mm512_slli_epi16(v, 1), mask, sel_hi, 0xEA);  // 2*(v&15) | block
    __m512i ihi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 3), mask, sel_hi, 0xEA);  // 2*(v>>4) | block
    __m512i tbl = _mm512_mask_add_epi16(base, NONZERO, base, _mm512_set1_epi32(deltas));
    lo = _mm512_permutexvar_epi16(ilo, tbl);
    hi = _mm512_permutexvar_epi16(ihi, tbl);
  }
};

inline float bf16_to_float(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// R rows x NT tokens: acc over all pairs of the rows, then out[t, row] = sum + bias.
// Up to 4 tokens, even and odd positions accumulate separately (more independent vdpbf16ps chains
// while few tokens share a decoded weight); past 4 they share one accumulator (registers run out).
template <int R, int NT>
inline void rows_kernel(const Decoder& dec, const uint8_t* blocks, const uint8_t* scales, int64_t row,
                        int64_t G, int64_t O, const uint16_t* xe, const uint16_t* xo, int64_t K2,
                        const uint16_t* bias, float* out) {
  constexpr bool SPLIT = NT <= 4;
  __m512 alo[R][NT], ahi[R][SPLIT ? NT : 1];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < NT; ++t) alo[r][t] = _mm512_setzero_ps();
    for (int t = 0; t < (SPLIT ? NT : 1); ++t) ahi[r][t] = _mm512_setzero_ps();
  }
  const int64_t P = G / 2;
  alignas(64) int16_t deltas[R][2 * MAX_PAIRS + 32];
  for (int r = 0; r < R; ++r) row_deltas(scales + (row + r) * G, G, deltas[r]);
  for (int64_t p = 0; p < (G + 1) / 2; ++p) {
    __m512i wlo[R], whi[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* b = blocks + ((row + r) * G + 2 * p) * 16;
      _mm_prefetch((const char*)(b + PREFETCH), _MM_HINT_T0);  // past the row end is the next rows
      if (p < P)
        dec.pair(b, ((const int32_t*)deltas[r])[p], wlo[r], whi[r]);
      else
        dec.pair<true>(b, ((const int32_t*)deltas[r])[p], wlo[r], whi[r]);
    }
    for (int t = 0; t < NT; ++t) {
      __m512bh xl = (__m512bh)_mm512_loadu_si512(xe + t * K2 + p * 32);
      __m512bh xh = (__m512bh)_mm512_loadu_si512(xo + t * K2 + p * 32);
      for (int r = 0; r < R; ++r) {
        alo[r][t] = _mm512_dpbf16_ps(alo[r][t], (__m512bh)wlo[r], xl);
        if constexpr (SPLIT)
          ahi[r][t] = _mm512_dpbf16_ps(ahi[r][t], (__m512bh)whi[r], xh);
        else
          alo[r][t] = _mm512_dpbf16_ps(alo[r][t], (__m512bh)whi[r], xh);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float b = bias ? bf16_to_float(bias[row + r]) : 0.0f;
    for (int t = 0; t < NT; ++t) {
      __m512 sum = SPLIT ? _mm512_add_ps(alo[r][t], ahi[r][SPLIT ? t : 0]) : alo[r][t];
      out[t * O + row + r] = _mm512_reduce_add_ps(sum) + b;
    }
  }
}

// Work-shares the rows among the threads of the enclosing parallel region (serial outside one).
template <int NT>
void chunk(const Decoder& dec, const uint8_t* blocks, const uint8_t* scales, int64_t O, int64_t G,
           const uint16_t* xe, const uint16_t* xo, int64_t K2, const uint16_t* bias, float* out) {
  // rows in pairs: two independent accumulator chains per token hide vdpbf16ps latency
#pragma omp for schedule(dynamic, 16)
  for (int64_t pr = 0; pr < O / 2; ++pr)
    rows_kernel<2, NT>(dec, blocks, scales, 2 * pr, G, O, xe, xo, K2, bias, out);
  if (O % 2) {
#pragma omp single
    rows_kernel<1, NT>(dec, blocks, scales, O - 1, G, O, xe, xo, K2, bias, out);
  }
}

// Even and odd positions of n rows of x (n, K) into xe, xo (n, K2), zero-padded to whole pairs.
void split_even_odd(const uint16_t* x, int64_t n, int64_t K, int64_t K2, uint16_t* xe, uint16_t* xo) {
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < K / 2; ++i) {
      xe[t * K2 + i] = x[t * K + 2 * i];
      xo[t * K2 + i] = x[t * K + 2 * i + 1];
    }
    for (int64_t i = K / 2; i < K2; ++i) xe[t * K2 + i] = xo[t * K2 + i] = 0;
  }
}

// out (n, O) = x @ W^T + bias with x already split; n <= 8 per call of a chunk. Inside a parallel region.
void linear_split(const Decoder& dec, const uint16_t* xe, const uint16_t* xo, int64_t n, const uint8_t* blocks,
                  const uint8_t* scales, int64_t O, int64_t K, const uint16_t* bias, float* out) {
  const int64_t G = K / 32, K2 = (G + 1) / 2 * 32;
  constexpr int64_t NT = 8;  // tokens sharing one decode of the weights
  for (int64_t t0 = 0; t0 < n; t0 += NT) {
    const uint16_t *e = xe + t0 * K2, *o = xo + t0 * K2;
    float* y = out + t0 * O;
    switch (std::min(NT, n - t0)) {
      case 1: chunk<1>(dec, blocks, scales, O, G, e, o, K2, bias, y); break;
      case 2: chunk<2>(dec, blocks, scales, O, G, e, o, K2, bias, y); break;
      case 3: chunk<3>(dec, blocks, scales, O, G, e, o, K2, bias, y); break;
      case 4: chunk<4>(dec, blocks, scales, O, G, e, o, K2, bias, y); break;
      case 5: chunk<5>(dec, blocks, scales, O, G, e, o, K2, bias, y); break;
      case 6: chunk<6>(dec, blocks, scales, O, G, e, o, K2, bias, y); break;
      case 7: chunk<7>(dec, blocks, scales, O, G, e, o, K2, bias, y); break;
      default: chunk<8>(dec, blocks, scales, O, G, e, o, K2, bias, y); break;
    }
  }
}

inline uint16_t float_to_bf16(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);  // round to nearest even
}

inline float swiglu_one(float gate, float up, float alpha, float limit) {
  gate = std::min(gate, limit);
  up = std::min(std::max(up, -limit), limit);
  return gate / (1.0f + expf(-alpha * gate)) * (up + 1.0f);
}

}  // namespace

extern "C" {

// out (n, O) fp32 = x (n, K) bf16 @ dequant(blocks, scales)^T + bias (O,) bf16 or null.  K % 32 == 0.
void mxfp4_linear(const uint16_t* x, int64_t n, const uint8_t* blocks, const uint8_t* scales, int64_t O,
                  int64_t K, const uint16_t* bias, float* out) {
  static const Decoder dec;
  const int64_t K2 = (K / 32 + 1) / 2 * 32;  // a row's even (odd) positions, padded to whole pairs
  std::vector<uint16_t> xe(n * K2), xo(n * K2);
  split_even_odd(x, n, K, K2, xe.data(), xo.data());
#pragma omp parallel if (O * K >= PARALLEL_MIN)
  linear_split(dec, xe.data(), xo.data(), n, blocks, scales, O, K, bias, out);
}

// A whole MoE layer for a decode step (every expert gets at most a few tokens), in one call and one
// parallel region: for each routed expert, its tokens go through gate_up (fused MXFP4), SwiGLU and
// down, and are added to out (T, D) fp32 with their routing weights. Experts are (E, rows, K/32, 16)
// blocks, (E, rows, K/32) scales and (E, rows) bf16 biases, as in the checkpoint.
void moe_decode(const uint16_t* x, int64_t T, int64_t D, const int64_t* idx, const float* w, int64_t k,
                int64_t E, int64_t I, const uint8_t* up_blocks, const uint8_t* up_scales, const uint16_t* up_bias,
                const uint8_t* down_blocks, const uint8_t* down_scales, const uint16_t* down_bias, float alpha,
                float limit, float* out) {
  static const Decoder dec;
  std::vector<std::vector<std::pair<int64_t, float>>> routed(E);  // expert -> (token, weight)
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) routed[idx[t * k + j]].push_back({t, w[t * k + j]});
  int64_t most = 0;
  for (auto& r : routed) most = std::max<int64_t>(most, r.size());
  const int64_t Dk2 = (D / 32 + 1) / 2 * 32, Ik2 = (I / 32 + 1) / 2 * 32;
  std::vector<uint16_t> xg(most * D), xe(most * Dk2), xo(most * Dk2), h(most * I), he(most * Ik2),
      ho(most * Ik2);
  std::vector<float> up(most * 2 * I), y(most * D);
#pragma omp parallel if (2 * I * D >= PARALLEL_MIN)
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = routed[e].size();
    if (n == 0) continue;
#pragma omp single
    {
      for (int64_t i = 0; i < n; ++i) memcpy(&xg[i * D], x + routed[e][i].first * D, D * 2);
      split_even_odd(xg.data(), n, D, Dk2, xe.data(), xo.data());
    }
    linear_split(dec, xe.data(), xo.data(), n, up_blocks + e * 2 * I * (D / 32) * 16,
                 up_scales + e * 2 * I * (D / 32), 2 * I, D, up_bias + e * 2 * I, up.data());
#pragma omp single
    {
      for (int64_t i = 0; i < n * I; ++i) h[i] = float_to_bf16(swiglu_one(up[2 * i], up[2 * i + 1], alpha, limit));
      split_even_odd(h.data(), n, I, Ik2, he.data(), ho.data());
    }
    linear_split(dec, he.data(), ho.data(), n, down_blocks + e * D * (I / 32) * 16, down_scales + e * D * (I / 32),
                 D, I, down_bias + e * D, y.data());
#pragma omp single
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + routed[e][i].first * D;
      const float wi = routed[e][i].second;
      for (int64_t j = 0; j < D; ++j) o[j] += wi * y[i * D + j];
    }
  }
}

// out (O, K) bf16 = dequant(blocks, scales), for steps where many tokens share an expert (then a
// bf16 matmul, on AMX where present, beats decoding the weights again for every few tokens).
void mxfp4_dequantize(const uint8_t* blocks, const uint8_t* scales, int64_t O, int64_t K, uint16_t* out) {
  static const Decoder dec;
  const int64_t G = K / 32;
  uint16_t first[32], second[32];
  for (int j = 0; j < 16; ++j) {
    first[2 * j] = j, first[2 * j + 1] = 32 + j;  // block A: lo[j], hi[j] interleaved
    second[2 * j] = 16 + j, second[2 * j + 1] = 48 + j;  // block B
  }
  const __m512i ia = _mm512_loadu_si512(first), ib = _mm512_loadu_si512(second);
#pragma omp parallel for schedule(dynamic, 16) if (O * K >= PARALLEL_MIN)
  for (int64_t row = 0; row < O; ++row) {
    alignas(64) int16_t deltas[2 * MAX_PAIRS + 32];
    row_deltas(scales + row * G, G, deltas);
    for (int64_t p = 0; p < G / 2; ++p) {
      __m512i lo, hi;
      dec.pair(blocks + (row * G + 2 * p) * 16, ((const int32_t*)deltas)[p], lo, hi);
      uint16_t* dst = out + row * K + p * 64;
      _mm512_storeu_si512(dst, _mm512_permutex2var_epi16(lo, ia, hi));
      _mm512_storeu_si512(dst + 32, _mm512_permutex2var_epi16(lo, ib, hi));
    }
    if (G % 2) {  // the last, unpaired block
      __m512i lo, hi;
      dec.pair<true>(blocks + (row * G + G - 1) * 16, ((const int32_t*)deltas)[G / 2], lo, hi);
      _mm512_storeu_si512(out + row * K + (G - 1) * 32, _mm512_permutex2var_epi16(lo, ia, hi));
    }
  }
}

// out (n, I) bf16 = gpt-oss SwiGLU of h (n, 2I) fp32 (gate/up interleaved), computed in fp32.
// Single-threaded on purpose: it is cheap, and a parallel region costs a scheduler time slice
// whenever another process holds one of the cores.
void swiglu_bf16(const float* h, int64_t n, int64_t I, float alpha, float limit, uint16_t* out) {
  for (int64_t i = 0; i < n * I; ++i) out[i] = float_to_bf16(swiglu_one(h[2 * i], h[2 * i + 1], alpha, limit));
}

// out[tok[i], :] += w[i] * y[i, :] for the n rows one expert produced; out (T, D) fp32.
void scatter_add_rows(float* out, int64_t D, const float* y, const int64_t* tok, const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float* o = out + tok[i] * D;
    const float* r = y + i * D;
    for (int64_t j = 0; j < D; ++j) o[j] += w[i] * r[j];
  }
}

}  // extern "C"
