// bf16 linear layers for the few tokens of a decode step, on x86 CPUs with AVX-512 BF16.
//
// out (n, O) = x (n, K) @ W (O, K)^T + bias, W and x bf16, accumulated in fp32 with vdpbf16ps.
// A decode step multiplies 1-32 tokens by every attention projection and by the 201088-row
// unembedding: the work is reading W once, so each 32-weight chunk of a row is loaded once and
// multiplied with the same chunk of every token of the step (up to 8 at a time), and rows are
// split across threads. PyTorch's CPU bf16 GEMM is tuned for large M and runs this shape far
// below memory speed. Past a few tokens vdpbf16ps becomes the bound (8 multiply-adds per 64 bytes
// of W at 8 tokens), so where the CPU has AMX, 2-32 tokens go through tiles instead: W's rows are
// the A tiles, the tokens (packed in VNNI pairs) the B tile, and the step is memory-bound again.
// Plain C ABI, loaded with ctypes (see kernels/build.py).
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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
// Tokens above which AMX tiles take over from vdpbf16ps. 2 threads, GB/s on 24 layers of gpt-oss-20b's q_proj
// (4096x2880) at 1/2/4 tokens, vdpbf16ps 16.7/16.4/15.4, AMX 17.3/18.3/18.7; the unembedding 25.4/23.1/21.5
// against 24.7/24.1/25.1.
#ifndef AMX_MIN_TOKENS
#define AMX_MIN_TOKENS 1
#endif

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

// out[t, row] for every token t < n (one row, tokens in groups of 8): the rows AMX tiles leave over
void one_row(const uint16_t* x, int64_t n, int64_t K, const uint16_t* w, int64_t row, const uint16_t* bias,
             void* out, int64_t O, bool out_bf16) {
  const int64_t elem = out_bf16 ? 2 : 4;
  for (int64_t t0 = 0; t0 < n; t0 += 8) {
    const uint16_t* xs = x + t0 * K;
    void* o = (char*)out + t0 * O * elem;
    switch (std::min<int64_t>(8, n - t0)) {
      case 1: tile<1, 1>(xs, K, w, row, bias, o, O, out_bf16); break;
      case 2: tile<1, 2>(xs, K, w, row, bias, o, O, out_bf16); break;
      case 3: tile<1, 3>(xs, K, w, row, bias, o, O, out_bf16); break;
      case 4: tile<1, 4>(xs, K, w, row, bias, o, O, out_bf16); break;
      case 5: tile<1, 5>(xs, K, w, row, bias, o, O, out_bf16); break;
      case 6: tile<1, 6>(xs, K, w, row, bias, o, O, out_bf16); break;
      case 7: tile<1, 7>(xs, K, w, row, bias, o, O, out_bf16); break;
      default: tile<1, 8>(xs, K, w, row, bias, o, O, out_bf16); break;
    }
  }
}

template <int NT>
void tokens(const uint16_t* x, int64_t K, const uint16_t* w, int64_t O, const uint16_t* bias, void* out,
            bool out_bf16) {
  // 4 rows a tile for few tokens (more independent accumulator chains), 3 for many (3 x 8 accumulators
  // + 3 weight vectors + 1 token vector fit the 32 registers). 8 tokens, 2 threads, Zen 5, 24 q_proj-sized
  // matrices / the unembedding streamed: 2 rows 32.0 / 35.4 GB/s, 3 rows 37.9 / 41.7 (PyTorch 24.0 / 24.2).
  constexpr int R = NT <= 4 ? 4 : 3;
  const int64_t tiles = O / R;
#pragma omp parallel for schedule(dynamic, 16) if (O * K >= PARALLEL_MIN)
  for (int64_t i = 0; i < tiles; ++i) tile<R, NT>(x, K, w, i * R, bias, out, O, out_bf16);
  for (int64_t row = tiles * R; row < O; ++row) tile<1, NT>(x, K, w, row, bias, out, O, out_bf16);
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
constexpr bool AMX_BUILT = true;

// Tiles: C (fp32 16 rows x tokens) tmm0-3 as [row tile][token group], A (16 rows of W x 32 k) tmm4-5,
// B (16 k-pairs x tokens, VNNI) tmm6-7. A block is 2 row tiles: 32 rows of W read once for <= 32 tokens.
// No software prefetch here: the hardware's keeps up with 32 row streams (2 threads, GB/s at 8 tokens with
// none/512/1024/2048 bytes ahead: q_proj 20.3/21.5/19.5/18.7, k_proj 20.5/20.4/17.0/16.1, unembedding
// 27.4/27.2/25.2/24.4).
constexpr int AMX_ROWS = 32;

struct TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

TileConfig tile_config(int64_t n0, int64_t n1) {
  TileConfig c;
  for (int t = 0; t < 8; ++t) c.rows[t] = 16;
  c.colsb[0] = c.colsb[1] = c.colsb[6] = n0 * 4;  // a token is one fp32 of C and one bf16 pair of B
  c.colsb[2] = c.colsb[3] = c.colsb[7] = n1 * 4;
  c.colsb[4] = c.colsb[5] = 64;
  if (n1 == 0) c.rows[2] = c.rows[3] = c.rows[7] = 0, c.colsb[2] = c.colsb[3] = c.colsb[7] = 0;
  return c;
}

// x (n, K) -> per 16-token group g, per 32-wide chunk c of K: B[k2][t][j] = x[16g + t][32c + 2 k2 + j]
void pack_vnni(const uint16_t* x, int64_t n, int64_t K, uint16_t* packed) {
  for (int64_t g = 0; g * 16 < n; ++g) {
    const int64_t nt = std::min<int64_t>(16, n - g * 16);
    uint16_t* dst = packed + g * 16 * K;
    for (int64_t c = 0; c < K / 32; ++c)
      for (int64_t k2 = 0; k2 < 16; ++k2)
        for (int64_t t = 0; t < nt; ++t)
          for (int j = 0; j < 2; ++j) *dst++ = x[(g * 16 + t) * K + c * 32 + 2 * k2 + j];
  }
}

template <bool TWO_GROUPS>
void amx_block(const uint16_t* packed, int64_t n, int64_t K, const uint16_t* w, int64_t row,
               const uint16_t* bias, void* out, int64_t O, bool out_bf16) {
  const int64_t n0 = std::min<int64_t>(16, n), n1 = n - n0;
  const char* a0 = (const char*)(w + row * K);
  const char* a1 = a0 + 16 * K * 2;
  const char* b0 = (const char*)packed;
  const char* b1 = (const char*)(packed + 16 * K);
  const int64_t stride = K * 2;
  _tile_zero(0);
  _tile_zero(1);
  if constexpr (TWO_GROUPS) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t c = 0; c < K / 32; ++c) {
    _tile_loadd(4, a0 + c * 64, stride);
    _tile_loadd(5, a1 + c * 64, stride);
    _tile_loadd(6, b0 + c * 64 * n0, n0 * 4);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 5, 6);
    if constexpr (TWO_GROUPS) {
      _tile_loadd(7, b1 + c * 64 * n1, n1 * 4);
      _tile_dpbf16ps(2, 4, 7);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  float acc[4][16][16];
  _tile_stored(0, acc[0], 64);
  _tile_stored(1, acc[1], 64);
  if constexpr (TWO_GROUPS) {
    _tile_stored(2, acc[2], 64);
    _tile_stored(3, acc[3], 64);
  }
  for (int g = 0; g < (TWO_GROUPS ? 2 : 1); ++g)
    for (int half = 0; half < 2; ++half)
      for (int i = 0; i < 16; ++i) {
        const int64_t o = row + half * 16 + i;
        const float b = bias ? bf16_to_float(bias[o]) : 0.0f;
        for (int64_t t = 0; t < (g ? n1 : n0); ++t) {
          const float v = acc[g * 2 + half][i][t] + b;
          const int64_t at = (g * 16 + t) * O + o;
          if (out_bf16)
            ((uint16_t*)out)[at] = float_to_bf16(v);
          else
            ((float*)out)[at] = v;
        }
      }
}

void amx_linear(const uint16_t* x, int64_t n, const uint16_t* w, int64_t O, int64_t K, const uint16_t* bias,
                void* out, bool out_bf16) {
  uint16_t* packed = (uint16_t*)aligned_alloc(64, ((n + 15) / 16 * 16 * K * 2 + 63) / 64 * 64);
  pack_vnni(x, n, K, packed);
  const TileConfig config = tile_config(std::min<int64_t>(16, n), std::max<int64_t>(0, n - 16));
  const int64_t blocks = O / AMX_ROWS;
#pragma omp parallel if (O * K >= PARALLEL_MIN)
  {
    _tile_loadconfig(&config);  // tile state is per thread
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < blocks; ++i) {
      if (n > 16)
        amx_block<true>(packed, n, K, w, i * AMX_ROWS, bias, out, O, out_bf16);
      else
        amx_block<false>(packed, n, K, w, i * AMX_ROWS, bias, out, O, out_bf16);
    }
    _tile_release();
  }
  for (int64_t row = blocks * AMX_ROWS; row < O; ++row) one_row(x, n, K, w, row, bias, out, O, out_bf16);
  free(packed);
}

// Linux hands a process the AMX tile state only after it asks for it.
bool amx_permitted() {
  constexpr int ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
  static const bool ok = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
  return ok;
}
#else
constexpr bool AMX_BUILT = false;
void amx_linear(const uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, const uint16_t*, void*, bool) {}
bool amx_permitted() { return false; }
#endif

}  // namespace

extern "C" {

// Most tokens for which bf16_linear beats PyTorch's GEMM: 32 with AMX tiles, else 16 (see linear_cpu.py).
// More are computed right, only slower.
int32_t bf16_linear_max_tokens() { return AMX_BUILT && amx_permitted() ? 32 : 16; }

// out (n, O) fp32 or bf16 = x (n, K) bf16 @ W (O, K)^T bf16 + bias (O,) bf16 or null.  K % 32 == 0.
void bf16_linear(const uint16_t* x, int64_t n, const uint16_t* w, int64_t O, int64_t K, const uint16_t* bias,
                 void* out, int32_t out_bf16) {
  if (n > AMX_MIN_TOKENS && n <= 32 && AMX_BUILT && amx_permitted())
    return amx_linear(x, n, w, O, K, bias, out, out_bf16);
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
