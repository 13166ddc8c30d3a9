// Philox4x32-10 (Salmon et al., SC'11), bit-identical to triton.language.philox with 32-bit counters:
// key = (seed_lo, seed_hi), counters (c0..c3), ten rounds. Shared by CPU and CUDA kernels so both produce the
// exact words the Triton kernels and the pure-PyTorch reference produce.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define N2N_HD __host__ __device__ __forceinline__
#else
#define N2N_HD inline
#endif

namespace n2n_fast {

struct Philox4 {
  uint32_t v[4];
};

N2N_HD uint32_t mulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

N2N_HD Philox4 philox4x32_10(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3) {
  uint32_t k0 = static_cast<uint32_t>(seed & 0xffffffffu);
  uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  constexpr uint32_t kRoundA = 0xD2511F53u, kRoundB = 0xCD9E8D57u;
  constexpr uint32_t kKeyA = 0x9E3779B9u, kKeyB = 0xBB67AE85u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint32_t old0 = c0, old2 = c2;
    c0 = mulhi32(kRoundB, old2) ^ c1 ^ k0;
    c2 = mulhi32(kRoundA, old0) ^ c3 ^ k1;
    c1 = kRoundB * old2;
    c3 = kRoundA * old0;
    k0 += kKeyA;
    k1 += kKeyB;
  }
  return Philox4{{c0, c1, c2, c3}};
}

}  // namespace n2n_fast
