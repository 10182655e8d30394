// MXFP4 expert kernels for x86 CPUs with AVX-512 (VNNI for the fused path, BF16 for the dequantiser).
//
// Weights stay packed as published: blocks (O, K/32, 16) bytes, two E2M1 codes a byte (low nibble
// first), scales (O, K/32) E8M0 bytes.
//
// Fused path (few tokens per expert: decode steps). As llama.cpp does, the activations are quantised
// to int8 per 32-block (Q8_0: one fp32 scale a block) once per call, laid out as the packed weights
// need them: a row's even elements, then its odd ones. Four blocks (128 weights, 64 bytes) at a time:
//   - low and high nibbles index a 16-entry byte table with vpshufb: 2 x E2M1 (an integer in -12..12)
//     plus 12, so that every weight is an unsigned byte;
//   - vpdpbusd multiplies them with the even and odd activations into 16 int32 lanes (4 per block);
//     the +12 offset comes back out by starting each lane at -12 x the sum of its activations
//     (precomputed with the quantisation, shared by every row);
//   - each lane's integer sum takes its block's two scales (2**(e-127) built in the exponent field,
//     and the activation scale / 2) with one fp32 multiply-add.
// Per 128 weights and token that is two vpdpbusd and two fp32 ops, against eight vdpbf16ps-path uops
// when the activations stayed bf16: a decode step streams the experts at ~75% of the memory bandwidth
// (bf16 activations reached ~45%, bound by the shuffle port). The cost is Q8_0 rounding of the
// activations (relative error ~0.4% a block), the same trade llama.cpp makes.
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

// Bytes ahead of the current block that are prefetched: a stream from DRAM needs several KB in
// flight per core to hide the latency. 2 threads, experts of 8 gpt-oss-20b layers streamed, GB/s at 1 and
// 8 tokens (4 and 21 experts): Intel, 2 KB -> 4 KB: 14.7 -> 15.4 (1 token); Zen 5, 1/2/4/8/16/32 KB:
// 24.0/30.5/35.3/37.7/37.5/36.7 and 21.2/26.7/31.5/32.8/32.4/31.2.
#ifndef PREFETCH
#define PREFETCH 8192
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

// The dequantiser's decoder (bf16 out, for the many-token path).
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

// E2M1 codes doubled (exact integers) plus 12: unsigned bytes for vpdpbusd.
const int8_t E2M1_X2_PLUS12[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};

// n tokens' activations quantised for the fused kernel, chunk-major: chunk c of token t is the 256
// bytes at (c * n + t) * 256, so that the kernel walks every token's data with one pointer and
// constant offsets (a pointer a token and a row ran GCC out of registers: loop counters went to the
// stack, and the tiles ran at half speed).
struct Q8 {
  int64_t C = 0, n = 0;  // chunks (4 blocks, 128 elements) a row, tokens
  // per (chunk, token): 64 even elements (int8), 64 odd ones (int8), 16 int32 lanes of -12 x the sum of
  // the 8 activations a vpdpbusd lane covers, 16 fp32 lanes of the lane's block scale / 2 (the table is doubled)
  std::vector<int8_t> data;
  static constexpr int64_t STRIDE = 256, XO = 64, NC = 128, SA = 192;
};

inline __m512 load16(const uint16_t* p) {  // 16 bf16 -> fp32
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}

// x (n, K) bf16 -> q. Rounds to nearest even (the MXCSR default), as PyTorch's round does.
void quantize(const uint16_t* x, int64_t n, int64_t K, Q8& q) {
  const int64_t G = K / 32, C = (G + 3) / 4;
  q.C = C;
  q.n = n;
  q.data.assign(C * n * Q8::STRIDE, 0);  // a row's last chunk may hold fewer than 4 blocks: zeros
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i twelve = _mm512_set1_epi8(12);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t g = 0; g < G; ++g) {
      int8_t* d = q.data.data() + ((g / 4) * n + t) * Q8::STRIDE;
      const int64_t l = g % 4;  // the block's place in its chunk
      const __m512 v0 = load16(x + t * K + g * 32), v1 = load16(x + t * K + g * 32 + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
      const __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
      const __m512 ve = _mm512_mul_ps(_mm512_permutex2var_ps(v0, even, v1), id);
      const __m512 vo = _mm512_mul_ps(_mm512_permutex2var_ps(v0, odd, v1), id);
      _mm_storeu_si128((__m128i*)(d + l * 16), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(ve)));
      _mm_storeu_si128((__m128i*)(d + Q8::XO + l * 16), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(vo)));
      float* sa = (float*)(d + Q8::SA);
      for (int j = 0; j < 4; ++j) sa[l * 4 + j] = amax / 127.0f * 0.5f;  // lanes 4l..4l+3
    }
  }
  for (int64_t i = 0; i < C * n; ++i) {
    int8_t* d = q.data.data() + i * Q8::STRIDE;
    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), twelve, _mm512_loadu_si512(d));
    s = _mm512_dpbusd_epi32(s, twelve, _mm512_loadu_si512(d + Q8::XO));
    _mm512_storeu_si512(d + Q8::NC, _mm512_sub_epi32(_mm512_setzero_si512(), s));
  }
}

// Runs f on one thread of the enclosing parallel region (SHARED), or simply runs it.
template <bool SHARED, class F>
inline void once(F f) {
  if constexpr (SHARED) {
#pragma omp single
    f();
  } else {
    f();
  }
}

// R rows x NT tokens (tokens t0.. of q): out[t, row] = dot + bias.
template <int R, int NT>
inline void rows_q8(const uint8_t* blocks, const uint8_t* scales, int64_t row, int64_t G, int64_t O, const Q8& q,
                    int64_t t0, const uint16_t* bias, float* out) {
  const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)E2M1_X2_PLUS12));
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  // scale byte b -> the top byte of lanes 4b..4b+3 (then >> 1: the exponent field of an fp32)
  const __m512i to_hi = _mm512_set_epi32(0x03000000, 0x03000000, 0x03000000, 0x03000000, 0x02000000, 0x02000000,
                                         0x02000000, 0x02000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0, 0, 0, 0);
  constexpr __mmask64 HIBYTE = 0x8888888888888888ull;
  const int64_t C = q.C, rs = G * 16;  // chunks a row, bytes a row of blocks
  const uint8_t* b = blocks + row * rs;
  const uint8_t* sp = scales + row * G;
  const int8_t* x = q.data.data() + t0 * Q8::STRIDE;
  const int64_t xstep = q.n * Q8::STRIDE;
  __m512 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t c = 0; c < C; ++c, b += 64, sp += 4, x += xstep) {
    const int64_t left = G - 4 * c;  // blocks in this chunk: 4, or fewer at the row's end
    __m512i wl[R], wh[R];
    __m512 sw[R];
    for (int r = 0; r < R; ++r) {
      _mm_prefetch((const char*)(b + r * rs + PREFETCH), _MM_HINT_T0);  // past the row end is the next rows
      const __m512i v = left >= 4 ? _mm512_loadu_si512(b + r * rs)
                                  : _mm512_maskz_loadu_epi8((1ull << (16 * left)) - 1, b + r * rs);
      wl[r] = _mm512_shuffle_epi8(tbl, _mm512_and_si512(v, low4));
      wh[r] = _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16(v, 4), low4));
      // missing blocks read scale 0 (-> 0.0f, not a NaN from a neighbour's 255)
      int32_t four;  // a full chunk's 4 scale bytes, broadcast (a load, no shuffle)
      if (left >= 4) memcpy(&four, sp + r * G, 4);
      const __m512i sb = left >= 4 ? _mm512_set1_epi32(four)
                                   : _mm512_castsi128_si512(_mm_maskz_loadu_epi8((1u << left) - 1, sp + r * G));
      sw[r] = _mm512_castsi512_ps(_mm512_srli_epi32(_mm512_maskz_permutexvar_epi8(HIBYTE, to_hi, sb), 1));
    }
    for (int t = 0; t < NT; ++t) {
      const int8_t* xt = x + t * Q8::STRIDE;
      __m512i xe = _mm512_loadu_si512(xt), xo = _mm512_loadu_si512(xt + Q8::XO);
      __m512i nc = _mm512_loadu_si512(xt + Q8::NC);
      __m512 sa = _mm512_loadu_ps((const float*)(xt + Q8::SA));
      // in registers for all R rows: left to itself, GCC re-reads them from memory for every row,
      // and that ran the tiles at ~60% of this speed
      asm("" : "+v"(xe), "+v"(xo), "+v"(nc), "+v"(sa));
      for (int r = 0; r < R; ++r) {
        const __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(nc, wl[r], xe), wh[r], xo);
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(sw[r], sa), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const float bb = bias ? bf16_to_float(bias[row + r]) : 0.0f;
    for (int t = 0; t < NT; ++t) out[(t0 + t) * O + row + r] = _mm512_reduce_add_ps(acc[r][t]) + bb;
  }
}

// All rows for NT tokens. SHARED: the rows are work-shared among the threads of the enclosing parallel
// region (serial outside one); otherwise the calling thread does them all (it owns the whole matrix).
template <int NT, bool SHARED>
void chunk(const uint8_t* blocks, const uint8_t* scales, int64_t O, int64_t G, const Q8& q, int64_t t0,
           const uint16_t* bias, float* out) {
  // rows in tiles: independent accumulator chains hide the vpdpbusd latency, and each token's activations,
  // loaded once a chunk, serve every row of the tile. 4 rows up to 4 tokens, 2 past (registers). A batch-8
  // step of 20b experts (21 experts, 1-4 tokens each), 2 threads, Zen 5: 2 rows 36.6 GB/s, 4 rows 41.1.
  constexpr int R = NT <= 4 ? 4 : 2;
  const int64_t tiles = O / R;
  if constexpr (SHARED) {
#pragma omp for schedule(dynamic, 8)
    for (int64_t i = 0; i < tiles; ++i) rows_q8<R, NT>(blocks, scales, R * i, G, O, q, t0, bias, out);
  } else {
    for (int64_t i = 0; i < tiles; ++i) rows_q8<R, NT>(blocks, scales, R * i, G, O, q, t0, bias, out);
  }
  if (O % R) {
    once<SHARED>([&] {
      for (int64_t row = tiles * R; row < O; ++row) rows_q8<1, NT>(blocks, scales, row, G, O, q, t0, bias, out);
    });
  }
}

// out (n, O) = x @ W^T + bias for the n quantised tokens of q (SHARED: see chunk).
template <bool SHARED = true>
void linear_q8(const Q8& q, int64_t n, const uint8_t* blocks, const uint8_t* scales, int64_t O, int64_t K,
               const uint16_t* bias, float* out) {
  const int64_t G = K / 32;
  constexpr int64_t NT = 8;  // tokens sharing one decode of the weights
  for (int64_t t0 = 0; t0 < n; t0 += NT) {
    switch (std::min(NT, n - t0)) {
      case 1: chunk<1, SHARED>(blocks, scales, O, G, q, t0, bias, out); break;
      case 2: chunk<2, SHARED>(blocks, scales, O, G, q, t0, bias, out); break;
      case 3: chunk<3, SHARED>(blocks, scales, O, G, q, t0, bias, out); break;
      case 4: chunk<4, SHARED>(blocks, scales, O, G, q, t0, bias, out); break;
      case 5: chunk<5, SHARED>(blocks, scales, O, G, q, t0, bias, out); break;
      case 6: chunk<6, SHARED>(blocks, scales, O, G, q, t0, bias, out); break;
      case 7: chunk<7, SHARED>(blocks, scales, O, G, q, t0, bias, out); break;
      default: chunk<8, SHARED>(blocks, scales, O, G, q, t0, bias, out); break;
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

using Routed = std::vector<std::pair<int64_t, float>>;  // an expert's (token, routing weight)

// A layer's experts as in the checkpoint: (E, rows, K/32, 16) blocks, (E, rows, K/32) scales, (E, rows) biases.
struct ExpertWeights {
  int64_t D, I;
  const uint8_t *up_blocks, *up_scales, *down_blocks, *down_scales;
  const uint16_t *up_bias, *down_bias;
  float alpha, limit;
};

// One expert's working memory, for up to `most` tokens.
struct ExpertBuffers {
  Q8 qx, qh;
  std::vector<uint16_t> xg, h;
  std::vector<float> up, y;
  ExpertBuffers(int64_t most, int64_t D, int64_t I) : xg(most * D), h(most * I), up(most * 2 * I), y(most * D) {}
};

// Expert e on its tokens: gate_up, SwiGLU, down, and the rows added to out with their routing weights.
// SHARED: the threads of the enclosing parallel region share the rows of each matmul (buffers shared);
// otherwise the calling thread does it all (its own buffers).
template <bool SHARED>
void run_expert(const uint16_t* x, const ExpertWeights& W, int64_t e, const Routed& tokens, ExpertBuffers& b,
                float* out) {
  const int64_t D = W.D, I = W.I, n = tokens.size();
  once<SHARED>([&] {
    for (int64_t i = 0; i < n; ++i) memcpy(&b.xg[i * D], x + tokens[i].first * D, D * 2);
    quantize(b.xg.data(), n, D, b.qx);
  });
  linear_q8<SHARED>(b.qx, n, W.up_blocks + e * 2 * I * (D / 32) * 16, W.up_scales + e * 2 * I * (D / 32), 2 * I, D,
                    W.up_bias + e * 2 * I, b.up.data());
  once<SHARED>([&] {
    // bf16 between the matmuls, as on every other path
    for (int64_t i = 0; i < n * I; ++i)
      b.h[i] = float_to_bf16(swiglu_one(b.up[2 * i], b.up[2 * i + 1], W.alpha, W.limit));
    quantize(b.h.data(), n, I, b.qh);
  });
  linear_q8<SHARED>(b.qh, n, W.down_blocks + e * D * (I / 32) * 16, W.down_scales + e * D * (I / 32), D, I,
                    W.down_bias + e * D, b.y.data());
  once<SHARED>([&] {
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + tokens[i].first * D;
      for (int64_t j = 0; j < D; ++j) o[j] += tokens[i].second * b.y[i * D + j];
    }
  });
}

}  // namespace

extern "C" {

// out (n, O) fp32 = x (n, K) bf16 @ dequant(blocks, scales)^T + bias (O,) bf16 or null.  K % 32 == 0.
void mxfp4_linear(const uint16_t* x, int64_t n, const uint8_t* blocks, const uint8_t* scales, int64_t O,
                  int64_t K, const uint16_t* bias, float* out) {
  Q8 q;
  quantize(x, n, K, q);
#pragma omp parallel if (O * K >= PARALLEL_MIN)
  linear_q8(q, n, blocks, scales, O, K, bias, out);
}

// A whole MoE layer for a decode step (every expert gets at most a few tokens), in one call and one
// parallel region: for each routed expert, its tokens go through gate_up (fused MXFP4), SwiGLU and
// down, and are added to out (T, D) fp32 with their routing weights. Experts are (E, rows, K/32, 16)
// blocks, (E, rows, K/32) scales and (E, rows) bf16 biases, as in the checkpoint.
// With at least two routed experts a thread, each thread takes whole experts (no barrier between
// an expert's steps, one stream per thread: a batch-8 step of gpt-oss-20b routes ~21 of 32 experts);
// with fewer, the threads share each expert's rows.
void moe_decode(const uint16_t* x, int64_t T, int64_t D, const int64_t* idx, const float* w, int64_t k,
                int64_t E, int64_t I, const uint8_t* up_blocks, const uint8_t* up_scales, const uint16_t* up_bias,
                const uint8_t* down_blocks, const uint8_t* down_scales, const uint16_t* down_bias, float alpha,
                float limit, float* out) {
  const ExpertWeights W{D, I, up_blocks, up_scales, down_blocks, down_scales, up_bias, down_bias, alpha, limit};
  std::vector<Routed> routed(E);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) routed[idx[t * k + j]].push_back({t, w[t * k + j]});
  int64_t most = 0;
  std::vector<int64_t> active;
  for (int64_t e = 0; e < E; ++e) {
    most = std::max<int64_t>(most, routed[e].size());
    if (!routed[e].empty()) active.push_back(e);
  }
  const bool parallel = 2 * I * D >= PARALLEL_MIN;
  const int threads = parallel ? omp_get_max_threads() : 1;
  if (threads > 1 && (int64_t)active.size() >= 2 * threads) {
    std::vector<float> partial((threads - 1) * T * D, 0.0f);  // thread 0 adds into out directly
#pragma omp parallel num_threads(threads)
    {
      ExpertBuffers b(most, D, I);
      const int tid = omp_get_thread_num();
      float* acc = tid == 0 ? out : partial.data() + (tid - 1) * T * D;
#pragma omp for schedule(dynamic, 1)
      for (size_t a = 0; a < active.size(); ++a) run_expert<false>(x, W, active[a], routed[active[a]], b, acc);
    }
    for (int t = 1; t < threads; ++t)
      for (int64_t i = 0; i < T * D; ++i) out[i] += partial[(t - 1) * T * D + i];
    return;
  }
  ExpertBuffers b(most, D, I);
#pragma omp parallel if (parallel)
  for (const int64_t e : active) run_expert<true>(x, W, e, routed[e], b, out);
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
