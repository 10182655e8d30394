// Attention of one decoding token over its sequence's KV cache, with gpt-oss's per-head sinks.
//
// q (H, d) bf16 after RoPE; keys and values (S, G, d) bf16; key positions (S,) int64 (-1 = empty slot).
// Head h reads kv head h / (H / G). A key is visible when 0 <= its position <= q_pos and, for
// sliding layers, q_pos - its position < window. Scores are exact fp32 dot products of the bf16
// values (vdpbf16ps), the softmax includes the head's sink logit (a column with a zero value), and
// the output is the probability-weighted sum of the values, rounded to bf16.
// A decode step calls this once per sequence and layer: PyTorch needs ~20 small ops for the same
// work, and their dispatch, not the arithmetic, was the cost at short contexts.
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <vector>

namespace {

inline uint16_t float_to_bf16(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);  // round to nearest even
}

inline float dot_bf16(const uint16_t* a, const uint16_t* b, int64_t d) {  // d % 16 == 0
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < d; i += 32) {
    const __mmask32 m = d - i >= 32 ? ~0u : 0xFFFFu;
    acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_maskz_loadu_epi16(m, a + i),
                           (__m512bh)_mm512_maskz_loadu_epi16(m, b + i));
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace

extern "C" {

// out (H, d) bf16.  d % 16 == 0.
void attention_decode(const uint16_t* q, int64_t H, int64_t G, int64_t d, const uint16_t* k, const uint16_t* v,
                      const int64_t* k_pos, int64_t S, int64_t q_pos, int64_t window, const float* sinks,
                      uint16_t* out) {
  const int64_t R = H / G;
  const float scale = 1.0f / sqrtf((float)d);
  std::vector<int64_t> seen;  // indices of the visible keys
  seen.reserve(S);
  for (int64_t j = 0; j < S; ++j) {
    const int64_t p = k_pos[j];
    if (p >= 0 && p <= q_pos && (window <= 0 || q_pos - p < window)) seen.push_back(j);
  }
  const int64_t n = seen.size();
  std::vector<float> s(n), acc(d);
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / R;
    const uint16_t* qh = q + h * d;
    float m = sinks[h];
    for (int64_t i = 0; i < n; ++i) {
      s[i] = dot_bf16(qh, k + (seen[i] * G + g) * d, d) * scale;
      m = std::max(m, s[i]);
    }
    float denom = expf(sinks[h] - m);
    for (int64_t i = 0; i < n; ++i) denom += (s[i] = expf(s[i] - m));
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      const float p = s[i] / denom;
      const uint16_t* vj = v + (seen[i] * G + g) * d;
      for (int64_t c = 0; c < d; c += 16) {
        __m512 vv = _mm512_cvtpbh_ps((__m256bh)_mm256_loadu_si256((const __m256i*)(vj + c)));
        _mm512_storeu_ps(&acc[c], _mm512_fmadd_ps(_mm512_set1_ps(p), vv, _mm512_loadu_ps(&acc[c])));
      }
    }
    for (int64_t c = 0; c < d; ++c) out[h * d + c] = float_to_bf16(acc[c]);
  }
}

}  // extern "C"
