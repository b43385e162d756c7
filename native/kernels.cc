// monna native kernels: single-precision GEMM and the NHWC convolution kernels a LeNet/MLP
// training step needs (forward, filter gradient, input gradient, max-pool gradient), called by
// src/compute on the tfjs wasm and cpu backends' own memory (Float32Arrays, no copies); and the
// whole-model gradient (`modelGradient`: the models of src/learning/models.ts forward and
// backward with their softmax cross-entropy in one call, no tfjs), which the learner uses.
//
// Built at install time by scripts/build-native.mjs with the system C++ compiler against the
// Node-API headers of the `node-api-headers` package (ABI-stable across Node versions). Optional:
// without a compiler the project runs the wasm kernels. No -march flag: the AVX2/FMA code paths
// (and the pairwise distances' AVX-512 ones) are compiled per function (target attributes) and
// chosen at run time (cpuid).
//
// GEMM: the classic Goto/BLIS blocking — B packed in KC×16 panels, A in 6×KC micro-panels, a 6×16
// register-blocked micro-kernel (12 ymm accumulators), a 6×8 one for a last panel of ≤ 8
// columns — written once as a template over the micro-kernel, so the portable build and the
// AVX2 build share every loop. Row-major operands are read in place instead of packed (see
// gemmWith).

#define NAPI_VERSION 8
#include <node_api.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MONNA_X86 1
#else
#define MONNA_X86 0
#endif

namespace {

constexpr int MR = 6;
constexpr int NR = 16;
constexpr int KC = 256;
constexpr int MC = 96;  // multiple of MR

// Scratch buffers, reused across calls; one set per OS thread (the JS thread of each Node
// environment — main and worker_threads — and each pool thread).
struct Scratch {
  std::vector<float> a, b, cols, t;
  float* get(std::vector<float>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};
thread_local Scratch scratch;

// ---- a small thread pool: run(tasks, fn) calls fn(task) for every task on the calling thread
// and the pool's threads, and returns when all are done. Only the main JS thread uses it (calls
// from other threads run serially).

class Pool {
 public:
  ~Pool() { resize(1); }

  int threads() const { return (int)workers_.size() + 1; }

  /** Whether the calling thread may resize the pool: it started it, or it has no threads. */
  bool owns() const { return workers_.empty() || std::this_thread::get_id() == owner_; }

  void resize(int n) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    owner_ = std::this_thread::get_id();
    for (int i = 1; i < n; i++) workers_.emplace_back([this] { loop(); });
  }

  void run(int tasks, const std::function<void(int)>& fn) {
    if (workers_.empty() || tasks <= 1 || std::this_thread::get_id() != owner_) {
      for (int t = 0; t < tasks; t++) fn(t);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      tasks_ = tasks;
      next_.store(0);
      pending_ = (int)workers_.size();
      generation_++;
    }
    cv_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void work() {
    for (int t = next_.fetch_add(1); t < tasks_; t = next_.fetch_add(1)) (*fn_)(t);
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      work();
      {
        std::lock_guard<std::mutex> lock(mu_);
        pending_--;
      }
      done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_;
  const std::function<void(int)>* fn_ = nullptr;
  std::atomic<int> next_{0};
  int tasks_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::thread::id owner_ = std::this_thread::get_id();
};

Pool pool;

// ---- packing ------------------------------------------------------------------------------
// op(A)[i, k] = A[i*rsA + k*csA]; op(B)[k, j] = B[k*rsB + j*csB].

void packA(const float* A, long rsA, long csA, int mc, int kc, float* out) {
  for (int i0 = 0; i0 < mc; i0 += MR) {
    const int mr = std::min(MR, mc - i0);
    for (int k = 0; k < kc; k++) {
      const float* src = A + (long)i0 * rsA + (long)k * csA;
      int i = 0;
      for (; i < mr; i++) out[i] = src[(long)i * rsA];
      for (; i < MR; i++) out[i] = 0.f;
      out += MR;
    }
  }
}

// Panels of NR columns; a last panel of at most NR/2 columns is packed NR/2 wide (the half-width
// micro-kernel runs it: LeNet's 20 and 50 output channels would otherwise pad to 32 and 64).
constexpr int NH = NR / 2;
inline int panelWidth(int n, int j0) { return n - j0 <= NH ? NH : NR; }

void packB(const float* B, long rsB, long csB, int kc, int n, float* out) {
  for (int j0 = 0; j0 < n; j0 += NR) {
    const int nr = std::min(NR, n - j0);
    const int w = panelWidth(n, j0);
    for (int k = 0; k < kc; k++) {
      const float* src = B + (long)k * rsB + (long)j0 * csB;
      int j = 0;
      if (csB == 1) {
        for (; j < nr; j++) out[j] = src[j];
      } else {
        for (; j < nr; j++) out[j] = src[(long)j * csB];
      }
      for (; j < w; j++) out[j] = 0.f;
      out += w;
    }
  }
}

// ---- micro-kernels: acc(6×16) = Σ_k a[k][0..6] ⊗ b[k][0..16]; then C (+)= acc -------------------

void storeTile(const float* acc, float* C, long ldc, int mr, int nr, bool add) {
  for (int i = 0; i < mr; i++) {
    float* c = C + (long)i * ldc;
    const float* a = acc + i * NR;
    if (add) {
      for (int j = 0; j < nr; j++) c[j] += a[j];
    } else {
      for (int j = 0; j < nr; j++) c[j] = a[j];
    }
  }
}

// a: element (i, k) of the A panel at a[i·ars + k·aks] (packed: ars 1, aks MR; rows of a
// row-major A read in place: ars = its row stride, aks 1); rows past mr repeat row mr − 1 (the
// tile's extra rows are discarded). b: row k of the B panel at b + k·bks (packed: bks = the
// panel width; a row-major B read in place: bks = its row stride, full panels only).
struct PortableKernel {
  template <int W>
  static void tile(int kc, const float* a, long ars, long aks, const float* b, long bks, float* C, long ldc, int mr, int nr, bool add) {
    float acc[MR * NR] = {0};
    long ro[MR];
    for (int i = 0; i < MR; i++) ro[i] = (long)std::min(i, mr - 1) * ars;
    for (int k = 0; k < kc; k++) {
      for (int i = 0; i < MR; i++) {
        const float ai = a[ro[i]];
        for (int j = 0; j < W; j++) acc[i * NR + j] += ai * b[j];
      }
      a += aks;
      b += bks;
    }
    storeTile(acc, C, ldc, mr, nr, add);
  }
  static void run(int kc, const float* a, long ars, long aks, const float* b, long bks, float* C, long ldc, int mr, int nr, bool add) {
    tile<NR>(kc, a, ars, aks, b, bks, C, ldc, mr, nr, add);
  }
  // a half-width panel (NH columns)
  static void runHalf(int kc, const float* a, long ars, long aks, const float* b, long bks, float* C, long ldc, int mr, int nr, bool add) {
    tile<NH>(kc, a, ars, aks, b, bks, C, ldc, mr, nr, add);
  }
};

#if MONNA_X86
struct Avx2Kernel {
  __attribute__((target("avx2,fma"))) static void run(int kc, const float* a, long ars, long aks, const float* b, long bks, float* C, long ldc, int mr, int nr, bool add) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    const long o1 = (long)std::min(1, mr - 1) * ars, o2 = (long)std::min(2, mr - 1) * ars, o3 = (long)std::min(3, mr - 1) * ars;
    const long o4 = (long)std::min(4, mr - 1) * ars, o5 = (long)std::min(5, mr - 1) * ars;
    for (int k = 0; k < kc; k++) {
      const __m256 b0 = _mm256_loadu_ps(b);
      const __m256 b1 = _mm256_loadu_ps(b + 8);
      __m256 x = _mm256_broadcast_ss(a);
      c00 = _mm256_fmadd_ps(x, b0, c00);
      c01 = _mm256_fmadd_ps(x, b1, c01);
      x = _mm256_broadcast_ss(a + o1);
      c10 = _mm256_fmadd_ps(x, b0, c10);
      c11 = _mm256_fmadd_ps(x, b1, c11);
      x = _mm256_broadcast_ss(a + o2);
      c20 = _mm256_fmadd_ps(x, b0, c20);
      c21 = _mm256_fmadd_ps(x, b1, c21);
      x = _mm256_broadcast_ss(a + o3);
      c30 = _mm256_fmadd_ps(x, b0, c30);
      c31 = _mm256_fmadd_ps(x, b1, c31);
      x = _mm256_broadcast_ss(a + o4);
      c40 = _mm256_fmadd_ps(x, b0, c40);
      c41 = _mm256_fmadd_ps(x, b1, c41);
      x = _mm256_broadcast_ss(a + o5);
      c50 = _mm256_fmadd_ps(x, b0, c50);
      c51 = _mm256_fmadd_ps(x, b1, c51);
      a += aks;
      b += bks;
    }
    if (mr == MR && nr == NR) {
      float* r[MR] = {C, C + ldc, C + 2 * ldc, C + 3 * ldc, C + 4 * ldc, C + 5 * ldc};
      const __m256 lo[MR] = {c00, c10, c20, c30, c40, c50};
      const __m256 hi[MR] = {c01, c11, c21, c31, c41, c51};
      for (int i = 0; i < MR; i++) {
        __m256 v0 = lo[i], v1 = hi[i];
        if (add) {
          v0 = _mm256_add_ps(v0, _mm256_loadu_ps(r[i]));
          v1 = _mm256_add_ps(v1, _mm256_loadu_ps(r[i] + 8));
        }
        _mm256_storeu_ps(r[i], v0);
        _mm256_storeu_ps(r[i] + 8, v1);
      }
      return;
    }
    alignas(32) float acc[MR * NR];
    _mm256_store_ps(acc + 0, c00), _mm256_store_ps(acc + 8, c01);
    _mm256_store_ps(acc + 16, c10), _mm256_store_ps(acc + 24, c11);
    _mm256_store_ps(acc + 32, c20), _mm256_store_ps(acc + 40, c21);
    _mm256_store_ps(acc + 48, c30), _mm256_store_ps(acc + 56, c31);
    _mm256_store_ps(acc + 64, c40), _mm256_store_ps(acc + 72, c41);
    _mm256_store_ps(acc + 80, c50), _mm256_store_ps(acc + 88, c51);
    storeTile(acc, C, ldc, mr, nr, add);
  }
  // a half-width panel (NH = 8 columns): 6 accumulators
  __attribute__((target("avx2,fma"))) static void runHalf(int kc, const float* a, long ars, long aks, const float* b, long bks, float* C, long ldc, int mr, int nr, bool add) {
    __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps(), c2 = _mm256_setzero_ps();
    __m256 c3 = _mm256_setzero_ps(), c4 = _mm256_setzero_ps(), c5 = _mm256_setzero_ps();
    const long o1 = (long)std::min(1, mr - 1) * ars, o2 = (long)std::min(2, mr - 1) * ars, o3 = (long)std::min(3, mr - 1) * ars;
    const long o4 = (long)std::min(4, mr - 1) * ars, o5 = (long)std::min(5, mr - 1) * ars;
    for (int k = 0; k < kc; k++) {
      const __m256 b0 = _mm256_loadu_ps(b);
      c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a), b0, c0);
      c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + o1), b0, c1);
      c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + o2), b0, c2);
      c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + o3), b0, c3);
      c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + o4), b0, c4);
      c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + o5), b0, c5);
      a += aks;
      b += bks;
    }
    alignas(32) float acc[MR * NR];
    _mm256_store_ps(acc + 0, c0), _mm256_store_ps(acc + 16, c1), _mm256_store_ps(acc + 32, c2);
    _mm256_store_ps(acc + 48, c3), _mm256_store_ps(acc + 64, c4), _mm256_store_ps(acc + 80, c5);
    storeTile(acc, C, ldc, mr, nr, add);
  }
};
#endif

bool forcePortable = false;  // tests run the portable path on AVX2 machines too

bool useAvx2() {
#if MONNA_X86
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok && !forcePortable;
#else
  return false;
#endif
}

bool allowAvx512 = true;  // tests turn it off to run the AVX2 kernels on AVX-512 machines too

// AVX-512F/VL/DQ on top of AVX2/FMA: the kernels that use it (the pairwise distances) keep the
// AVX2 kernels' 8-float lanes and their order of operations — the same bits — and gain the 32
// registers of the EVEX encodings and zmm registers holding two such 8-float lanes side by side
bool useAvx512() {
#if MONNA_X86
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return ok && allowAvx512 && useAvx2();
#else
  return false;
#endif
}

// C (m×n, row stride ldc) = op(A)·op(B) (+ C when accumulate).
// Operands are read in place where that is as good as packing: A when its rows are contiguous
// (csA = 1: each k step broadcasts from MR row streams, as it would from the packed panel), B's
// full panels when its rows are (csB = 1) and m ≤ MC, so each packed element would serve at most
// one block of A: the copy costs as much as the product there (LeNet's dense layer, M = 25:
// 0.32 → 0.29 ms; conv2's filter gradient, M = 50: B = the 1600×500 columns). For larger M a
// packed panel (contiguous, L1-resident) wins: conv2's forward product (M = 1600, B = a 500×50
// filter of 200-byte rows) takes 0.99 ms packed vs 1.19 ms in place (min of 200 each).
// Transposed operands are always packed, as is a last B panel narrower than NR.
template <typename Kernel>
void gemmWith(int m, int n, int k, const float* A, long rsA, long csA, const float* B, long rsB, long csB, float* C, long ldc, bool accumulate) {
  if (k == 0) {
    if (!accumulate)
      for (int i = 0; i < m; i++) std::fill(C + (long)i * ldc, C + (long)i * ldc + n, 0.f);
    return;
  }
  const bool directA = csA == 1;
  const bool directB = csB == 1 && m <= MC;
  const int nFull = n / NR * NR;  // columns of full panels
  const int nPad = (n + NR - 1) / NR * NR;
  float* bp = scratch.get(scratch.b, (size_t)KC * nPad);
  // Row blocks of MC rows; with pool threads, small enough that every thread gets one (whole
  // micro-panels of MR rows). Each block packs its own A and writes its own rows of C.
  const int threads = pool.threads();
  const int perThread = (m + threads - 1) / threads;
  const int mcBlock = threads > 1 && (long)m * n * k >= 1L << 18 ? std::min(MC, std::max(MR, (perThread + MR - 1) / MR * MR)) : MC;
  const int blocks = (m + mcBlock - 1) / mcBlock;
  for (int pc = 0; pc < k; pc += KC) {
    const int kc = std::min(KC, k - pc);
    const bool add = accumulate || pc > 0;
    // packed: every panel (at bp + jr·kc), or only the narrow last one when B is read in place
    if (!directB) packB(B + (long)pc * rsB, rsB, csB, kc, n, bp);
    else if (nFull < n) packB(B + (long)pc * rsB + nFull, rsB, 1, kc, n - nFull, bp + (long)nFull * kc);
    const auto block = [&](int blk) {
      const int ic = blk * mcBlock;
      const int mc = std::min(mcBlock, m - ic);
      float* ap = nullptr;
      if (!directA) {
        ap = scratch.get(scratch.a, (size_t)MC * KC);
        packA(A + (long)ic * rsA + (long)pc * csA, rsA, csA, mc, kc, ap);
      }
      for (int jr = 0; jr < n; jr += NR) {
        const bool inPlace = directB && jr < nFull;
        const float* b = inPlace ? B + (long)pc * rsB + jr : bp + (long)jr * kc;
        const bool half = panelWidth(n, jr) == NH;
        const long bks = inPlace ? rsB : half ? NH : NR;
        for (int ir = 0; ir < mc; ir += MR) {
          float* c = C + (long)(ic + ir) * ldc + jr;
          const int mr = std::min(MR, mc - ir), nr = std::min(NR, n - jr);
          const float* a = directA ? A + (long)(ic + ir) * rsA + pc : ap + (long)ir * kc;
          const long ars = directA ? rsA : 1, aks = directA ? 1 : MR;
          if (half) Kernel::runHalf(kc, a, ars, aks, b, bks, c, ldc, mr, nr, add);
          else Kernel::run(kc, a, ars, aks, b, bks, c, ldc, mr, nr, add);
        }
      }
    };
    if (mcBlock == MC && blocks == 1) block(0);
    else pool.run(blocks, block);
  }
}

void gemm(int m, int n, int k, const float* A, long rsA, long csA, const float* B, long rsB, long csB, float* C, long ldc, bool accumulate) {
#if MONNA_X86
  if (useAvx2()) return gemmWith<Avx2Kernel>(m, n, k, A, rsA, csA, B, rsB, csB, C, ldc, accumulate);
#endif
  gemmWith<PortableKernel>(m, n, k, A, rsA, csA, B, rsB, csB, C, ldc, accumulate);
}

// ---- convolution geometry (NHWC, HWIO filters, no dilation) ----------------------------------

struct Conv {
  int batch, inH, inW, inC, outH, outW, outC, fh, fw, sh, sw, pt, pl;
  long K() const { return (long)fh * fw * inC; }
  long M() const { return (long)batch * outH * outW; }
};

// n floats from src to dst: short runs (a 5×5×1 filter row: 5 floats) in 4-float moves rather
// than a memcpy call each
inline void copyRun(float* __restrict dst, const float* __restrict src, int n) {
  if (n > 32) {
    std::memcpy(dst, src, sizeof(float) * n);
    return;
  }
  int t = 0;
  for (; t + 4 <= n; t += 4) std::memcpy(dst + t, src + t, 4 * sizeof(float));
  for (; t < n; t++) dst[t] = src[t];
}

// cols (M×K): row m = (b, oh, ow), column (i, j, c) = x[b, oh·sh + i − pt, ow·sw + j − pl, c] or 0.
void im2col(const float* x, const Conv& g, float* cols) {
  const long K = g.K();
  const long rowX = (long)g.inW * g.inC;
  const long imgX = (long)g.inH * rowX;
  float* out = cols;
  for (int b = 0; b < g.batch; b++) {
    for (int oh = 0; oh < g.outH; oh++) {
      for (int ow = 0; ow < g.outW; ow++, out += K) {
        float* o = out;
        for (int i = 0; i < g.fh; i++) {
          const int ih = oh * g.sh + i - g.pt;
          if (ih < 0 || ih >= g.inH) {
            std::fill(o, o + (long)g.fw * g.inC, 0.f);
            o += (long)g.fw * g.inC;
            continue;
          }
          const int iw0 = ow * g.sw - g.pl;
          const float* src = x + b * imgX + ih * rowX;
          if (iw0 >= 0 && iw0 + g.fw <= g.inW) {
            copyRun(o, src + (long)iw0 * g.inC, g.fw * g.inC);
            o += (long)g.fw * g.inC;
            continue;
          }
          for (int j = 0; j < g.fw; j++, o += g.inC) {
            const int iw = iw0 + j;
            if (iw < 0 || iw >= g.inW) std::fill(o, o + g.inC, 0.f);
            else std::memcpy(o, src + (long)iw * g.inC, sizeof(float) * g.inC);
          }
        }
      }
    }
  }
}

// dx[b, ih, iw, c] += dcols[m, (i, j, c)] (the adjoint of im2col); rows m0.. of dcols only.
void col2imAdd(const float* dcols, const Conv& g, int b0, int nb, float* dx) {
  const long K = g.K();
  const long rowX = (long)g.inW * g.inC;
  const long imgX = (long)g.inH * rowX;
  const float* in = dcols;
  for (int b = b0; b < b0 + nb; b++) {
    for (int oh = 0; oh < g.outH; oh++) {
      for (int ow = 0; ow < g.outW; ow++, in += K) {
        const float* s = in;
        for (int i = 0; i < g.fh; i++) {
          const int ih = oh * g.sh + i - g.pt;
          if (ih < 0 || ih >= g.inH) {
            s += (long)g.fw * g.inC;
            continue;
          }
          float* dst = dx + b * imgX + ih * rowX;
          for (int j = 0; j < g.fw; j++, s += g.inC) {
            const int iw = ow * g.sw + j - g.pl;
            if (iw < 0 || iw >= g.inW) continue;
            float* d = dst + (long)iw * g.inC;
            for (int c = 0; c < g.inC; c++) d[c] += s[c];
          }
        }
      }
    }
  }
}

// out (cols×rows) = in (rows×cols)ᵀ, in 8×8 blocks
void transpose(const float* in, int rows, int cols, float* out) {
  constexpr int T = 8;
  for (int i0 = 0; i0 < rows; i0 += T)
    for (int j0 = 0; j0 < cols; j0 += T) {
      const int i1 = std::min(rows, i0 + T), j1 = std::min(cols, j0 + T);
      for (int i = i0; i < i1; i++)
        for (int j = j0; j < j1; j++) out[(long)j * rows + i] = in[(long)i * cols + j];
    }
}

// Images per chunk so that a chunk's column buffer stays around 2 MB (L2).
int chunkImages(const Conv& g) {
  const long perImage = (long)g.outH * g.outW * g.K();
  return (int)std::max(1L, std::min((long)g.batch, (512L * 1024) / std::max(1L, perImage)));
}

// y (M×outC) = cols · W (K×outC), by chunks of images.
void conv2dForward(const float* x, const float* w, float* y, const Conv& g) {
  const int chunk = chunkImages(g);
  const long per = (long)g.outH * g.outW;
  const long K = g.K();
  float* cols = scratch.get(scratch.cols, (size_t)(chunk * per * K));
  const long xPer = (long)g.inH * g.inW * g.inC;
  for (int b0 = 0; b0 < g.batch; b0 += chunk) {
    const int nb = std::min(chunk, g.batch - b0);
    Conv part = g;
    part.batch = nb;
    im2col(x + b0 * xPer, part, cols);
    gemm((int)(nb * per), g.outC, (int)K, cols, K, 1, w, g.outC, 1, y + b0 * per * g.outC, g.outC, false);
  }
}

// dW (K×outC) = colsᵀ · dy, over chunks of images: dWᵀ (outC×K) = dyᵀ · cols accumulated, then
// transposed — the columns are read in place as B (rows contiguous) instead of packed as a
// transposed A (LeNet conv2: 1.47 → 1.03 ms).
void conv2dFilterGrad(const float* x, const float* dy, float* dw, const Conv& g) {
  const int chunk = chunkImages(g);
  const long per = (long)g.outH * g.outW;
  const long K = g.K();
  float* cols = scratch.get(scratch.cols, (size_t)(chunk * per * K));
  float* t = scratch.get(scratch.t, (size_t)(K * g.outC));
  const long xPer = (long)g.inH * g.inW * g.inC;
  for (int b0 = 0; b0 < g.batch; b0 += chunk) {
    const int nb = std::min(chunk, g.batch - b0);
    Conv part = g;
    part.batch = nb;
    im2col(x + b0 * xPer, part, cols);
    // op(A) = dyᵀ: A[j, m] = dy[m, j] → rsA = 1, csA = outC
    gemm(g.outC, (int)K, (int)(nb * per), dy + b0 * per * g.outC, 1, g.outC, cols, K, 1, t, K, b0 > 0);
  }
  transpose(t, g.outC, (int)K, dw);
}

// dcols (M×K) = dy · Wᵀ, then col2im into dx (zeroed here), by chunks of images.
void conv2dInputGrad(const float* dy, const float* w, float* dx, const Conv& g) {
  const int chunk = chunkImages(g);
  const long per = (long)g.outH * g.outW;
  const long K = g.K();
  float* cols = scratch.get(scratch.cols, (size_t)(chunk * per * K));
  std::fill(dx, dx + (long)g.batch * g.inH * g.inW * g.inC, 0.f);
  for (int b0 = 0; b0 < g.batch; b0 += chunk) {
    const int nb = std::min(chunk, g.batch - b0);
    // op(B) = Wᵀ: B[k, j] = W[j, k] → rsB = 1, csB = outC
    gemm((int)(nb * per), (int)K, g.outC, dy + b0 * per * g.outC, g.outC, 1, w, 1, g.outC, cols, K, false);
    col2imAdd(cols, g, b0, nb, dx);
  }
}

// dx = 0 except at each window's (first) maximum, which gets dy (NHWC).
void maxPoolGrad(const float* x, const float* y, const float* dy, float* dx, int batch, int inH, int inW, int ch, int outH, int outW,
                 int fh, int fw, int sh, int sw, int pt, int pl) {
  std::fill(dx, dx + (long)batch * inH * inW * ch, 0.f);
  for (int b = 0; b < batch; b++) {
    const long xb = (long)b * inH * inW * ch;
    for (int oh = 0; oh < outH; oh++) {
      for (int ow = 0; ow < outW; ow++) {
        const long yo = (((long)b * outH + oh) * outW + ow) * ch;
        for (int c = 0; c < ch; c++) {
          const float target = y[yo + c];
          bool done = false;
          for (int i = 0; i < fh && !done; i++) {
            const int ih = oh * sh + i - pt;
            if (ih < 0 || ih >= inH) continue;
            for (int j = 0; j < fw; j++) {
              const int iw = ow * sw + j - pl;
              if (iw < 0 || iw >= inW) continue;
              const long xi = xb + ((long)ih * inW + iw) * ch + c;
              if (x[xi] == target) {
                dx[xi] += dy[yo + c];
                done = true;
                break;
              }
            }
          }
        }
      }
    }
  }
}

// ---- whole-model gradient: the models of src/learning/models.ts in one call ---------------
// The mean softmax cross-entropy of a mini-batch and its gradient with respect to the flat θ
// (layers in forward order, each kernel then bias: dense [in, out], conv [kh, kw, inC, outC];
// NHWC activations, so flatten moves nothing). The same function as the tfjs graph of
// models.ts + tf.losses.softmaxCrossEntropy, computed without tfjs: no tensor bookkeeping, no
// copies of θ or the gradient, bias and ReLU fused into the products' outputs, the im2col
// columns of the forward pass kept for the filter gradients.
//
// Layer spec (Int32Array): [inH, inW, inC, classes, nLayers, then 4 ints per layer]:
//   0 conv  filters, kernel, relu   (5×5 'valid', stride 1 in LeNet; any square kernel ≤ input)
//   1 pool  size, 0, 0              (max pool size×size, stride size, 'valid')
//   2 flatten 0, 0, 0
//   3 dense units, relu, bias (0/1)
// The last layer must be a dense one of `classes` units.

enum LayerKind { kConv = 0, kPool = 1, kFlatten = 2, kDense = 3 };

struct Layer {
  int kind, units, kernel, relu, bias;
  int h, w, c;     // input (per example)
  int oh, ow, oc;  // output
  long wOff, bOff;  // in θ (bOff −1: no bias)
  long in() const { return (long)h * w * c; }
  long out() const { return (long)oh * ow * oc; }
  Conv conv(int batch) const { return Conv{batch, h, w, c, oh, ow, oc, kernel, kernel, 1, 1, 0, 0}; }
};

struct Net {
  std::vector<Layer> layers;
  int classes = 0;
  long inSize = 0, dim = 0;
};

constexpr long MAX_ELEMENTS = 1L << 26;  // per example per layer, and θ: 64 M floats

// nullptr when the spec describes a model, else what is wrong
const char* parseNet(const int* s, size_t n, Net* net) {
  if (n < 5) return "model spec: shorter than its header";
  int h = s[0], w = s[1], c = s[2];
  net->classes = s[3];
  const int count = s[4];
  if (h < 1 || w < 1 || c < 1 || (long)h * w * c > MAX_ELEMENTS) return "model spec: bad input shape";
  if (net->classes < 1) return "model spec: classes must be ≥ 1";
  if (count < 1 || count > 64 || n != 5 + 4 * (size_t)count) return "model spec: 1 to 64 layers of 4 ints each";
  net->inSize = (long)h * w * c;
  long off = 0;
  bool flat = false;
  for (int i = 0; i < count; i++) {
    const int* p = s + 5 + 4 * i;
    Layer L{p[0], 0, 0, 0, 0, h, w, c, h, w, c, -1, -1};
    switch (p[0]) {
      case kConv:
        if (flat) return "model spec: conv after flatten";
        L.units = p[1], L.kernel = p[2], L.relu = p[3] != 0;
        if (L.units < 1 || L.kernel < 1 || L.kernel > h || L.kernel > w) return "model spec: bad conv layer";
        L.oh = h - L.kernel + 1, L.ow = w - L.kernel + 1, L.oc = L.units;
        if ((long)L.kernel * L.kernel * c * L.units > MAX_ELEMENTS || L.out() > MAX_ELEMENTS) return "model spec: conv layer too large";
        L.wOff = off, off += (long)L.kernel * L.kernel * c * L.units;
        L.bOff = off, off += L.units;
        break;
      case kPool:
        if (flat) return "model spec: pool after flatten";
        L.kernel = p[1];
        if (L.kernel < 1 || L.kernel > h || L.kernel > w) return "model spec: bad pool layer";
        L.oh = h / L.kernel, L.ow = w / L.kernel;
        break;
      case kFlatten:
        L.oh = 1, L.ow = 1, L.oc = h * w * c;
        flat = true;
        break;
      case kDense:
        if (!flat && (h != 1 || w != 1)) return "model spec: dense layer before flatten";
        L.units = p[1], L.relu = p[2] != 0, L.bias = p[3] != 0;
        if (L.units < 1 || (long)L.in() * L.units > MAX_ELEMENTS) return "model spec: bad dense layer";
        L.oh = 1, L.ow = 1, L.oc = L.units;
        L.wOff = off, off += L.in() * L.units;
        if (L.bias) L.bOff = off, off += L.units;
        break;
      default:
        return "model spec: unknown layer kind";
    }
    if (off > MAX_ELEMENTS) return "model spec: too many parameters";
    h = L.oh, w = L.ow, c = L.oc;
    net->layers.push_back(L);
  }
  const Layer& last = net->layers.back();
  if (last.kind != kDense || last.units != net->classes) return "model spec: the last layer must be dense with `classes` units";
  net->dim = off;
  return nullptr;
}

// Per-thread buffers of the model gradient, grown on demand and reused across calls.
struct ModelScratch {
  std::vector<std::vector<float>> acts;
  std::vector<std::vector<int>> argmax;
  std::vector<float> dA, dB, t;
  static float* get(std::vector<float>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};
thread_local ModelScratch mscratch;

// y[r, j] += b[j] (b may be null), then ReLU, over rows×n
void biasRelu(float* y, long rows, int n, const float* b, bool relu) {
  for (long r = 0; r < rows; r++, y += n) {
    if (b != nullptr)
      for (int j = 0; j < n; j++) y[j] += b[j];
    if (relu)
      for (int j = 0; j < n; j++) y[j] = y[j] > 0.f ? y[j] : 0.f;
  }
}

// dz = dy · [y > 0] in place (y the layer's ReLU output); db[j] = Σ_r dz[r, j]
void reluBiasGrad(float* dz, const float* y, long rows, int n, bool relu, float* db) {
  if (db != nullptr) std::fill(db, db + n, 0.f);
  for (long r = 0; r < rows; r++, dz += n, y += n) {
    if (relu)
      for (int j = 0; j < n; j++) dz[j] = y[j] > 0.f ? dz[j] : 0.f;
    if (db != nullptr)
      for (int j = 0; j < n; j++) db[j] += dz[j];
  }
}

// max pool (size s, stride s, valid), NHWC; idx = the input offset (within the example) of the
// first maximum of each window, in window order (as tfjs's MaxPoolGrad routes the gradient)
void poolForward(const float* __restrict x, const Layer& L, int batch, float* __restrict y, int* __restrict idx) {
  const int s = L.kernel, C = L.c;
  for (int b = 0; b < batch; b++) {
    const float* xb = x + (long)b * L.in();
    for (int oh = 0; oh < L.oh; oh++)
      for (int ow = 0; ow < L.ow; ow++) {
        const long o = ((long)b * L.oh * L.ow + (long)oh * L.ow + ow) * C;
        float* __restrict yo = y + o;
        int* __restrict io = idx + o;
        const int first = ((oh * s) * L.w + ow * s) * C;
        int c0 = 0;
#if MONNA_X86
        // 4 channels at a time (SSE2, every x86-64): max(v, best) = v > best ? v : best, and
        // the index follows the same strict comparison, so the first maximum wins
        for (; c0 + 4 <= C; c0 += 4) {
          __m128 best = _mm_loadu_ps(xb + first + c0);
          __m128i bi = _mm_add_epi32(_mm_set1_epi32(first + c0), _mm_setr_epi32(0, 1, 2, 3));
          for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) {
              if (i == 0 && j == 0) continue;
              const int at = ((oh * s + i) * L.w + ow * s + j) * C + c0;
              const __m128 v = _mm_loadu_ps(xb + at);
              const __m128i gt = _mm_castps_si128(_mm_cmpgt_ps(v, best));
              best = _mm_max_ps(v, best);
              const __m128i ai = _mm_add_epi32(_mm_set1_epi32(at), _mm_setr_epi32(0, 1, 2, 3));
              bi = _mm_or_si128(_mm_and_si128(gt, ai), _mm_andnot_si128(gt, bi));
            }
          _mm_storeu_ps(yo + c0, best);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(io + c0), bi);
        }
#endif
        for (int c = c0; c < C; c++) yo[c] = xb[first + c], io[c] = first + c;
        for (int i = 0; i < s; i++)
          for (int j = 0; j < s; j++) {
            if (i == 0 && j == 0) continue;
            const int at = ((oh * s + i) * L.w + ow * s + j) * C;
            // strictly greater keeps the first maximum
            for (int c = c0; c < C; c++)
              if (xb[at + c] > yo[c]) yo[c] = xb[at + c], io[c] = at + c;
          }
      }
  }
}

// ---- direct convolution for small filters (LeNet's first layer: 5×5×1 → 20) -----------------
// im2col would copy each input value fh·fw times and hand the GEMM a 25-deep product over
// 20 columns (padded). Here the filter (K = fh·fw·inC rows, outC ≤ 32 columns, zero-padded to
// V vectors of 8) stays in L1 and each output pixel's V vectors accumulate in registers:
// forward P pixels × V vectors at a time (bias as the initial value, ReLU on the way out), the
// filter gradient T taps × V vectors at a time over each image's pixels (per-image sums in
// registers, added into dW image by image). AVX2/FMA only; elsewhere the im2col path runs.

constexpr int DIRECT_MAX_KV = 512;  // K·V ≤ 512: the padded filter ≤ 16 KB

bool directConv(const Layer& L) {
  const long K = (long)L.kernel * L.kernel * L.c;
  const int V = (L.oc + 7) / 8;
  return useAvx2() && L.oc <= 32 && K * V <= DIRECT_MAX_KV;
}

#if MONNA_X86
__attribute__((target("avx2,fma"))) inline __m256i tailMask(int lanes) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), idx);
}

// P output pixels from xr = x at (b, oh, ow0, 0): y[p] = relu?(bias + Σ_t x[t-th tap] · wp[t])
template <int P, int V>
__attribute__((target("avx2,fma"))) void directPixels(const float* xr, long rowX, int C, int fh, int fwC, const float* wp, const float* bp, float* y, int outC, bool relu, __m256i mask) {
  __m256 acc[P][V];
#pragma GCC unroll 16
  for (int p = 0; p < P; p++)
#pragma GCC unroll 4
    for (int v = 0; v < V; v++) acc[p][v] = _mm256_loadu_ps(bp + 8 * v);
  for (int i = 0; i < fh; i++) {
    const float* xi = xr + i * rowX;
    const float* wi = wp + (long)i * fwC * V * 8;
    for (int t = 0; t < fwC; t++) {
      __m256 w[V];
#pragma GCC unroll 4
      for (int v = 0; v < V; v++) w[v] = _mm256_loadu_ps(wi + (long)t * V * 8 + 8 * v);
#pragma GCC unroll 16
      for (int p = 0; p < P; p++) {
        const __m256 xv = _mm256_broadcast_ss(xi + p * C + t);
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) acc[p][v] = _mm256_fmadd_ps(xv, w[v], acc[p][v]);
      }
    }
  }
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 16
  for (int p = 0; p < P; p++) {
    float* yp = y + (long)p * outC;
#pragma GCC unroll 4
    for (int v = 0; v < V; v++) {
      const __m256 r = relu ? _mm256_max_ps(acc[p][v], zero) : acc[p][v];
      if (v < V - 1) _mm256_storeu_ps(yp + 8 * v, r);
      else _mm256_maskstore_ps(yp + 8 * v, mask, r);
    }
  }
}

template <int V>
__attribute__((target("avx2,fma"))) void directForwardV(const float* x, const Layer& L, int batch, const float* wp, const float* bp, float* y) {
  constexpr int P = 12 / V;
  const long rowX = (long)L.w * L.c;
  const int fwC = L.kernel * L.c;
  const __m256i mask = tailMask(L.oc - 8 * (V - 1));
  for (int b = 0; b < batch; b++)
    for (int oh = 0; oh < L.oh; oh++) {
      const float* xr = x + (long)b * L.in() + (long)oh * rowX;
      float* yr = y + ((long)b * L.oh + oh) * L.ow * L.oc;
      int ow = 0;
      for (; ow + P <= L.ow; ow += P) directPixels<P, V>(xr + (long)ow * L.c, rowX, L.c, L.kernel, fwC, wp, bp, yr + (long)ow * L.oc, L.oc, L.relu, mask);
      for (; ow < L.ow; ow++) directPixels<1, V>(xr + (long)ow * L.c, rowX, L.c, L.kernel, fwC, wp, bp, yr + (long)ow * L.oc, L.oc, L.relu, mask);
    }
}

// dW rows k0..k0+T of image b: acc[t] = Σ_pixels x[pixel + off[k0 + t]] · dz[pixel]; added into dW
template <int T, int V>
__attribute__((target("avx2,fma"))) void directTaps(const float* xb, const float* dzb, const Layer& L, const long* off, int k0, float* dw, bool first, __m256i mask) {
  __m256 acc[T][V];
#pragma GCC unroll 16
  for (int t = 0; t < T; t++)
#pragma GCC unroll 4
    for (int v = 0; v < V; v++) acc[t][v] = _mm256_setzero_ps();
  long o[T];
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) o[t] = off[k0 + t];
  const long rowX = (long)L.w * L.c;
  for (int oh = 0; oh < L.oh; oh++) {
    const float* xr = xb + oh * rowX;
    const float* dr = dzb + (long)oh * L.ow * L.oc;
    for (int ow = 0; ow < L.ow; ow++) {
      const float* xp = xr + (long)ow * L.c;
      const float* dp = dr + (long)ow * L.oc;
      __m256 d[V];
#pragma GCC unroll 4
      for (int v = 0; v < V; v++) d[v] = v < V - 1 ? _mm256_loadu_ps(dp + 8 * v) : _mm256_maskload_ps(dp + 8 * v, mask);
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) {
        const __m256 xv = _mm256_broadcast_ss(xp + o[t]);
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) acc[t][v] = _mm256_fmadd_ps(xv, d[v], acc[t][v]);
      }
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) {
    float* row = dw + (long)(k0 + t) * L.oc;
#pragma GCC unroll 4
    for (int v = 0; v < V; v++) {
      __m256 r = acc[t][v];
      if (v < V - 1) {
        if (!first) r = _mm256_add_ps(r, _mm256_loadu_ps(row + 8 * v));
        _mm256_storeu_ps(row + 8 * v, r);
      } else {
        if (!first) r = _mm256_add_ps(r, _mm256_maskload_ps(row + 8 * v, mask));
        _mm256_maskstore_ps(row + 8 * v, mask, r);
      }
    }
  }
}

template <int V>
__attribute__((target("avx2,fma"))) void directFilterGradV(const float* x, const float* dz, const Layer& L, int batch, float* dw) {
  constexpr int T = 12 / V;
  const int K = L.kernel * L.kernel * L.c;
  const int fwC = L.kernel * L.c;
  const long rowX = (long)L.w * L.c;
  long off[DIRECT_MAX_KV];
  for (int k = 0; k < K; k++) off[k] = (k / fwC) * rowX + k % fwC;
  const __m256i mask = tailMask(L.oc - 8 * (V - 1));
  for (int b = 0; b < batch; b++) {
    const float* xb = x + (long)b * L.in();
    const float* dzb = dz + (long)b * L.out();
    int k0 = 0;
    for (; k0 + T <= K; k0 += T) directTaps<T, V>(xb, dzb, L, off, k0, dw, b == 0, mask);
    for (; k0 < K; k0++) directTaps<1, V>(xb, dzb, L, off, k0, dw, b == 0, mask);
  }
}
#endif

// y = relu?(conv(x) + bias), by the direct kernels (directConv(L) must hold)
void directForward(const float* x, const Layer& L, int batch, const float* w, const float* bias, float* y) {
#if MONNA_X86
  const int V = (L.oc + 7) / 8;
  const long K = (long)L.kernel * L.kernel * L.c;
  float wp[DIRECT_MAX_KV * 8];
  float bp[32] = {0};
  for (long k = 0; k < K; k++)
    for (int j = 0; j < V * 8; j++) wp[k * V * 8 + j] = j < L.oc ? w[k * L.oc + j] : 0.f;
  for (int j = 0; j < L.oc; j++) bp[j] = bias[j];
  switch (V) {
    case 1: return directForwardV<1>(x, L, batch, wp, bp, y);
    case 2: return directForwardV<2>(x, L, batch, wp, bp, y);
    case 3: return directForwardV<3>(x, L, batch, wp, bp, y);
    default: return directForwardV<4>(x, L, batch, wp, bp, y);
  }
#endif
}

// dW (K×outC) = Σ over pixels of the input patch ⊗ dz, by the direct kernels
void directFilterGrad(const float* x, const float* dz, const Layer& L, int batch, float* dw) {
#if MONNA_X86
  switch ((L.oc + 7) / 8) {
    case 1: return directFilterGradV<1>(x, dz, L, batch, dw);
    case 2: return directFilterGradV<2>(x, dz, L, batch, dw);
    case 3: return directFilterGradV<3>(x, dz, L, batch, dw);
    default: return directFilterGradV<4>(x, dz, L, batch, dw);
  }
#endif
}

// The forward pass: in[l + 1] = output of layer l (in[0] = x; the logits are in[nl]), in the
// scratch buffers (a pooling layer's argmax too, for the backward pass).
void modelForward(const Net& net, const float* theta, const float* x, int batch, std::vector<const float*>& in) {
  const int nl = (int)net.layers.size();
  auto& S = mscratch;
  if ((int)S.acts.size() < nl) S.acts.resize(nl), S.argmax.resize(nl);
  in.assign(nl + 1, nullptr);
  in[0] = x;
  for (int l = 0; l < nl; l++) {
    const Layer& L = net.layers[l];
    if (L.kind == kFlatten) {
      in[l + 1] = in[l];
      continue;
    }
    float* out = ModelScratch::get(S.acts[l], (size_t)batch * L.out());
    if (L.kind == kConv && directConv(L)) {
      directForward(in[l], L, batch, theta + L.wOff, theta + L.bOff, out);
    } else if (L.kind == kConv) {
      // by chunks of images, their columns in one buffer of ≈ 2 MB (the backward pass makes its
      // own again: a LeNet batch's columns kept for it were 3.2 MB, and as many for its input gradient)
      const Conv g = L.conv(batch);
      conv2dForward(in[l], theta + L.wOff, out, g);
      biasRelu(out, g.M(), L.oc, theta + L.bOff, L.relu);
    } else if (L.kind == kPool) {
      if (S.argmax[l].size() < (size_t)batch * L.out()) S.argmax[l].resize((size_t)batch * L.out());
      poolForward(in[l], L, batch, out, S.argmax[l].data());
    } else {
      const int I = (int)L.in();
      gemm(batch, L.units, I, in[l], I, 1, theta + L.wOff, L.units, 1, out, L.units, false);
      biasRelu(out, batch, L.units, L.bias ? theta + L.bOff : nullptr, L.relu);
    }
    in[l + 1] = out;
  }
}

// The summed softmax cross-entropy of a batch and how many examples its logits' first largest
// entry classifies right (as tf.argMax picks it): an evaluation's batch, forward only.
void modelEvaluate(const Net& net, const float* theta, const float* x, const int* labels, int batch, double* lossSum, long* correct) {
  std::vector<const float*> in;
  modelForward(net, theta, x, batch, in);
  const int K = net.classes;
  const float* logits = in[net.layers.size()];
  double loss = 0;
  long hits = 0;
  for (int b = 0; b < batch; b++) {
    const float* z = logits + (long)b * K;
    int best = 0;
    for (int k = 1; k < K; k++)
      if (z[k] > z[best]) best = k;
    const double mx = z[best];
    double sum = 0;
    for (int k = 0; k < K; k++) sum += std::exp((double)z[k] - mx);
    loss += mx + std::log(sum) - z[labels[b]];
    hits += best == labels[b];
  }
  *lossSum = loss;
  *correct = hits;
}

// Returns the mean loss; writes the gradient into grad (dim floats).
double modelGrad(const Net& net, const float* theta, const float* x, const int* labels, int batch, float* grad) {
  const int nl = (int)net.layers.size();
  auto& S = mscratch;
  std::vector<const float*> in;
  modelForward(net, theta, x, batch, in);
  // softmax cross-entropy, mean over the batch; d logits = (softmax − onehot)/batch
  const int K = net.classes;
  const float* logits = in[nl];
  float* d = ModelScratch::get(S.dA, (size_t)batch * K);
  double loss = 0;
  for (int b = 0; b < batch; b++) {
    const float* z = logits + (long)b * K;
    double mx = z[0];
    for (int k = 1; k < K; k++) mx = std::max(mx, (double)z[k]);
    double sum = 0;
    for (int k = 0; k < K; k++) sum += std::exp((double)z[k] - mx);
    const double lse = mx + std::log(sum);
    loss += lse - z[labels[b]];
    for (int k = 0; k < K; k++) d[(long)b * K + k] = (float)((std::exp((double)z[k] - lse) - (k == labels[b] ? 1.0 : 0.0)) / batch);
  }
  // backward: d = ∂loss/∂(output of layer l)
  bool inA = true;  // d lives in S.dA (else S.dB); a layer's input gradient goes to the other one
  for (int l = nl - 1; l >= 0; l--) {
    const Layer& L = net.layers[l];
    if (L.kind == kFlatten) continue;
    const bool needInput = l > 0;
    float* dIn = nullptr;
    if (needInput) dIn = ModelScratch::get(inA ? S.dB : S.dA, (size_t)batch * L.in());
    if (L.kind == kPool) {
      std::fill(dIn, dIn + (long)batch * L.in(), 0.f);
      const int* idx = S.argmax[l].data();
      const long per = L.out();
      for (int b = 0; b < batch; b++) {
        float* db = dIn + (long)b * L.in();
        const float* dd = d + (long)b * per;
        const int* ib = idx + (long)b * per;
        for (long o = 0; o < per; o++) db[ib[o]] += dd[o];
      }
    } else if (L.kind == kConv) {
      const Conv g = L.conv(batch);
      reluBiasGrad(d, in[l + 1], g.M(), L.oc, L.relu, grad + L.bOff);
      if (directConv(L)) directFilterGrad(in[l], d, L, batch, grad + L.wOff);
      else conv2dFilterGrad(in[l], d, grad + L.wOff, g);
      if (needInput) conv2dInputGrad(d, theta + L.wOff, dIn, g);
    } else {
      const int I = (int)L.in();
      reluBiasGrad(d, in[l + 1], batch, L.units, L.relu, L.bias ? grad + L.bOff : nullptr);
      gemm(I, L.units, batch, in[l], 1, I, d, L.units, 1, grad + L.wOff, L.units, false);
      if (needInput) {
        // dInᵀ (I×batch) = W · dzᵀ, then transposed: W is read in place as A instead of packed as
        // a transposed B (LeNet dense1: 0.38 → 0.28 ms)
        float* t = ModelScratch::get(S.t, (size_t)I * batch);
        gemm(I, batch, L.units, theta + L.wOff, L.units, 1, d, 1, L.units, t, batch, false);
        transpose(t, I, batch, dIn);
      }
    }
    if (needInput) d = dIn, inA = !inA;
  }
  return loss / batch;
}

// ---- coordinate-wise rules: a lane-wise sorting network over k inputs ---------------------
// For every coordinate c: sort the k values inputs[i][c] with the comparator network `pairs`
// (Batcher's, from src/aggregation/simd.ts: the same network as the wasm kernel), then reduce
// the sorted values v_0 ≤ … ≤ v_{k−1}:
//   kind 0 (trim t): Σ_{i=t}^{k−t−1} v_i (mean t = 0, cwtm t = f, median t = ⌊(k−1)/2⌋);
//   kind 1 (meamed f): the k − f values nearest the median m: Σ_{i=f}^{k−f−1} v_i, plus for
//   i < f v_{k−f+i} if m − v_i > v_{k−f+i} − m (in float), else v_i — as meamedColumn.
// Sums in double, times `inv`, rounded to float: the same value as the wasm kernel and the JS
// reducers (with the pruned network of fast.ts the kept middle values are summed in another
// order than sorted; a double sum of at most 128 floats is exact unless their exponents span
// more than 29 bits, and the native tests compare bit for bit). Returns false when some input
// is NaN or ±∞ (caught by x·0, NaN for NaN and ±∞ only: summed on the scalar path, ORed on AVX2).

constexpr long PREFETCH = 256;  // floats: 1 KB ahead in each input

struct SortedSpec {
  int k, kind, param;
  double inv;
  const int* pairs;
  int npairs;
};

// Batcher's network for 16 wires: the first stages (p < 16) of the k-wire network, which sort
// each block of 16 wires on its own. The kernels run it on every block first (in registers on
// the AVX2 path, the block padded with +∞ past k: +∞ stays at the top, so the block's real
// values end sorted in its first wires, as after those stages of the k-wire network), then the
// comparators `pairs` they are given: the k-wire network's later stages (src/aggregation/fast.ts
// passes them, pruned of comparators that cannot change the reduction). Any sorting network
// as `pairs` still sorts: the blocks are then sorted twice.
constexpr int SORT16[63][2] = {{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}, {0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}, {1, 2}, {5, 6}, {9, 10}, {13, 14}, {0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 12}, {9, 13}, {10, 14}, {11, 15}, {2, 4}, {3, 5}, {10, 12}, {11, 13}, {1, 2}, {3, 4}, {5, 6}, {9, 10}, {11, 12}, {13, 14}, {0, 8}, {1, 9}, {2, 10}, {3, 11}, {4, 12}, {5, 13}, {6, 14}, {7, 15}, {4, 8}, {5, 9}, {6, 10}, {7, 11}, {2, 4}, {3, 5}, {6, 8}, {7, 9}, {10, 12}, {11, 13}, {1, 2}, {3, 4}, {5, 6}, {7, 8}, {9, 10}, {11, 12}, {13, 14}};

// sorts each block of 16 values of v[0..k) (v has room for k rounded up to 16)
inline void presortBlocks(float* v, int k) {
  const int kp = (k + 15) & ~15;
  for (int i = k; i < kp; i++) v[i] = __builtin_inff();
  for (int b = 0; b < kp; b += 16)
    for (const auto& p : SORT16) {
      const float x = v[b + p[0]], y = v[b + p[1]];
      v[b + p[0]] = y < x ? y : x;
      v[b + p[1]] = y > x ? y : x;
    }
}

inline float lowMedian(const float* v, int k) { return (k & 1) ? v[k >> 1] : (v[(k >> 1) - 1] + v[k >> 1]) * 0.5f; }

// one coordinate, scalar (tails, and the portable build)
bool sortedOne(const float* const* in, long c, const SortedSpec& s, float* v, float* out) {
  float chk = 0.f;
  for (int i = 0; i < s.k; i++) {
    v[i] = in[i][c];
    chk += v[i] * 0.f;
  }
  presortBlocks(v, s.k);
  for (int p = 0; p < s.npairs; p++) {
    const int a = s.pairs[2 * p], b = s.pairs[2 * p + 1];
    const float x = v[a], y = v[b];
    v[a] = y < x ? y : x;
    v[b] = y > x ? y : x;
  }
  double sum = 0;
  if (s.kind == 0) {
    for (int i = s.param; i < s.k - s.param; i++) sum += v[i];
  } else {
    const int f = s.param;
    const float m = lowMedian(v, s.k);
    for (int i = f; i < s.k - f; i++) sum += v[i];
    for (int i = 0; i < f; i++) {
      const float lo = v[i], hi = v[s.k - f + i];
      sum += (m - lo > hi - m) ? hi : lo;
    }
  }
  out[c] = (float)(sum * s.inv);
  return chk == 0.f;
}

#if MONNA_X86
__attribute__((target("avx2,fma"))) bool sortedAvx2(const float* const* in, long c0, long c1, const SortedSpec& s, float* out, bool pf = true) {
  // wire w of the g-th group of 8 coordinates at buf[16·w + 8·g]: two groups per pass through the
  // comparators (independent work for each, one index load for both)
  alignas(32) float buf[128 * 16];
  __m256 chk = _mm256_setzero_ps();
  const __m256 zero = _mm256_setzero_ps();
  const __m256 inf = _mm256_set1_ps(__builtin_inff());
  const __m256d inv = _mm256_set1_pd(s.inv);
  long c = c0;
  for (; c + 8 <= c1;) {
    const int G = c + 16 <= c1 ? 2 : 1;
    for (int g = 0; g < G; g++, c += 8) {
    // the finiteness check first, in registers of its own: x·0 is ±0 for finite x, NaN for NaN
    // and ±∞, and OR keeps NaN's exponent bits. (Folded into the loads below, the check's
    // accumulator was spilled — 16 wires in registers — and every load then waited on the
    // previous one's store to it.)
    {
      __m256 q0 = zero, q1 = zero;
      int i = 0;
      for (; i + 1 < s.k; i += 2) {
        q0 = _mm256_or_ps(q0, _mm256_mul_ps(_mm256_loadu_ps(in[i] + c), zero));
        q1 = _mm256_or_ps(q1, _mm256_mul_ps(_mm256_loadu_ps(in[i + 1] + c), zero));
      }
      if (i < s.k) q0 = _mm256_or_ps(q0, _mm256_mul_ps(_mm256_loadu_ps(in[i] + c), zero));
      chk = _mm256_or_ps(chk, _mm256_or_ps(q0, q1));
    }
    // each block of 16 wires: load, sort in registers (SORT16), store
    for (int b = 0; b < s.k; b += 16) {
      const int n = std::min(16, s.k - b);
      __m256 v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15;
#define MONNA_LD(i) v##i = (i) < n ? _mm256_loadu_ps(in[b + (i)] + c) : inf
      // k input streams at once are more than the hardware prefetchers follow (k = 50: each
      // load waited on memory): fetch each input's line PREFETCH floats ahead
      if (pf && (c & 15) == 0)
        for (int i = 0; i < n; i++) _mm_prefetch((const char*)(in[b + i] + c + PREFETCH), _MM_HINT_T0);
      MONNA_LD(0), MONNA_LD(1), MONNA_LD(2), MONNA_LD(3), MONNA_LD(4), MONNA_LD(5), MONNA_LD(6), MONNA_LD(7);
      MONNA_LD(8), MONNA_LD(9), MONNA_LD(10), MONNA_LD(11), MONNA_LD(12), MONNA_LD(13), MONNA_LD(14), MONNA_LD(15);
#undef MONNA_LD
#define CX(a, b)                                   \
  {                                                \
    const __m256 t_ = _mm256_min_ps(v##b, v##a);   \
    v##b = _mm256_max_ps(v##b, v##a);              \
    v##a = t_;                                     \
  }
      CX(0, 1) CX(2, 3) CX(4, 5) CX(6, 7) CX(8, 9) CX(10, 11) CX(12, 13) CX(14, 15) CX(0, 2) CX(1, 3) CX(4, 6) CX(5, 7) CX(8, 10) CX(9, 11) CX(12, 14) CX(13, 15) CX(1, 2) CX(5, 6) CX(9, 10) CX(13, 14) CX(0, 4) CX(1, 5) CX(2, 6) CX(3, 7) CX(8, 12) CX(9, 13) CX(10, 14) CX(11, 15) CX(2, 4) CX(3, 5) CX(10, 12) CX(11, 13) CX(1, 2) CX(3, 4) CX(5, 6) CX(9, 10) CX(11, 12) CX(13, 14) CX(0, 8) CX(1, 9) CX(2, 10) CX(3, 11) CX(4, 12) CX(5, 13) CX(6, 14) CX(7, 15) CX(4, 8) CX(5, 9) CX(6, 10) CX(7, 11) CX(2, 4) CX(3, 5) CX(6, 8) CX(7, 9) CX(10, 12) CX(11, 13) CX(1, 2) CX(3, 4) CX(5, 6) CX(7, 8) CX(9, 10) CX(11, 12) CX(13, 14)
#undef CX
      float* o = buf + 16 * b + 8 * g;
#define MONNA_ST(i) \
  if ((i) < n) _mm256_store_ps(o + 16 * (i), v##i)
      MONNA_ST(0); MONNA_ST(1); MONNA_ST(2); MONNA_ST(3); MONNA_ST(4); MONNA_ST(5); MONNA_ST(6); MONNA_ST(7);
      MONNA_ST(8); MONNA_ST(9); MONNA_ST(10); MONNA_ST(11); MONNA_ST(12); MONNA_ST(13); MONNA_ST(14); MONNA_ST(15);
#undef MONNA_ST
    }
    }
    c -= 8 * G;
    for (int p = 0; p < s.npairs; p++) {
      float* pa = buf + 16 * s.pairs[2 * p];
      float* pb = buf + 16 * s.pairs[2 * p + 1];
      // as the scalar path: min = y < x ? y : x, max = y < x ? x : y
      const __m256 x = _mm256_load_ps(pa), y = _mm256_load_ps(pb);
      _mm256_store_ps(pa, _mm256_min_ps(y, x));
      _mm256_store_ps(pb, _mm256_max_ps(y, x));
      if (G == 2) {
        const __m256 x2 = _mm256_load_ps(pa + 8), y2 = _mm256_load_ps(pb + 8);
        _mm256_store_ps(pa + 8, _mm256_min_ps(y2, x2));
        _mm256_store_ps(pb + 8, _mm256_max_ps(y2, x2));
      }
    }
    for (int g = 0; g < G; g++, c += 8) {
    float* const bg = buf + 8 * g;
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
#define MONNA_ADD8(x)                                                             \
  do {                                                                            \
    const __m256 x_ = (x);                                                        \
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(x_)));          \
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(x_, 1)));        \
  } while (0)
    if (s.kind == 0) {
      for (int i = s.param; i < s.k - s.param; i++) MONNA_ADD8(_mm256_load_ps(bg + 16 * i));
    } else {
      const int f = s.param, k = s.k;
      const __m256 m = (k & 1) ? _mm256_load_ps(bg + 16 * (k >> 1))
                               : _mm256_mul_ps(_mm256_add_ps(_mm256_load_ps(bg + 16 * ((k >> 1) - 1)), _mm256_load_ps(bg + 16 * (k >> 1))), _mm256_set1_ps(0.5f));
      for (int i = f; i < k - f; i++) MONNA_ADD8(_mm256_load_ps(bg + 16 * i));
      for (int i = 0; i < f; i++) {
        const __m256 l = _mm256_load_ps(bg + 16 * i), h = _mm256_load_ps(bg + 16 * (k - f + i));
        const __m256 takeHigh = _mm256_cmp_ps(_mm256_sub_ps(m, l), _mm256_sub_ps(h, m), _CMP_GT_OQ);
        MONNA_ADD8(_mm256_blendv_ps(l, h, takeHigh));
      }
    }
#undef MONNA_ADD8
    const __m128 r0 = _mm256_cvtpd_ps(_mm256_mul_pd(lo, inv));
    const __m128 r1 = _mm256_cvtpd_ps(_mm256_mul_pd(hi, inv));
    _mm_storeu_ps(out + c, r0);
    _mm_storeu_ps(out + c + 4, r1);
    }
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, chk);
  bool finite = true;
  for (float x : lanes) finite = finite && x == 0.f;
  for (; c < c1; c++) finite = sortedOne(in, c, s, buf, out) && finite;
  return finite;
}
#endif

// coordinates [c0, c1) on this thread
bool sortedReduce(const float* const* in, long c0, long c1, const SortedSpec& s, float* out) {
#if MONNA_X86
  if (useAvx2()) return sortedAvx2(in, c0, c1, s, out);
#endif
  float v[128];  // k ≤ 128: k rounded up to 16 fits
  bool fine = true;
  for (long c = c0; c < c1; c++) fine = sortedOne(in, c, s, v, out) && fine;
  return fine;
}

// all coordinates [0, d), in chunks over the pool's threads
bool sortedReduce(const float* const* in, long d, const SortedSpec& s, float* out) {
  constexpr long CHUNK = 1 << 14;
  const int chunks = (int)((d + CHUNK - 1) / CHUNK);
  std::vector<char> ok(chunks, 1);
  pool.run(chunks, [&](int t) { ok[t] = sortedReduce(in, (long)t * CHUNK, std::min(d, ((long)t + 1) * CHUNK), s, out); });
  for (char x : ok)
    if (!x) return false;
  return true;
}

// ---- Node-API glue ---------------------------------------------------------------------------

// ---- pairwise squared distances ---------------------------------------------------------
// D[i·k + j] (i < j) += Σ_c (x_i[c] − x_j[c])², differences and squares in float summed over runs
// of 256 coordinates, runs summed in double (as the wasm kernel's numerics: a run's relative
// error ≲ 1e-5). A square that overflows float gives +∞: the caller redoes it in double.

constexpr long DIST_RUN = 256;
constexpr long DIST_BLOCK = 1024;  // k rows of it stay in L2 (k = 50: 200 KB)

// ‖a − b‖² over [s, e): float runs of DIST_RUN coordinates, summed in double
inline double sqDistRuns(const float* a, const float* b, long s, long e) {
  double acc = 0;
  for (long r = s; r < e; r += DIST_RUN) {
    const long re = std::min(e, r + DIST_RUN);
    float run = 0.f;
    for (long c = r; c < re; c++) {
      const float t = a[c] - b[c];
      run += t * t;
    }
    acc += run;
  }
  return acc;
}

void pairwisePortable(const float* const* in, int k, long s, long e, double* D) {
  for (int i = 0; i < k; i++)
    for (int j = i + 1; j < k; j++) D[(long)i * k + j] += sqDistRuns(in[i], in[j], s, e);
}

#if MONNA_X86
__attribute__((target("avx2,fma"))) inline double hsum8(__m256 v) {
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return (double)_mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
}

// Register tiles of 2 rows × 4 rows: per 8 coordinates, 6 loads for 8 squared differences (the
// two rows of the tile stay in L1 while the sweep over the other rows streams them from L2).
// Tiles cover the strict upper triangle i < j; a tile straddling the diagonal computes a few
// pairs it discards. Per pair, float lanes over runs of DIST_RUN coordinates, runs summed in
// double (the numerics of the wasm kernel and of the one-row-against-four kernel before it). The
// < 8 coordinates of a run's tail are fused multiply-adds, written so (the compiler used to choose
// per instantiation whether to contract them), so that every tile shape gives the same bits.
constexpr int TI = 2, TJ = 4;

// rows a[0], a[1] against b[0..NJ) (NJ ≤ TJ: the last tile of a sweep is narrower, so no
// pair is computed twice); acc[i·TJ + j] += ‖a_i − b_j‖² over [s, e). ahead > 0: also prefetch
// the tile's rows `ahead` floats on (the next block, on the block's first sweep: the rows' first
// touch would otherwise wait on memory at every 4 KB page)
template <int NJ>
__attribute__((target("avx2,fma"))) void pairTile(const float* const* a, const float* const* b, long s, long e, double* acc, long ahead) {
  const float *a0 = a[0], *a1 = a[1];
  const float* bj[NJ];
  for (int j = 0; j < NJ; j++) bj[j] = b[j];
  for (long r = s; r < e; r += DIST_RUN) {
    const long re = std::min(e, r + DIST_RUN);
    __m256 s0[NJ], s1[NJ];
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++) s0[j] = s1[j] = _mm256_setzero_ps();
    long c = r;
    if (ahead > 0)
      for (long q = r; q < re; q += 16) {
        for (int j = 0; j < NJ; j++) _mm_prefetch((const char*)(bj[j] + q + ahead), _MM_HINT_T0);
        _mm_prefetch((const char*)(a0 + q + ahead), _MM_HINT_T0);
        _mm_prefetch((const char*)(a1 + q + ahead), _MM_HINT_T0);
      }
    for (; c + 8 <= re; c += 8) {
      const __m256 x0 = _mm256_loadu_ps(a0 + c), x1 = _mm256_loadu_ps(a1 + c);
#pragma GCC unroll 4
      for (int j = 0; j < NJ; j++) {
        const __m256 y = _mm256_loadu_ps(bj[j] + c);
        __m256 t = _mm256_sub_ps(x0, y);
        s0[j] = _mm256_fmadd_ps(t, t, s0[j]);
        t = _mm256_sub_ps(x1, y);
        s1[j] = _mm256_fmadd_ps(t, t, s1[j]);
      }
    }
    float tail[TI * NJ] = {0};
    for (; c < re; c++)
      for (int i = 0; i < TI; i++)
        for (int j = 0; j < NJ; j++) {
          const float u = a[i][c] - b[j][c];
          tail[i * NJ + j] = __builtin_fmaf(u, u, tail[i * NJ + j]);
        }
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++) {
      acc[j] += hsum8(s0[j]) + tail[j];
      acc[TJ + j] += hsum8(s1[j]) + tail[NJ + j];
    }
  }
}

__attribute__((target("avx2,fma"))) void pairwiseAvx2(const float* const* in, int k, long s, long e, double* D, bool prefetchNext) {
  for (int i0 = 0; i0 < k - 1; i0 += TI) {
    const float* a[TI];
    for (int i = 0; i < TI; i++) a[i] = in[std::min(i0 + i, k - 1)];
    // first tile column: the first j > i0
    for (int j0 = i0 + 1; j0 < k; j0 += TJ) {
      const int nj = std::min(TJ, k - j0);
      const float* const* b = in + j0;
      double acc[TI * TJ] = {0};
      const long ahead = prefetchNext && i0 == 0 ? e - s : 0;
      if (nj == 4) pairTile<4>(a, b, s, e, acc, ahead);
      else if (nj == 3) pairTile<3>(a, b, s, e, acc, ahead);
      else if (nj == 2) pairTile<2>(a, b, s, e, acc, ahead);
      else pairTile<1>(a, b, s, e, acc, ahead);
      for (int i = 0; i < TI; i++)
        for (int j = 0; j < nj; j++)
          if (i0 + i < j0 + j) D[(long)(i0 + i) * k + j0 + j] += acc[i * TJ + j];
    }
  }
}

// The AVX-512 machines' kernel (pairwiseAvx512). Each block of coordinates is first packed by
// pairs of rows: super row β holds rows 2β and 2β + 1 side by side, 8 coordinates of each per 16
// floats, so one zmm load gives X_β = [x_2β | x_2β+1] (the same 8 coordinates of both) and one
// shuffle its halves swapped, S_β. Then X_α − X_β holds the differences of the pairs (2α, 2β)
// and (2α + 1, 2β + 1), S_α − X_β those of (2α + 1, 2β) and (2α, 2β + 1): two pairs per
// instruction, each half with the AVX2 tile's 8 float lanes and their operations in order (a
// difference's sign does not change its square), summed in hsum8's order (16 at once), plus the
// same tail, into a double per block — the same bits. Tiles of 2 super rows (4 rows) against ≤ ZB
// super rows, 4·ZB accumulators of the 32 zmm registers: per 8 coordinates 2 + ZB loads and 2
// shuffles for 8·ZB pairs (the AVX2 tile: 6 loads for 8 pairs).

// hsum8 of the 16 halves of v[0..8) at once, in hsum8's order ((v0 + v4) + (v2 + v6)) + ((v1 +
// v5) + (v3 + v7)): lane L of the result is the half 2m + h (v[m]'s half h) with m·2 + h =
// L / 4 + 4·(L % 4)
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq"), always_inline)) inline __m512 hsum8x16(const __m512* v) {
  __m512 w[4];
#pragma GCC unroll 4
  for (int m = 0; m < 4; m++)
    w[m] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  // w[m]'s 128-bit chunk c: h = (v_i + v_{i+4})_{i<4} of half 4m + c
  const __m512 z0 = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 z1 = _mm512_add_ps(_mm512_shuffle_ps(w[2], w[3], _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(w[2], w[3], _MM_SHUFFLE(3, 2, 3, 2)));
  // z0's chunk c: (h0 + h2, h1 + h3) of halves c and 4 + c; z1's: of 8 + c and 12 + c
  return _mm512_add_ps(_mm512_shuffle_ps(z0, z1, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(z0, z1, _MM_SHUFFLE(3, 1, 3, 1)));
}

// A tile: super rows a0 … a0 + MA − 1 against b0 … b0 + NB − 1 (a0 + MA ≤ b0), then ND = 0, 1
// (MA = 1) or 4 (MA = 2) accumulators for the pairs within super rows a0 … a0 + MA − 1. The pairs
// of accumulator m's half h: m = 2·(a·NB + b) + sw < 2·MA·NB is X_{a0+a} (sw = 0) or S_{a0+a}
// (sw = 1) minus X_{b0+b}; then the diagonal ones: X0 − S0, X1 − S1, X0 − X1, S0 − X1. A pair i ≥
// j (X − S's repeat) or with a row ≥ k (the last super row of odd k repeats its row) is discarded.
template <int MA, int NB, int ND>
inline void zPair(int m, int h, int a0, int b0, int* i, int* j) {
  if (m < 2 * MA * NB) {
    const int sw = m % 2, a = m / 2 / NB, b = m / 2 % NB;
    *i = 2 * (a0 + a) + (sw == 0 ? h : 1 - h);
    *j = 2 * (b0 + b) + h;
    return;
  }
  const int x = 2 * a0, d = m - 2 * MA * NB;
  if (d == 0) *i = x + h, *j = x + 1 - h;
  else if (d == 1) *i = x + 2 + h, *j = x + 3 - h;
  else if (d == 2) *i = x + h, *j = x + 2 + h;
  else *i = x + 1 - h, *j = x + 2 + h;
}

// acc[L] (hsum8x16's lane order, 16 per group of 8 accumulators) += the tile's ‖x_i − x_j‖² over
// the run [r, re); P: the packed block [s, e) (super row β at P + β·ps, coordinate c at (c − s)·2)
template <int MA, int NB, int ND>
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq"))) void zTile(const float* const* in, int k, const float* P, long ps, int a0, int b0, long s, long r, long re, double* acc) {
  constexpr int NR = 2 * MA * NB, NV = NR + ND, NG = (NV + 7) / 8;
  const float* xa[MA];
  const float* yb[NB > 0 ? NB : 1];
  for (int a = 0; a < MA; a++) xa[a] = P + (long)(a0 + a) * ps - 2 * s;
  for (int b = 0; b < NB; b++) yb[b] = P + (long)(b0 + b) * ps - 2 * s;
  __m512 sq[NG * 8];
#pragma GCC unroll 24
  for (int m = 0; m < NG * 8; m++) sq[m] = _mm512_setzero_ps();
  long c = r;
  for (; c + 8 <= re; c += 8) {
    __m512 x[MA], sx[MA];
#pragma GCC unroll 2
    for (int a = 0; a < MA; a++) {
      x[a] = _mm512_loadu_ps(xa[a] + 2 * c);
      sx[a] = _mm512_shuffle_f32x4(x[a], x[a], _MM_SHUFFLE(1, 0, 3, 2));
    }
#pragma GCC unroll 8
    for (int b = 0; b < NB; b++) {
      const __m512 y = _mm512_loadu_ps(yb[b] + 2 * c);
#pragma GCC unroll 2
      for (int a = 0; a < MA; a++) {
        __m512 t = _mm512_sub_ps(x[a], y);
        sq[2 * (a * NB + b)] = _mm512_fmadd_ps(t, t, sq[2 * (a * NB + b)]);
        t = _mm512_sub_ps(sx[a], y);
        sq[2 * (a * NB + b) + 1] = _mm512_fmadd_ps(t, t, sq[2 * (a * NB + b) + 1]);
      }
    }
    if constexpr (ND > 0) {
      __m512 t = _mm512_sub_ps(x[0], sx[0]);
      sq[NR] = _mm512_fmadd_ps(t, t, sq[NR]);
      if constexpr (ND == 4) {
        t = _mm512_sub_ps(x[1], sx[1]);
        sq[NR + 1] = _mm512_fmadd_ps(t, t, sq[NR + 1]);
        t = _mm512_sub_ps(x[0], x[1]);
        sq[NR + 2] = _mm512_fmadd_ps(t, t, sq[NR + 2]);
        t = _mm512_sub_ps(sx[0], x[1]);
        sq[NR + 3] = _mm512_fmadd_ps(t, t, sq[NR + 3]);
      }
    }
  }
#pragma GCC unroll 4
  for (int g = 0; g < NG; g++) {
    const __m512 h = hsum8x16(sq + 8 * g);
    if (c == re) {  // no tail: acc += (double)h + 0.0, as pairTile
      const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(h)), hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(h, 1));
      const __m512d zero = _mm512_setzero_pd();
      _mm512_storeu_pd(acc + 16 * g, _mm512_add_pd(_mm512_loadu_pd(acc + 16 * g), _mm512_add_pd(lo, zero)));
      _mm512_storeu_pd(acc + 16 * g + 8, _mm512_add_pd(_mm512_loadu_pd(acc + 16 * g + 8), _mm512_add_pd(hi, zero)));
      continue;
    }
    alignas(64) float hl[16];
    _mm512_store_ps(hl, h);
    for (int L = 0; L < 16; L++) {
      const int half = L / 4 + 4 * (L % 4), m = 8 * g + half / 2;
      int i, j;
      if (m >= NV) continue;
      zPair<MA, NB, ND>(m, half % 2, a0, b0, &i, &j);
      if (i >= j || j >= k) continue;
      float tail = 0.f;
      for (long q = c; q < re; q++) {
        const float u = in[i][q] - in[j][q];
        tail = __builtin_fmaf(u, u, tail);
      }
      acc[16 * g + L] += (double)hl[L] + (double)tail;
    }
  }
}

constexpr int ZB = 5;                                 // at most 5 super rows against 2: 20 + 4 accumulators
constexpr int ZACC = ((4 * ZB + 4 + 7) / 8) * 16;  // a tile's sums

// a tile's sums acc[L] (zTile's lane order) into D[i·k + j]
template <int MA, int NB, int ND>
void zInto(const double* acc, int k, int a0, int b0, double* D) {
  constexpr int NV = 2 * MA * NB + ND, NG = (NV + 7) / 8;
  for (int L = 0; L < NG * 16; L++) {
    const int g = L / 16, half = L % 16 / 4 + 4 * (L % 4), m = 8 * g + half / 2;
    int i, j;
    if (m >= NV) continue;
    zPair<MA, NB, ND>(m, half % 2, a0, b0, &i, &j);
    if (i < j && j < k) D[(long)i * k + j] += acc[L];
  }
}

// zTile<2, nb, nd> on the run [r, re) (into = false), or its sums into D (into = true)
template <int NB>
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq"))) void zTwo(bool into, int nb, bool diag, const float* const* in, int k, const float* P, long ps, int a0, int b0, long s, long r, long re, double* acc, double* D) {
  if constexpr (NB > 0)
    if (nb < NB) return zTwo<NB - 1>(into, nb, diag, in, k, P, ps, a0, b0, s, r, re, acc, D);
  if (diag) {
    if (into) zInto<2, NB, 4>(acc, k, a0, b0, D);
    else zTile<2, NB, 4>(in, k, P, ps, a0, b0, s, r, re, acc);
  } else if constexpr (NB > 0) {
    if (into) zInto<2, NB, 0>(acc, k, a0, b0, D);
    else zTile<2, NB, 0>(in, k, P, ps, a0, b0, s, r, re, acc);
  }
}

thread_local std::vector<float> zPacked;
thread_local std::vector<double> zSums;

// The block packed, then run by run (each tile's float lanes over a run, then its sums in double
// over the block, as pairTile), so a run of the packed block (k = 50: 50 KB) serves all its tiles
// from L1 or L2, the sweeps over the super rows alternating in direction. Per pair of super rows
// a0, a0 + 1 the super rows after them in tiles of ≤ ZB, as even as can be, the first with the
// pairs within a0, a0 + 1. The next block's rows are prefetched a few lines before each tile: all
// at once (as pairwiseAvx2 does, on its first sweep) left more of the memory's latency exposed.
void blockSumsPortable(const float* const* in, int k, long s, long e, double* sums, float* mx);

// With `sums`: also blockSums's column sums and magnitudes (the same bits), while packing.
__attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq"))) void pairwiseAvx512(const float* const* in, int k, long s, long e, double* D, bool prefetchNext, double* sums, float* mx) {
  const int K2 = (k + 1) / 2;
  const long ps = (e - s) / 8 * 16 + 16, n8 = s + (e - s) / 8 * 8;  // + 16: super rows 64 bytes apart, not 4 KB
  if (zPacked.size() < (size_t)(K2 * ps + 16)) zPacked.resize(K2 * ps + 16);
  float* P = zPacked.data() + (16 - ((uintptr_t)zPacked.data() / 4) % 16) % 16;  // 64-byte aligned
  const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int b = 0; b < K2; b++) {
    const int i0 = 2 * b, i1 = std::min(2 * b + 1, k - 1);  // i1 = i0: odd k's last row, once
    const float *r0 = in[i0], *r1 = in[i1];
    float* p = P + (long)b * ps - 2 * s;
    if (sums == nullptr) {
      for (long c = s; c < n8; c += 8) {
        _mm256_store_ps(p + 2 * c, _mm256_loadu_ps(r0 + c));
        _mm256_store_ps(p + 2 * c + 8, _mm256_loadu_ps(r1 + c));
      }
      continue;
    }
    // the sums row by row, in row order as blockSumsAvx2's: x_0 + x_1 + … (the block's sums stay in L1)
    __m256 m0 = _mm256_set1_ps(mx[i0]), m1 = _mm256_set1_ps(mx[i1]);
    for (long c = s; c < n8; c += 8) {
      const __m256 v0 = _mm256_loadu_ps(r0 + c), v1 = _mm256_loadu_ps(r1 + c);
      _mm256_store_ps(p + 2 * c, v0);
      _mm256_store_ps(p + 2 * c + 8, v1);
      __m512d t = _mm512_cvtps_pd(v0);
      if (b > 0) t = _mm512_add_pd(_mm512_loadu_pd(sums + c), t);
      if (i1 != i0) t = _mm512_add_pd(t, _mm512_cvtps_pd(v1));
      _mm512_storeu_pd(sums + c, t);
      m0 = _mm256_max_ps(m0, _mm256_and_ps(v0, abs));
      m1 = _mm256_max_ps(m1, _mm256_and_ps(v1, abs));
    }
    alignas(32) float l0[8], l1[8];
    _mm256_store_ps(l0, m0);
    _mm256_store_ps(l1, m1);
    for (int l = 0; l < 8; l++) mx[i0] = std::max(mx[i0], l0[l]), mx[i1] = std::max(mx[i1], l1[l]);
  }
  if (sums != nullptr) blockSumsPortable(in, k, n8, e, sums, mx);
  const auto tilesOf = [K2](int a0) {
    const int n = K2 - a0 - 2;
    return n <= 0 ? 1 : (n + ZB - 1) / ZB;
  };
  int tiles = 0;
  for (int a0 = 0; a0 < K2; a0 += 2) tiles += tilesOf(a0);
  zSums.assign((size_t)tiles * ZACC, 0.0);
  // the next block's rows, a few lines before each tile of two super rows (not all at once)
  const long lines = prefetchNext ? (e - s + 15) / 16 : 0, total = lines * k;
  const long calls = (long)(tiles - K2 % 2) * ((e - s + DIST_RUN - 1) / DIST_RUN), quota = calls > 0 ? (total + calls - 1) / calls : 0;
  long next = 0;
  for (long r = s;; r += DIST_RUN) {
    const bool into = r >= e;  // after the last run: the sums into D
    const long re = into ? r : std::min(e, r + DIST_RUN);
    double* acc = zSums.data();
    for (int a0 = 0; a0 < K2; a0 += 2) {
      if (a0 + 1 == K2) {  // odd K2: the last super row's own pair
        if (into) zInto<1, 0, 1>(acc, k, a0, 0, D);
        else zTile<1, 0, 1>(in, k, P, ps, a0, 0, s, r, re, acc);
        break;
      }
      const int n = std::max(0, K2 - a0 - 2), nt = tilesOf(a0);
      for (int t = 0; t < nt; t++) {
        const int u = (a0 / 2) % 2 == 0 ? t : nt - 1 - t;  // alternate directions
        const int b0 = a0 + 2 + n * u / nt, nb = a0 + 2 + n * (u + 1) / nt - b0;
        if (!into)
          for (const long stop = std::min(total, next + quota); next < stop; next++) _mm_prefetch((const char*)(in[next / lines] + e + next % lines * 16), _MM_HINT_T0);
        zTwo<ZB>(into, nb, u == 0, in, k, P, ps, a0, b0, s, r, re, acc + (long)u * ZACC, D);
      }
      acc += (long)nt * ZACC;
    }
    if (into) break;
  }
}
#endif

// Column sums and magnitudes of a block, while it is still in cache from the distances:
// sums[c] = x_0[c] + x_1[c] + … + x_{k−1}[c] in double, in that order (the same bits on both
// paths), and mx[i] = max(mx[i], max_c |x_i[c]|) over [s, e).
void blockSumsPortable(const float* const* in, int k, long s, long e, double* sums, float* mx) {
  for (int i = 0; i < k; i++) {
    const float* x = in[i];
    float m = mx[i];
    for (long c = s; c < e; c++) {
      sums[c] = i == 0 ? (double)x[c] : sums[c] + (double)x[c];
      m = std::max(m, std::fabs(x[c]));
    }
    mx[i] = m;
  }
}

#if MONNA_X86
__attribute__((target("avx2,fma"))) void blockSumsAvx2(const float* const* in, int k, long s, long e, double* sums, float* mx) {
  const long n8 = s + (e - s) / 8 * 8;
  // the sums coordinate-major, in registers (no store and reload of the block's sums per input);
  // 32 coordinates at a time: 8 chains of additions in flight, not 2 (each waits on the last)
  long c0 = s;
  for (; c0 + 32 <= n8; c0 += 32) {
    __m256d acc[8];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
      const __m256 v = _mm256_loadu_ps(in[0] + c0 + 8 * q);
      acc[2 * q] = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
      acc[2 * q + 1] = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    }
    for (int i = 1; i < k; i++) {
      const float* x = in[i] + c0;
#pragma GCC unroll 4
      for (int q = 0; q < 4; q++) {
        const __m256 v = _mm256_loadu_ps(x + 8 * q);
        acc[2 * q] = _mm256_add_pd(acc[2 * q], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        acc[2 * q + 1] = _mm256_add_pd(acc[2 * q + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
      }
    }
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++) _mm256_storeu_pd(sums + c0 + 4 * q, acc[q]);
  }
  for (long c = c0; c < n8; c += 8) {
    __m256 v = _mm256_loadu_ps(in[0] + c);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    for (int i = 1; i < k; i++) {
      v = _mm256_loadu_ps(in[i] + c);
      lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
      hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    _mm256_storeu_pd(sums + c, lo);
    _mm256_storeu_pd(sums + c + 4, hi);
  }
  // the magnitudes input-major, four accumulators
  const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int i = 0; i < k; i++) {
    const float* x = in[i];
    __m256 m0 = _mm256_set1_ps(mx[i]), m1 = m0;
    long c = s;
    for (; c + 16 <= n8; c += 16) {
      m0 = _mm256_max_ps(m0, _mm256_and_ps(_mm256_loadu_ps(x + c), abs));
      m1 = _mm256_max_ps(m1, _mm256_and_ps(_mm256_loadu_ps(x + c + 8), abs));
    }
    if (c < n8) m0 = _mm256_max_ps(m0, _mm256_and_ps(_mm256_loadu_ps(x + c), abs));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_max_ps(m0, m1));
    float r = lanes[0];
    for (float l : lanes) r = std::max(r, l);
    mx[i] = r;
  }
  blockSumsPortable(in, k, n8, e, sums, mx);
}
#endif

// all pairs over [0, d), coordinate chunks over the pool's threads (each with its own partial D).
// With `sums` (d doubles) and `maxAbs` (k floats): also the column sums and each input's largest
// magnitude (blockSums), block by block while the block is in cache.
void pairwise(const float* const* in, int k, long d, double* D, double* sums = nullptr, float* maxAbs = nullptr) {
  const long blocks = (d + DIST_BLOCK - 1) / DIST_BLOCK;
  const int tasks = (int)std::min<long>(blocks, 4L * pool.threads());
  if (tasks == 0) return;
  std::vector<double> partial((size_t)tasks * k * k, 0.0);
  std::vector<float> mxPartial(sums != nullptr ? (size_t)tasks * k : 0, 0.f);
  pool.run(tasks, [&](int t) {
    double* P = partial.data() + (size_t)t * k * k;
    for (long b = blocks * t / tasks; b < blocks * (t + 1) / tasks; b++) {
      const long s = b * DIST_BLOCK, e = std::min(d, s + DIST_BLOCK);
#if MONNA_X86
      if (useAvx2()) {
        float* mx = sums != nullptr ? mxPartial.data() + (size_t)t * k : nullptr;
        if (useAvx512()) {
          pairwiseAvx512(in, k, s, e, P, e < d, sums, mx);
          continue;
        }
        pairwiseAvx2(in, k, s, e, P, e < d);
        if (sums != nullptr) blockSumsAvx2(in, k, s, e, sums, mx);
        continue;
      }
#endif
      pairwisePortable(in, k, s, e, P);
      if (sums != nullptr) blockSumsPortable(in, k, s, e, sums, mxPartial.data() + (size_t)t * k);
    }
  });
  for (int t = 0; t < tasks; t++)
    for (long x = 0; x < (long)k * k; x++) D[x] += partial[(size_t)t * k * k + x];
  for (int i = 0; i < k; i++)
    for (int j = i + 1; j < k; j++) D[(long)j * k + i] = D[(long)i * k + j];
  if (sums != nullptr)
    for (int i = 0; i < k; i++) {
      float m = 0.f;
      for (int t = 0; t < tasks; t++) m = std::max(m, mxPartial[(size_t)t * k + i]);
      maxAbs[i] = m;
    }
}

// ---- squared distances from one vector to each input (nna, ce) -----------------------------
// out[i] = ‖in[i] − v‖², with pairwise's numerics (float lanes over runs of DIST_RUN coordinates,
// runs summed in double; a square that overflows float gives +∞). One pass over the inputs, in
// place: no copy into a work space (the wasm kernel's way, which copied every input block).

void distancesToPortable(const float* const* in, int k, const float* v, long s, long e, double* out) {
  for (int i = 0; i < k; i++) out[i] += sqDistRuns(in[i], v, s, e);
}

#if MONNA_X86
__attribute__((target("avx2,fma"))) void distancesToAvx2(const float* const* in, int k, const float* v, long s, long e, double* out) {
  for (int i = 0; i < k; i++) {
    const float* x = in[i];
    double acc = 0;
    for (long r = s; r < e; r += DIST_RUN) {
      const long re = std::min(e, r + DIST_RUN);
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      long c = r;
      for (; c + 16 <= re; c += 16) {
        const __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(x + c), _mm256_loadu_ps(v + c));
        const __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(x + c + 8), _mm256_loadu_ps(v + c + 8));
        a0 = _mm256_fmadd_ps(t0, t0, a0);
        a1 = _mm256_fmadd_ps(t1, t1, a1);
      }
      float run = (float)hsum8(_mm256_add_ps(a0, a1));
      for (; c < re; c++) {
        const float t = x[c] - v[c];
        run += t * t;
      }
      acc += run;
    }
    out[i] += acc;
  }
}
#endif

// over [0, d), coordinate chunks over the pool's threads (each with its own partial sums)
void distancesTo(const float* const* in, int k, const float* v, long d, double* out) {
  const long blocks = (d + DIST_BLOCK - 1) / DIST_BLOCK;
  const int tasks = (int)std::min<long>(blocks, 4L * pool.threads());
  for (int i = 0; i < k; i++) out[i] = 0;
  if (tasks == 0) return;
  std::vector<double> partial((size_t)tasks * k, 0.0);
  pool.run(tasks, [&](int t) {
    double* P = partial.data() + (size_t)t * k;
    for (long b = blocks * t / tasks; b < blocks * (t + 1) / tasks; b++) {
      const long s = b * DIST_BLOCK, e = std::min(d, s + DIST_BLOCK);
#if MONNA_X86
      if (useAvx2()) {
        distancesToAvx2(in, k, v, s, e, P);
        continue;
      }
#endif
      distancesToPortable(in, k, v, s, e, P);
    }
  });
  for (int t = 0; t < tasks; t++)
    for (int i = 0; i < k; i++) out[i] += partial[(size_t)t * k + i];
}

// ---- the plain mean ------------------------------------------------------------------------
// out[c] = (float)((x_0[c] + x_1[c] + … + x_{k−1}[c]) · inv), summed in double in input order,
// grouped as the JS kernel (weightedMean) groups them — the same bits —, block by block: a block's
// double accumulator stays in L1 while the inputs stream through it. Returns whether every
// output is finite (a non-finite input makes its coordinates non-finite).

constexpr long MEAN_BLOCK = 1024;

bool meanPortable(const float* const* in, int k, double inv, float* out, long c0, long c1) {
  bool finite = true;
  for (long c = c0; c < c1; c++) {
    double a = 0;
    int i = 0;
    for (; i + 4 <= k; i += 4) a += (double)in[i][c] + (double)in[i + 1][c] + (double)in[i + 2][c] + (double)in[i + 3][c];
    for (; i < k; i++) a += in[i][c];
    out[c] = (float)(a * inv);
    if (!std::isfinite(out[c])) finite = false;
  }
  return finite;
}

#if MONNA_X86
__attribute__((target("avx2,fma"))) bool meanAvx2(const float* const* in, int k, double inv, float* out, long c0, long c1) {
  const long n4 = (c1 - c0) / 4 * 4;
  alignas(32) double acc[MEAN_BLOCK];
  for (long c = 0; c < n4; c += 4) _mm256_store_pd(acc + c, _mm256_setzero_pd());
  int i = 0;
  // four inputs per pass over the accumulator: acc += ((x0 + x1) + x2) + x3, as the JS kernel
  for (; i + 4 <= k; i += 4) {
    const float *x0 = in[i] + c0, *x1 = in[i + 1] + c0, *x2 = in[i + 2] + c0, *x3 = in[i + 3] + c0;
    for (long c = 0; c < n4; c += 4) {
      __m256d t = _mm256_cvtps_pd(_mm_loadu_ps(x0 + c));
      t = _mm256_add_pd(t, _mm256_cvtps_pd(_mm_loadu_ps(x1 + c)));
      t = _mm256_add_pd(t, _mm256_cvtps_pd(_mm_loadu_ps(x2 + c)));
      t = _mm256_add_pd(t, _mm256_cvtps_pd(_mm_loadu_ps(x3 + c)));
      _mm256_store_pd(acc + c, _mm256_add_pd(_mm256_load_pd(acc + c), t));
    }
  }
  for (; i < k; i++) {
    const float* x = in[i] + c0;
    for (long c = 0; c < n4; c += 4) _mm256_store_pd(acc + c, _mm256_add_pd(_mm256_load_pd(acc + c), _mm256_cvtps_pd(_mm_loadu_ps(x + c))));
  }
  const __m256d s = _mm256_set1_pd(inv);
  __m128 bad = _mm_setzero_ps();  // x · 0 is 0 for finite x, NaN otherwise
  for (long c = 0; c < n4; c += 4) {
    const __m128 v = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_load_pd(acc + c), s));
    _mm_storeu_ps(out + c0 + c, v);
    bad = _mm_add_ps(bad, _mm_mul_ps(v, _mm_setzero_ps()));
  }
  alignas(16) float b[4];
  _mm_store_ps(b, bad);
  const bool finite = b[0] == 0.f && b[1] == 0.f && b[2] == 0.f && b[3] == 0.f;
  return meanPortable(in, k, inv, out, c0 + n4, c1) && finite;
}
#endif

bool mean(const float* const* in, int k, double inv, float* out, long d) {
  const long blocks = (d + MEAN_BLOCK - 1) / MEAN_BLOCK;
  const int tasks = (int)std::min<long>(blocks, 4L * pool.threads());
  if (tasks == 0) return true;
  std::vector<char> ok((size_t)tasks, 1);
  pool.run(tasks, [&](int t) {
    for (long b = blocks * t / tasks; b < blocks * (t + 1) / tasks; b++) {
      const long s = b * MEAN_BLOCK, e = std::min(d, s + MEAN_BLOCK);
#if MONNA_X86
      if (useAvx2()) {
        if (!meanAvx2(in, k, inv, out, s, e)) ok[(size_t)t] = 0;
        continue;
      }
#endif
      if (!meanPortable(in, k, inv, out, s, e)) ok[(size_t)t] = 0;
    }
  });
  return std::all_of(ok.begin(), ok.end(), [](char c) { return c != 0; });
}

// ---- mean of the inputs kept, from the column sums -----------------------------------------
// out[c] = (float)((sums[c] − x_{e_0}[c] − … − x_{e_{n−1}}[c]) · scale): the mean of the inputs
// left after excluding e_0.., from all inputs' sums (pairwise's), reading only the excluded
// inputs. In double, in that order, the same bits on both paths.
void keptMeanPortable(const float* const* ex, int n, const double* sums, double scale, float* out, long c0, long c1) {
  for (long c = c0; c < c1; c++) {
    double v = sums[c];
    for (int t = 0; t < n; t++) v -= (double)ex[t][c];
    out[c] = (float)(v * scale);
  }
}

#if MONNA_X86
__attribute__((target("avx2,fma"))) void keptMeanAvx2(const float* const* ex, int n, const double* sums, double scale, float* out, long c0, long c1) {
  const long n8 = c0 + (c1 - c0) / 8 * 8;
  const __m256d sc = _mm256_set1_pd(scale);
  for (long c = c0; c < n8; c += 8) {
    if ((c & 15) == 0)
      for (int t = 0; t < n; t++) _mm_prefetch((const char*)(ex[t] + c + PREFETCH), _MM_HINT_T0);
    __m256d lo = _mm256_loadu_pd(sums + c), hi = _mm256_loadu_pd(sums + c + 4);
    for (int t = 0; t < n; t++) {
      const __m256 v = _mm256_loadu_ps(ex[t] + c);
      lo = _mm256_sub_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
      hi = _mm256_sub_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    _mm_storeu_ps(out + c, _mm256_cvtpd_ps(_mm256_mul_pd(lo, sc)));
    _mm_storeu_ps(out + c + 4, _mm256_cvtpd_ps(_mm256_mul_pd(hi, sc)));
  }
  keptMeanPortable(ex, n, sums, scale, out, n8, c1);
}
#endif

void keptMean(const float* const* ex, int n, const double* sums, double scale, float* out, long d) {
  constexpr long CHUNK = 1 << 14;
  const int chunks = (int)((d + CHUNK - 1) / CHUNK);
  pool.run(chunks, [&](int t) {
    const long c0 = (long)t * CHUNK, c1 = std::min(d, c0 + CHUNK);
#if MONNA_X86
    if (useAvx2()) return keptMeanAvx2(ex, n, sums, scale, out, c0, c1);
#endif
    keptMeanPortable(ex, n, sums, scale, out, c0, c1);
  });
}

// ---- NNM rows ---------------------------------------------------------------------------
// Distinct NNM rows as a shared base sum ± a few inputs: y_r[c] = (Σ_{base} x + Σ_{add_r} x −
// Σ_{sub_r} x)[c] · scale, in that order, rounded to float (double sums on the portable path).

struct NnmSpec {
  int k;  // inputs
  const int* base;
  int nBase;
  std::vector<const int*> add, sub;
  std::vector<int> nAdd, nSub;
  double scale;
};

void nnmRowsPortable(const float* const* in, const NnmSpec& s, float* const* out, long c0, long c1) {
  const int rows = (int)s.add.size();
  for (long c = c0; c < c1; c++) {
    double b = 0;
    for (int t = 0; t < s.nBase; t++) b += in[s.base[t]][c];
    for (int r = 0; r < rows; r++) {
      double v = b;
      for (int t = 0; t < s.nAdd[r]; t++) v += in[s.add[r][t]][c];
      for (int t = 0; t < s.nSub[r]; t++) v -= in[s.sub[r][t]][c];
      out[r][c] = (float)(v * s.scale);
    }
  }
}

#if MONNA_X86
// 8 coordinates at a time in float (the portable path sums in double): the base sum of ~k − f
// inputs and a few ± per row, relative error ~1e-6 — well inside the rules' tolerance, at half
// the work of double lanes
// dst[c] = (src[c] + a_0[c] + … + a_{na−1}[c] − s_0[c] − … − s_{ns−1}[c]) (· scale when
// `scaled`), terms in that order, 0 ≤ na, ns ≤ 4, over [0, n8) in vectors of 8; the term
// pointers point at the block's first coordinate. `pf`: prefetch the terms PREFETCH floats ahead.
__attribute__((target("avx2,fma"))) void mixTerms(float* dst, const float* src, const float* const* a, int na, const float* const* sb, int ns,
                                                  long n8, bool scaled, float scale, bool pf) {
  const float* z = src;  // stands in for absent terms (never read)
  const float *a0 = na > 0 ? a[0] : z, *a1 = na > 1 ? a[1] : z, *a2 = na > 2 ? a[2] : z, *a3 = na > 3 ? a[3] : z;
  const float *s0 = ns > 0 ? sb[0] : z, *s1 = ns > 1 ? sb[1] : z, *s2 = ns > 2 ? sb[2] : z, *s3 = ns > 3 ? sb[3] : z;
  const __m256 sc = _mm256_set1_ps(scale);
  for (long c = 0; c < n8; c += 8) {
    if (pf && (c & 15) == 0) {
      for (int t = 0; t < na; t++) _mm_prefetch((const char*)(a[t] + c + PREFETCH), _MM_HINT_T0);
      for (int t = 0; t < ns; t++) _mm_prefetch((const char*)(sb[t] + c + PREFETCH), _MM_HINT_T0);
    }
    __m256 v = _mm256_loadu_ps(src + c);
    if (na > 0) v = _mm256_add_ps(v, _mm256_loadu_ps(a0 + c));
    if (na > 1) v = _mm256_add_ps(v, _mm256_loadu_ps(a1 + c));
    if (na > 2) v = _mm256_add_ps(v, _mm256_loadu_ps(a2 + c));
    if (na > 3) v = _mm256_add_ps(v, _mm256_loadu_ps(a3 + c));
    if (ns > 0) v = _mm256_sub_ps(v, _mm256_loadu_ps(s0 + c));
    if (ns > 1) v = _mm256_sub_ps(v, _mm256_loadu_ps(s1 + c));
    if (ns > 2) v = _mm256_sub_ps(v, _mm256_loadu_ps(s2 + c));
    if (ns > 3) v = _mm256_sub_ps(v, _mm256_loadu_ps(s3 + c));
    if (scaled) v = _mm256_mul_ps(v, sc);
    _mm256_storeu_ps(dst + c, v);
  }
}

// Row by row over the block (one output row at a time; the inputs' slices of the block stay in
// L1/L2): the base sum once into a scratch row, then each row = base + its adds − its subs, up
// to 4 of each per pass over the block, × scale in the last pass. 8 coordinates per instruction
// in float, each row's terms in the order of the portable path (whose sums are in double); the
// tail goes to the portable path. The base pass prefetches the inputs PREFETCH floats ahead.
__attribute__((target("avx2,fma"))) void nnmRowsAvx2(const float* const* in, const NnmSpec& s, float* const* out, long c0, long c1) {
  const int rows = (int)s.add.size();
  const long n8 = (c1 - c0) / 8 * 8;
  thread_local std::vector<float> baseRow;
  if ((long)baseRow.size() < n8 + 8) baseRow.resize(n8 + 8);
  float* base = baseRow.data();
  std::fill(base, base + n8, 0.f);
  const float *xa[4], *xs[4];
  for (int t = 0; t < s.nBase; t += 4) {
    const int n = std::min(4, s.nBase - t);
    for (int u = 0; u < n; u++) xa[u] = in[s.base[t + u]] + c0;
    mixTerms(base, base, xa, n, xs, 0, n8, false, 1.f, true);
  }
  for (int i = 0; i < s.k; i++) {  // inputs outside the base, which rows add
    bool inBase = false;
    for (int t = 0; t < s.nBase && !inBase; t++) inBase = s.base[t] == i;
    if (!inBase)
      for (long c = 0; c < n8; c += 16) _mm_prefetch((const char*)(in[i] + c0 + c), _MM_HINT_T0);
  }
  for (int r = 0; r < rows; r++) {
    float* o = out[r] + c0;
    const float* src = base;
    int ta = 0, ts = 0;
    do {
      const int na = std::min(4, s.nAdd[r] - ta);
      for (int u = 0; u < na; u++) xa[u] = in[s.add[r][ta + u]] + c0;
      ta += na;
      // subtractions join a pass only once every addition is done (the portable path's order)
      const int ns = ta == s.nAdd[r] ? std::min(4, s.nSub[r] - ts) : 0;
      for (int u = 0; u < ns; u++) xs[u] = in[s.sub[r][ts + u]] + c0;
      ts += ns;
      const bool last = ta == s.nAdd[r] && ts == s.nSub[r];
      mixTerms(o, src, xa, na, xs, ns, n8, last, (float)s.scale, false);
      src = o;
    } while (ta < s.nAdd[r] || ts < s.nSub[r]);
  }
  nnmRowsPortable(in, s, out, c0 + n8, c1);
}
#endif

// Blocks of NNM_BLOCK coordinates: the inputs' slices and the rows' stay in L1/L2 while every
// row of the block is written (row by row: one output stream at a time, not k at once).
constexpr long NNM_BLOCK = 512;

void nnmBlock(const float* const* in, const NnmSpec& s, float* const* out, long c0, long c1) {
#if MONNA_X86
  if (useAvx2()) return nnmRowsAvx2(in, s, out, c0, c1);
#endif
  nnmRowsPortable(in, s, out, c0, c1);
}

void nnmRows(const float* const* in, const NnmSpec& s, float* const* out, long d) {
  const int blocks = (int)((d + NNM_BLOCK - 1) / NNM_BLOCK);
  const int tasks = std::min(blocks, 4 * pool.threads());
  pool.run(tasks, [&](int t) {
    for (long b = (long)blocks * t / tasks; b < (long)blocks * (t + 1) / tasks; b++) nnmBlock(in, s, out, b * NNM_BLOCK, std::min(d, (b + 1) * NNM_BLOCK));
  });
}

// NNM then a coordinate-wise rule, fused per block: the block's rows go to a per-thread scratch
// (k rows of NNM_BLOCK floats) and the sorting network reads them there — the k × d rows are
// never written out. rowOf[i]: the distinct row of input i.
bool sortedReduce(const float* const* in, long c0, long c1, const SortedSpec& s, float* out);

#if MONNA_X86
bool sortedAvx2(const float* const* in, long c0, long c1, const SortedSpec& s, float* out, bool pf);

// NNM then the sorting network on the AVX2 path, block by block: the base sum over the block
// first (as nnmRowsAvx2, inputs prefetched), then 32 coordinates at a time every row in
// registers (4 vectors of 8: base + adds − subs, × scale, in nnmRowsAvx2's order, so the same
// bits) into a rows × 32 scratch that stays in L1, which the network reads at once — instead of
// writing every row over the whole block in passes of 4 terms and reading them back from L2.
// Coordinates [c0, c1) with c1 − c0 a multiple of 32, at most NNM_BLOCK; false when a row is not
// finite.
__attribute__((target("avx2,fma"))) bool nnmSortedFusedAvx2(const float* const* in, const NnmSpec& nn, const int* rowOf, int k, const SortedSpec& s, float* out, long c0,
                                                            long c1, float* base, float* rowBuf, const float** ins) {
  const int rows = (int)nn.add.size();
  const long n = c1 - c0;
  std::fill(base, base + n, 0.f);
  const float *xa[4], *xs[4];
  for (int t = 0; t < nn.nBase; t += 4) {
    const int m = std::min(4, nn.nBase - t);
    for (int u = 0; u < m; u++) xa[u] = in[nn.base[t + u]] + c0;
    mixTerms(base, base, xa, m, xs, 0, n, false, 1.f, true);
  }
  const __m256 sc = _mm256_set1_ps((float)nn.scale);
  bool ok = true;
  for (long c = c0; c < c1; c += 32) {
    const float* bp = base + (c - c0);
    const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8), b2 = _mm256_loadu_ps(bp + 16), b3 = _mm256_loadu_ps(bp + 24);
    for (int r = 0; r < rows; r++) {
      __m256 v0 = b0, v1 = b1, v2 = b2, v3 = b3;
      for (int t = 0; t < nn.nAdd[r]; t++) {
        const float* x = in[nn.add[r][t]] + c;
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(x));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(x + 8));
        v2 = _mm256_add_ps(v2, _mm256_loadu_ps(x + 16));
        v3 = _mm256_add_ps(v3, _mm256_loadu_ps(x + 24));
      }
      for (int t = 0; t < nn.nSub[r]; t++) {
        const float* x = in[nn.sub[r][t]] + c;
        v0 = _mm256_sub_ps(v0, _mm256_loadu_ps(x));
        v1 = _mm256_sub_ps(v1, _mm256_loadu_ps(x + 8));
        v2 = _mm256_sub_ps(v2, _mm256_loadu_ps(x + 16));
        v3 = _mm256_sub_ps(v3, _mm256_loadu_ps(x + 24));
      }
      float* o = rowBuf + 32 * r;
      _mm256_storeu_ps(o, _mm256_mul_ps(v0, sc));
      _mm256_storeu_ps(o + 8, _mm256_mul_ps(v1, sc));
      _mm256_storeu_ps(o + 16, _mm256_mul_ps(v2, sc));
      _mm256_storeu_ps(o + 24, _mm256_mul_ps(v3, sc));
    }
    for (int i = 0; i < k; i++) ins[i] = rowBuf + 32 * rowOf[i] - c;
    if (!sortedAvx2(ins, c, c + 32, s, out, false)) ok = false;
  }
  return ok;
}
#endif

bool nnmSorted(const float* const* in, const NnmSpec& nn, const int* rowOf, int k, const SortedSpec& s, float* out, long d) {
  const int rows = (int)nn.add.size();
  const int blocks = (int)((d + NNM_BLOCK - 1) / NNM_BLOCK);
  const int tasks = std::min(blocks, 4 * pool.threads());
  std::vector<char> ok(tasks, 1);
  pool.run(tasks, [&](int t) {
    std::vector<float> scratch((size_t)std::max(rows * NNM_BLOCK, NNM_BLOCK + 32 * rows));
    std::vector<float*> rowPtr(rows);
    std::vector<const float*> ins(k);
    const long cStart = (long)blocks * t / tasks * NNM_BLOCK, cEnd = std::min(d, (long)blocks * (t + 1) / tasks * NNM_BLOCK);
    for (long c0 = cStart; c0 < cEnd; c0 += NNM_BLOCK) {
      long c1 = std::min(cEnd, c0 + NNM_BLOCK);
#if MONNA_X86
      if (useAvx2()) {
        // whole groups of 32 fused; what is left (the last < 32 coordinates of d) as below
        const long n32 = c0 + (c1 - c0) / 32 * 32;
        if (!nnmSortedFusedAvx2(in, nn, rowOf, k, s, out, c0, n32, scratch.data(), scratch.data() + NNM_BLOCK, ins.data())) ok[t] = 0;
        if (n32 == c1) continue;
        c0 = n32;
      }
#endif
      // pointers shifted so that coordinate c of the block is at [c]
      for (int r = 0; r < rows; r++) rowPtr[r] = scratch.data() + (size_t)r * NNM_BLOCK - c0;
      nnmBlock(in, nn, rowPtr.data(), c0, c1);
      for (int i = 0; i < k; i++) ins[i] = rowPtr[rowOf[i]];
      if (!sortedReduce(ins.data(), c0, c1, s, out)) ok[t] = 0;
    }
  });
  for (char x : ok)
    if (!x) return false;
  return true;
}


// ---- Polyak momentum step ---------------------------------------------------------------
// m ← fround(β·m + (1 − β)·g), θ ← fround(θ − γ·m), in double, exactly as the learner's JS loop
// (separate multiply and add: no fused multiply-add, which would round differently); returns ‖g‖²
// summed as the JS loop does (even and odd coordinates apart, then added), so the same bits.

#if MONNA_X86
__attribute__((target("avx2"))) void momentumAvx2(const float* g, float* m, float* th, long n, double beta, double omb, double gamma) {
  const __m256d b = _mm256_set1_pd(beta), o = _mm256_set1_pd(omb), y = _mm256_set1_pd(gamma);
  long j = 0;
  for (; j + 4 <= n; j += 4) {
    const __m256d gd = _mm256_cvtps_pd(_mm_loadu_ps(g + j));
    const __m256d md = _mm256_cvtps_pd(_mm_loadu_ps(m + j));
    const __m128 mf = _mm256_cvtpd_ps(_mm256_add_pd(_mm256_mul_pd(b, md), _mm256_mul_pd(o, gd)));
    _mm_storeu_ps(m + j, mf);
    const __m256d t = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(th + j)), _mm256_mul_pd(y, _mm256_cvtps_pd(mf)));
    _mm_storeu_ps(th + j, _mm256_cvtpd_ps(t));
  }
  for (; j < n; j++) {
    volatile double bm = beta * (double)m[j];
    const float mf = (float)(bm + omb * (double)g[j]);
    m[j] = mf;
    volatile double gm = gamma * (double)mf;
    th[j] = (float)((double)th[j] - gm);
  }
}
#endif

double momentumStep(const float* g, float* m, float* th, long n, double beta, double gamma) {
  const double omb = 1 - beta;
  double sq0 = 0, sq1 = 0;
  long j = 0;
  for (; j + 1 < n; j += 2) {
    sq0 += (double)g[j] * g[j];
    sq1 += (double)g[j + 1] * g[j + 1];
  }
  if (j < n) sq0 += (double)g[j] * g[j];
#if MONNA_X86
  if (useAvx2()) {
    momentumAvx2(g, m, th, n, beta, omb, gamma);
    return sq0 + sq1;
  }
#endif
  for (j = 0; j < n; j++) {
    volatile double bm = beta * (double)m[j];  // volatile: no contraction into an FMA
    const float mf = (float)(bm + omb * (double)g[j]);
    m[j] = mf;
    volatile double gm = gamma * (double)mf;
    th[j] = (float)((double)th[j] - gm);
  }
  return sq0 + sq1;
}

#define CHECK(call)                                    \
  do {                                                 \
    if ((call) != napi_ok) return throwError(env, #call); \
  } while (0)

napi_value throwError(napi_env env, const char* what) {
  const napi_extended_error_info* info = nullptr;
  napi_get_last_error_info(env, &info);
  napi_throw_error(env, "ERR_MONNA_NATIVE", info != nullptr && info->error_message != nullptr ? info->error_message : what);
  return nullptr;
}

// The data of a typed array of type `want`; else a TypeError saying `expected`.
template <typename T>
bool typedArray(napi_env env, napi_value v, napi_typedarray_type want, const char* expected, T** out, size_t* length) {
  napi_typedarray_type type;
  void* data = nullptr;
  napi_value ab;
  size_t offset = 0;
  if (napi_get_typedarray_info(env, v, &type, length, &data, &ab, &offset) != napi_ok || type != want) {
    napi_throw_type_error(env, "ERR_MONNA_NATIVE", expected);
    return false;
  }
  *out = static_cast<T*>(data);
  return true;
}

bool floats(napi_env env, napi_value v, float** out, size_t* length) {
  return typedArray(env, v, napi_float32_array, "expected a Float32Array", out, length);
}

bool int32s(napi_env env, napi_value v, const int** out, size_t* length) {
  return typedArray(env, v, napi_int32_array, "expected an Int32Array", out, length);
}

bool ints(napi_env env, napi_value* argv, size_t from, size_t count, int* out) {
  for (size_t i = 0; i < count; i++) {
    int32_t v = 0;
    if (napi_get_value_int32(env, argv[from + i], &v) != napi_ok) {
      napi_throw_type_error(env, "ERR_MONNA_NATIVE", "expected an integer");
      return false;
    }
    out[i] = v;
  }
  return true;
}

template <size_t N>
bool args(napi_env env, napi_callback_info info, napi_value (&argv)[N]) {
  size_t argc = N;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != N) {
    napi_throw_type_error(env, "ERR_MONNA_NATIVE", "wrong number of arguments");
    return false;
  }
  return true;
}

bool fits(napi_env env, size_t have, long need, const char* what) {
  if (need < 0 || (size_t)need > have) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", what);
    return false;
  }
  return true;
}

// gemm(transA, transB, m, n, k, A, B, C, accumulate): C (m×n) = op(A)·op(B) (+C)
napi_value Gemm(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!args(env, info, argv)) return nullptr;
  int d[5];
  if (!ints(env, argv, 0, 5, d)) return nullptr;
  const bool tA = d[0] != 0, tB = d[1] != 0;
  const int m = d[2], n = d[3], k = d[4];
  float *A, *B, *C;
  size_t la, lb, lc;
  if (!floats(env, argv[5], &A, &la) || !floats(env, argv[6], &B, &lb) || !floats(env, argv[7], &C, &lc)) return nullptr;
  bool acc = false;
  CHECK(napi_get_value_bool(env, argv[8], &acc));
  if (m < 0 || n < 0 || k < 0) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "negative matrix dimension");
    return nullptr;
  }
  if (!fits(env, la, (long)m * k, "A is too short") || !fits(env, lb, (long)k * n, "B is too short") ||
      !fits(env, lc, (long)m * n, "C is too short"))
    return nullptr;
  gemm(m, n, k, A, tA ? 1 : k, tA ? m : 1, B, tB ? 1 : n, tB ? k : 1, C, n, acc);
  return nullptr;
}

bool convArgs(napi_env env, napi_value* argv, size_t from, Conv* g) {
  int v[13];
  if (!ints(env, argv, from, 13, v)) return false;
  *g = Conv{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]};
  for (int x : v)
    if (x < 0) {
      napi_throw_range_error(env, "ERR_MONNA_NATIVE", "negative convolution geometry");
      return false;
    }
  if (g->sh < 1 || g->sw < 1) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "strides must be ≥ 1");
    return false;
  }
  return true;
}

// conv kernels: (a, b, out, batch, inH, inW, inC, outH, outW, outC, fh, fw, sh, sw, pt, pl)
enum class ConvOp { Forward, FilterGrad, InputGrad };

template <ConvOp op>
napi_value ConvKernel(napi_env env, napi_callback_info info) {
  napi_value argv[16];
  if (!args(env, info, argv)) return nullptr;
  float *a, *b, *out;
  size_t la, lb, lo;
  if (!floats(env, argv[0], &a, &la) || !floats(env, argv[1], &b, &lb) || !floats(env, argv[2], &out, &lo)) return nullptr;
  Conv g;
  if (!convArgs(env, argv, 3, &g)) return nullptr;
  const long xs = (long)g.batch * g.inH * g.inW * g.inC, ys = g.M() * g.outC, ws = g.K() * g.outC;
  if (op == ConvOp::Forward) {
    if (!fits(env, la, xs, "x is too short") || !fits(env, lb, ws, "filter is too short") || !fits(env, lo, ys, "y is too short")) return nullptr;
    conv2dForward(a, b, out, g);
  } else if (op == ConvOp::FilterGrad) {
    if (!fits(env, la, xs, "x is too short") || !fits(env, lb, ys, "dy is too short") || !fits(env, lo, ws, "dW is too short")) return nullptr;
    conv2dFilterGrad(a, b, out, g);
  } else {
    if (!fits(env, la, ys, "dy is too short") || !fits(env, lb, ws, "filter is too short") || !fits(env, lo, xs, "dx is too short")) return nullptr;
    conv2dInputGrad(a, b, out, g);
  }
  return nullptr;
}

// maxPoolGrad(x, y, dy, dx, batch, inH, inW, ch, outH, outW, fh, fw, sh, sw, pt, pl)
napi_value MaxPoolGradFn(napi_env env, napi_callback_info info) {
  napi_value argv[16];
  if (!args(env, info, argv)) return nullptr;
  float *x, *y, *dy, *dx;
  size_t lx, ly, ldy, ldx;
  if (!floats(env, argv[0], &x, &lx) || !floats(env, argv[1], &y, &ly) || !floats(env, argv[2], &dy, &ldy) || !floats(env, argv[3], &dx, &ldx))
    return nullptr;
  int v[12];
  if (!ints(env, argv, 4, 12, v)) return nullptr;
  for (int i : v)
    if (i < 0) {
      napi_throw_range_error(env, "ERR_MONNA_NATIVE", "negative pooling geometry");
      return nullptr;
    }
  const long xs = (long)v[0] * v[1] * v[2] * v[3], ys = (long)v[0] * v[4] * v[5] * v[3];
  if (!fits(env, lx, xs, "x is too short") || !fits(env, ldx, xs, "dx is too short") || !fits(env, ly, ys, "y is too short") || !fits(env, ldy, ys, "dy is too short"))
    return nullptr;
  maxPoolGrad(x, y, dy, dx, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]);
  return nullptr;
}

// float32 arrays of one length, 1..max of them
bool floatList(napi_env env, napi_value list, uint32_t max, std::vector<const float*>* out, size_t* d) {
  uint32_t k = 0;
  if (napi_get_array_length(env, list, &k) != napi_ok || k < 1 || k > max) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "expected an array of 1 to 128 Float32Arrays");
    return false;
  }
  out->resize(k);
  for (uint32_t i = 0; i < k; i++) {
    napi_value e;
    float* p;
    size_t len;
    if (napi_get_element(env, list, i, &e) != napi_ok || !floats(env, e, &p, &len)) return false;
    if (i == 0) *d = len;
    else if (len != *d) {
      napi_throw_range_error(env, "ERR_MONNA_NATIVE", "inputs of different lengths");
      return false;
    }
    (*out)[i] = p;
  }
  return true;
}

// comparator index pairs of a network over k values
bool pairList(napi_env env, napi_value arr, int k, const int** pairs, int* npairs) {
  const char* expected = "pairs must be an Int32Array of index pairs";
  size_t np = 0;
  if (!typedArray(env, arr, napi_int32_array, expected, pairs, &np)) return false;
  if (np % 2 != 0) {
    napi_throw_type_error(env, "ERR_MONNA_NATIVE", expected);
    return false;
  }
  for (size_t i = 0; i < np; i++)
    if ((*pairs)[i] < 0 || (*pairs)[i] >= k) {
      napi_throw_range_error(env, "ERR_MONNA_NATIVE", "pair index out of range");
      return false;
    }
  *npairs = (int)(np / 2);
  return true;
}

// a sorted reduction over k values from argv[from …] = pairs (Int32Array), kind, param, inv: kind 0
// (trim t) or 1 (meamed f) with 2·param < k; else false, with a RangeError saying `badKind` for
// the kind or param
bool sortedArgs(napi_env env, napi_value* argv, size_t from, int k, const char* badKind, SortedSpec* spec) {
  const int* pairs;
  int npairs;
  if (!pairList(env, argv[from], k, &pairs, &npairs)) return false;
  int kp[2];
  if (!ints(env, argv, from + 1, 2, kp)) return false;
  double inv = 0;
  if (napi_get_value_double(env, argv[from + 3], &inv) != napi_ok) {
    throwError(env, "napi_get_value_double(inv)");
    return false;
  }
  if ((kp[0] != 0 && kp[0] != 1) || kp[1] < 0 || 2 * kp[1] >= k) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", badKind);
    return false;
  }
  *spec = SortedSpec{k, kp[0], kp[1], inv, pairs, npairs};
  return true;
}

// the call's N arguments, the first the inputs: 1 to 128 Float32Arrays of one length (their data
// in `in`, that length in `d`); else false, with the error thrown
template <size_t N>
bool argsWithInputs(napi_env env, napi_callback_info info, napi_value (&argv)[N], std::vector<const float*>* in, size_t* d) {
  return args(env, info, argv) && floatList(env, argv[0], 128, in, d);
}

// the data of a Float32Array with at least `need` elements; else false, with a TypeError or a
// RangeError saying `tooShort`
bool floatsOf(napi_env env, napi_value v, long need, const char* tooShort, float** out) {
  size_t n = 0;
  return floats(env, v, out, &n) && fits(env, n, need, tooShort);
}

// sortedReduce(inputs: Float32Array[], out, pairs: Int32Array, kind, param, inv) -> finite
napi_value SortedReduceFn(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  std::vector<const float*> in;
  size_t d = 0;
  if (!argsWithInputs(env, info, argv, &in, &d)) return nullptr;
  float* out;
  if (!floatsOf(env, argv[1], (long)d, "out is too short", &out)) return nullptr;
  SortedSpec spec;
  if (!sortedArgs(env, argv, 2, (int)in.size(), "sortedReduce: kind 0 (trim t) or 1 (meamed f) with 2·param < k", &spec)) return nullptr;
  const bool finite = sortedReduce(in.data(), (long)d, spec, out);
  napi_value r;
  napi_get_boolean(env, finite, &r);
  return r;
}

// pairwise(inputs: Float32Array[], D: Float64Array (k·k, zeroed by the caller))
napi_value PairwiseFn(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  std::vector<const float*> in;
  size_t d = 0;
  if (!argsWithInputs(env, info, argv, &in, &d)) return nullptr;
  double* D;
  size_t n = 0;
  if (!typedArray(env, argv[1], napi_float64_array, "pairwise: D must be a Float64Array", &D, &n)) return nullptr;
  const int k = (int)in.size();
  if (!fits(env, n, (long)k * k, "pairwise: D is too short")) return nullptr;
  pairwise(in.data(), k, (long)d, D);
  return nullptr;
}

// mean(inputs: Float32Array[], out: Float32Array (the inputs' length)) -> finite
napi_value MeanFn(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  std::vector<const float*> in;
  size_t d = 0;
  if (!argsWithInputs(env, info, argv, &in, &d)) return nullptr;
  float* out;
  if (!floatsOf(env, argv[1], (long)d, "mean: out is shorter than the inputs", &out)) return nullptr;
  const bool finite = mean(in.data(), (int)in.size(), 1.0 / (double)in.size(), out, (long)d);
  napi_value r;
  napi_get_boolean(env, finite, &r);
  return r;
}

// firstNonFinite(x: Float32Array): the index of x's first NaN or ±∞, or -1. An entry is non-finite
// when its exponent bits are all set; blocks of 64 are tested without a branch per entry (the
// compiler vectorises the block's loop), and the block that holds one is scanned again.
napi_value FirstNonFiniteFn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  float* x;
  size_t n = 0;
  if (argc < 1 || !floats(env, argv[0], &x, &n)) return nullptr;
  const auto bad = [x](size_t i) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    return (b & 0x7f800000u) == 0x7f800000u;
  };
  size_t c = 0;
  for (; c + 64 <= n; c += 64) {
    uint32_t any = 0;
    for (size_t j = 0; j < 64; j++) any |= bad(c + j) ? 1u : 0u;
    if (any != 0) break;
  }
  double found = -1;
  for (; c < n; c++) {
    if (bad(c)) {
      found = static_cast<double>(c);
      break;
    }
  }
  napi_value r;
  napi_create_double(env, found, &r);
  return r;
}

// distancesTo(inputs: Float32Array[], v: Float32Array (the inputs' length), out: Float64Array (k))
napi_value DistancesToFn(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  std::vector<const float*> in;
  size_t d = 0;
  if (!argsWithInputs(env, info, argv, &in, &d)) return nullptr;
  float* v;
  size_t vn = 0;
  if (!floats(env, argv[1], &v, &vn)) return nullptr;
  if (vn != d) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "distancesTo: v must have the inputs' length");
    return nullptr;
  }
  double* out;
  size_t n = 0;
  if (!typedArray(env, argv[2], napi_float64_array, "distancesTo: out must be a Float64Array", &out, &n)) return nullptr;
  const int k = (int)in.size();
  if (!fits(env, n, k, "distancesTo: out is shorter than the inputs")) return nullptr;
  distancesTo(in.data(), k, v, (long)d, out);
  return nullptr;
}

// the data of a typed array of type `want` with at least `need` elements; else false, with a
// RangeError saying `what`
template <typename T>
bool sizedArray(napi_env env, napi_value v, napi_typedarray_type want, long need, const char* what, T** out) {
  size_t n = 0;
  if (!typedArray(env, v, want, what, out, &n)) return false;
  return fits(env, n, need, what);
}

// pairwiseSums(inputs, D: Float64Array (k·k, zeroed), sums: Float64Array(d), maxAbs: Float32Array(k))
napi_value PairwiseSumsFn(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  std::vector<const float*> in;
  size_t d = 0;
  if (!argsWithInputs(env, info, argv, &in, &d)) return nullptr;
  const int k = (int)in.size();
  double *D = nullptr, *sums = nullptr;
  float* mx = nullptr;
  if (!sizedArray(env, argv[1], napi_float64_array, (long)k * k, "pairwiseSums: D must be a Float64Array of k·k", &D)) return nullptr;
  if (!sizedArray(env, argv[2], napi_float64_array, (long)d, "pairwiseSums: sums must be a Float64Array of the inputs' length", &sums)) return nullptr;
  if (!sizedArray(env, argv[3], napi_float32_array, k, "pairwiseSums: maxAbs must be a Float32Array of one entry per input", &mx)) return nullptr;
  pairwise(in.data(), k, (long)d, D, sums, mx);
  return nullptr;
}

// keptMean(excluded: Float32Array[] (the excluded inputs), sums: Float64Array(d), scale, out: Float32Array(d))
napi_value KeptMeanFn(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  std::vector<const float*> ex;
  size_t d = 0;
  if (!argsWithInputs(env, info, argv, &ex, &d)) return nullptr;
  double* sums = nullptr;
  float* out = nullptr;
  if (!sizedArray(env, argv[1], napi_float64_array, (long)d, "keptMean: sums must be a Float64Array of the inputs' length", &sums)) return nullptr;
  double scale = 0;
  CHECK(napi_get_value_double(env, argv[2], &scale));
  if (!sizedArray(env, argv[3], napi_float32_array, (long)d, "keptMean: out must be a Float32Array of the inputs' length", &out)) return nullptr;
  keptMean(ex.data(), (int)ex.size(), sums, scale, out, (long)d);
  return nullptr;
}

// parses NNM's spec [nBase, base…, then per row nAdd, add…, nSub, sub…] for `rows` rows of k inputs
bool nnmSpec(napi_env env, napi_value arr, int k, int rows, double scale, NnmSpec* spec) {
  const int* v;
  size_t n = 0;
  if (!int32s(env, arr, &v, &n)) return false;
  const long len = (long)n;
  // a list of `count` indices in [0, k) at v[at + 1 …], count = v[at]; the next position or −1
  auto list = [&](long at, const int** p, int* count) -> long {
    if (at < 0 || at >= len || v[at] < 0 || at + 1 + v[at] > len) return -1;
    *count = v[at];
    *p = v + at + 1;
    for (int t = 0; t < *count; t++)
      if ((*p)[t] < 0 || (*p)[t] >= k) return -1;
    return at + 1 + *count;
  };
  spec->scale = scale;
  spec->k = k;
  long at = list(0, &spec->base, &spec->nBase);
  for (int r = 0; r < rows && at >= 0; r++) {
    const int *a = nullptr, *u = nullptr;
    int na = 0, nu = 0;
    at = list(at, &a, &na);
    at = list(at, &u, &nu);
    spec->add.push_back(a);
    spec->nAdd.push_back(na);
    spec->sub.push_back(u);
    spec->nSub.push_back(nu);
  }
  if (at != len) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "NNM spec does not describe one base and one add/sub pair per row with indices of inputs");
    return false;
  }
  return true;
}

// nnmRows(inputs: Float32Array[], spec: Int32Array, scale, outs: Float32Array[] (one per row))
napi_value NnmRowsFn(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  std::vector<const float*> in;
  size_t d = 0;
  if (!argsWithInputs(env, info, argv, &in, &d)) return nullptr;
  double scale = 0;
  CHECK(napi_get_value_double(env, argv[2], &scale));
  std::vector<const float*> outsC;
  size_t dOut = 0;
  if (!floatList(env, argv[3], 128, &outsC, &dOut)) return nullptr;
  if (dOut != d) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "nnmRows: rows of another length than the inputs");
    return nullptr;
  }
  NnmSpec spec;
  if (!nnmSpec(env, argv[1], (int)in.size(), (int)outsC.size(), scale, &spec)) return nullptr;
  std::vector<float*> outs(outsC.size());
  for (size_t r = 0; r < outs.size(); r++) outs[r] = const_cast<float*>(outsC[r]);
  nnmRows(in.data(), spec, outs.data(), (long)d);
  return nullptr;
}

// nnmSorted(inputs, spec, scale, rowOf: Int32Array(k), out, pairs, kind, param, inv) -> finite
napi_value NnmSortedFn(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  std::vector<const float*> in;
  size_t d = 0;
  if (!argsWithInputs(env, info, argv, &in, &d)) return nullptr;
  const int k = (int)in.size();
  double scale = 0;
  CHECK(napi_get_value_double(env, argv[2], &scale));
  const char* badRowOf = "nnmSorted: rowOf must be an Int32Array of one row per input";
  const int* rowOf;
  size_t n = 0;
  if (!typedArray(env, argv[3], napi_int32_array, badRowOf, &rowOf, &n)) return nullptr;
  if ((int)n != k) {
    napi_throw_type_error(env, "ERR_MONNA_NATIVE", badRowOf);
    return nullptr;
  }
  int rows = 0;
  for (int i = 0; i < k; i++) {
    if (rowOf[i] < 0 || rowOf[i] >= k) {
      napi_throw_range_error(env, "ERR_MONNA_NATIVE", "nnmSorted: rowOf out of range");
      return nullptr;
    }
    rows = std::max(rows, rowOf[i] + 1);
  }
  NnmSpec spec;
  if (!nnmSpec(env, argv[1], k, rows, scale, &spec)) return nullptr;
  float* out;
  if (!floatsOf(env, argv[4], (long)d, "out is too short", &out)) return nullptr;
  SortedSpec ss;
  if (!sortedArgs(env, argv, 5, k, "nnmSorted: kind 0 (trim t) or 1 (meamed f) with 2·param < k", &ss)) return nullptr;
  napi_value r;
  napi_get_boolean(env, nnmSorted(in.data(), spec, rowOf, k, ss, out, (long)d), &r);
  return r;
}

// momentumStep(grad, momentum, theta, beta, gamma) -> ‖grad‖²
napi_value MomentumStepFn(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!args(env, info, argv)) return nullptr;
  float *g, *m, *th;
  size_t lg, lm, lt;
  if (!floats(env, argv[0], &g, &lg) || !floats(env, argv[1], &m, &lm) || !floats(env, argv[2], &th, &lt)) return nullptr;
  if (lm != lg || lt != lg) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "momentumStep: grad, momentum and theta of different lengths");
    return nullptr;
  }
  double beta = 0, gamma = 0;
  CHECK(napi_get_value_double(env, argv[3], &beta));
  CHECK(napi_get_value_double(env, argv[4], &gamma));
  napi_value r;
  napi_create_double(env, momentumStep(g, m, th, (long)lg, beta, gamma), &r);
  return r;
}

// The model, θ, examples and labels of modelGradient and modelEvaluate (arguments 0–3), checked;
// false with a RangeError thrown when they do not fit together. `what` names the caller.
bool modelArgs(napi_env env, napi_value* argv, const char* what, Net* net, float** theta, float** x, const int** labels, size_t* nl) {
  const int* spec;
  size_t ns = 0;
  if (!int32s(env, argv[0], &spec, &ns) || !int32s(env, argv[3], labels, nl)) return false;
  if (const char* err = parseNet(spec, ns, net)) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", err);
    return false;
  }
  size_t lt, lx;
  if (!floats(env, argv[1], theta, &lt) || !floats(env, argv[2], x, &lx)) return false;
  const auto fail = [&](const char* msg) {
    std::string m = std::string(what) + ": " + msg;
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", m.c_str());
    return false;
  };
  if (lt != (size_t)net->dim) return fail("theta must hold the model's parameters");
  if (*nl < 1 || *nl > 4096 || lx != *nl * (size_t)net->inSize) return fail("1 to 4096 labels and one example of the input shape per label");
  for (size_t i = 0; i < *nl; i++)
    if ((*labels)[i] < 0 || (*labels)[i] >= net->classes) return fail("label out of range");
  for (const Layer& L : net->layers)
    if ((double)*nl * (double)std::max(L.out(), L.kind == kConv ? L.conv(1).M() * L.conv(1).K() : 0L) > 4.0 * MAX_ELEMENTS) return fail("batch too large for this model");
  return true;
}

// modelGradient(spec: Int32Array, theta, x, labels: Int32Array, grad) -> mean loss
napi_value ModelGradientFn(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!args(env, info, argv)) return nullptr;
  Net net;
  float *theta, *x, *grad;
  const int* labels;
  size_t nl = 0, lg = 0;
  if (!modelArgs(env, argv, "modelGradient", &net, &theta, &x, &labels, &nl) || !floats(env, argv[4], &grad, &lg)) return nullptr;
  if (lg != (size_t)net.dim) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "modelGradient: theta and grad must hold the model's parameters");
    return nullptr;
  }
  napi_value r;
  napi_create_double(env, modelGrad(net, theta, x, labels, (int)nl, grad), &r);
  return r;
}

// modelEvaluate(spec: Int32Array, theta, x, labels: Int32Array) -> [summed loss, examples right]
napi_value ModelEvaluateFn(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args(env, info, argv)) return nullptr;
  Net net;
  float *theta, *x;
  const int* labels;
  size_t nl = 0;
  if (!modelArgs(env, argv, "modelEvaluate", &net, &theta, &x, &labels, &nl)) return nullptr;
  double loss = 0;
  long correct = 0;
  modelEvaluate(net, theta, x, labels, (int)nl, &loss, &correct);
  napi_value r, v;
  napi_create_array_with_length(env, 2, &r);
  napi_create_double(env, loss, &v);
  napi_set_element(env, r, 0, v);
  napi_create_double(env, (double)correct, &v);
  napi_set_element(env, r, 1, v);
  return r;
}

// setPortable(on): use the portable micro-kernel even where AVX2 is available (tests)
napi_value SetPortable(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, argv)) return nullptr;
  bool on = false;
  CHECK(napi_get_value_bool(env, argv[0], &on));
  forcePortable = on;
  return nullptr;
}

// setAvx512(on): let the kernels that have an AVX-512 variant use it where the CPU has AVX-512F/VL
// (default on; tests turn it off to run the AVX2 variants); returns whether they now use it
napi_value SetAvx512(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, argv)) return nullptr;
  bool on = false;
  CHECK(napi_get_value_bool(env, argv[0], &on));
  allowAvx512 = on;
  napi_value r;
  napi_get_boolean(env, useAvx512(), &r);
  return r;
}

// setThreads(n): threads for the GEMM (main thread included), 1–64
napi_value SetThreads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args(env, info, argv)) return nullptr;
  int n = 0;
  if (!ints(env, argv, 0, 1, &n)) return nullptr;
  if (n < 1 || n > 64) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "threads must be from 1 to 64");
    return nullptr;
  }
  if (n != pool.threads()) {
    if (!pool.owns()) {
      napi_throw_error(env, "ERR_MONNA_NATIVE", "setThreads: the pool belongs to another thread");
      return nullptr;
    }
    pool.resize(n);
  }
  return nullptr;
}

napi_value Threads(napi_env env, napi_callback_info) {
  napi_value v;
  napi_create_int32(env, pool.threads(), &v);
  return v;
}

napi_value Simd(napi_env env, napi_callback_info) {
  napi_value s;
  napi_create_string_utf8(env, useAvx2() ? "avx2+fma" : "portable", NAPI_AUTO_LENGTH, &s);
  return s;
}

// ---------------------------------------------------------------------------------------------
// ChaCha20-Poly1305 decryption in place (Noise's transport messages, src/net/noise-crypto.ts),
// through the OpenSSL the running Node carries: its EVP functions are looked up at run time
// (dlsym), so the addon neither links nor needs OpenSSL's headers, and loads where they are
// absent (then `chachaAvailable()` is false and monna decrypts with Node's crypto). Node's own
// decipher always writes a fresh buffer per message; this writes the plaintext over the
// ciphertext (OpenSSL allows exactly overlapping input and output), which the caller owns.

namespace evp {
using CtxNew = void* (*)();
using Cipher = const void* (*)();
using Init = int (*)(void*, const void*, void*, const unsigned char*, const unsigned char*);
using Ctrl = int (*)(void*, int, int, void*);
using Update = int (*)(void*, unsigned char*, int*, const unsigned char*, int);
using Final = int (*)(void*, unsigned char*, int*);
constexpr int kCtrlAeadSetTag = 0x11;  // EVP_CTRL_AEAD_SET_TAG
constexpr int kCtrlAeadGetTag = 0x10;  // EVP_CTRL_AEAD_GET_TAG

struct Api {
  Init init = nullptr;
  Ctrl ctrl = nullptr;
  Update update = nullptr;
  Final final = nullptr;
  void* ctx = nullptr;  // one context per thread, keyed per message
  bool ok = false;
  // encryption (chachaSeal): its own context, also one per thread
  Init sealInit = nullptr;
  Update sealUpdate = nullptr;
  Final sealFinal = nullptr;
  void* sealCtx = nullptr;
  bool sealOk = false;
};

Api load() {
  Api a;
  auto ctxNew = reinterpret_cast<CtxNew>(dlsym(RTLD_DEFAULT, "EVP_CIPHER_CTX_new"));
  auto chacha = reinterpret_cast<Cipher>(dlsym(RTLD_DEFAULT, "EVP_chacha20_poly1305"));
  a.init = reinterpret_cast<Init>(dlsym(RTLD_DEFAULT, "EVP_DecryptInit_ex"));
  a.ctrl = reinterpret_cast<Ctrl>(dlsym(RTLD_DEFAULT, "EVP_CIPHER_CTX_ctrl"));
  a.update = reinterpret_cast<Update>(dlsym(RTLD_DEFAULT, "EVP_DecryptUpdate"));
  a.final = reinterpret_cast<Final>(dlsym(RTLD_DEFAULT, "EVP_DecryptFinal_ex"));
  if (ctxNew == nullptr || chacha == nullptr || a.init == nullptr || a.ctrl == nullptr || a.update == nullptr || a.final == nullptr) return a;
  const void* cipher = chacha();
  a.ctx = cipher == nullptr ? nullptr : ctxNew();
  // the cipher is set once; each message sets only its key and nonce
  a.ok = a.ctx != nullptr && a.init(a.ctx, cipher, nullptr, nullptr, nullptr) == 1;
  a.sealInit = reinterpret_cast<Init>(dlsym(RTLD_DEFAULT, "EVP_EncryptInit_ex"));
  a.sealUpdate = reinterpret_cast<Update>(dlsym(RTLD_DEFAULT, "EVP_EncryptUpdate"));
  a.sealFinal = reinterpret_cast<Final>(dlsym(RTLD_DEFAULT, "EVP_EncryptFinal_ex"));
  if (!a.ok || a.sealInit == nullptr || a.sealUpdate == nullptr || a.sealFinal == nullptr) return a;
  a.sealCtx = ctxNew();
  a.sealOk = a.sealCtx != nullptr && a.sealInit(a.sealCtx, cipher, nullptr, nullptr, nullptr) == 1;
  return a;
}

Api& api() {
  static thread_local Api a = load();
  return a;
}
}  // namespace evp

bool bytes(napi_env env, napi_value v, unsigned char** out, size_t* length) {
  return typedArray(env, v, napi_uint8_array, "expected a Uint8Array", out, length);
}

// `value`, an array of Uint8Arrays each at most 1 GiB, as (pointer, length) pairs; false with a
// JavaScript error thrown otherwise.
bool byteParts(napi_env env, napi_value value, const char* fn, std::vector<std::pair<unsigned char*, size_t>>* parts) {
  bool isArray = false;
  uint32_t count = 0;
  if (napi_is_array(env, value, &isArray) != napi_ok || !isArray || napi_get_array_length(env, value, &count) != napi_ok) {
    napi_throw_type_error(env, "ERR_MONNA_NATIVE", (std::string(fn) + ": parts must be an array of Uint8Arrays").c_str());
    return false;
  }
  parts->resize(count);
  for (uint32_t i = 0; i < count; i++) {
    napi_value part;
    if (napi_get_element(env, value, i, &part) != napi_ok) {
      throwError(env, "napi_get_element");
      return false;
    }
    if (!bytes(env, part, &(*parts)[i].first, &(*parts)[i].second)) return false;
    if ((*parts)[i].second > (1u << 30)) {
      napi_throw_range_error(env, "ERR_MONNA_NATIVE", (std::string(fn) + ": a part over 1 GiB").c_str());
      return false;
    }
  }
  return true;
}

// The arguments of chachaOpenInPlace and chachaSealInto: key (32 bytes), nonce (12), additional
// data (at most 1 GiB), parts (an array of Uint8Arrays), and a last Uint8Array (the tag, or the
// destination), whose length the caller checks.
struct ChachaArgs {
  unsigned char *key = nullptr, *nonce = nullptr, *ad = nullptr, *last = nullptr;
  size_t adLen = 0, lastLen = 0;
  std::vector<std::pair<unsigned char*, size_t>> parts;
};

// Reads and checks them; false with a JavaScript error thrown otherwise.
bool chachaArgs(napi_env env, napi_callback_info info, const char* fn, ChachaArgs* c) {
  napi_value argv[5];
  if (!args(env, info, argv)) return false;
  size_t keyLen, nonceLen;
  if (!bytes(env, argv[0], &c->key, &keyLen) || !bytes(env, argv[1], &c->nonce, &nonceLen) || !bytes(env, argv[2], &c->ad, &c->adLen) || !bytes(env, argv[4], &c->last, &c->lastLen)) return false;
  if (keyLen != 32 || nonceLen != 12 || c->adLen > (1u << 30)) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", (std::string(fn) + ": key 32 bytes, nonce 12").c_str());
    return false;
  }
  return byteParts(env, argv[3], fn, &c->parts);
}

napi_value ChachaAvailableFn(napi_env env, napi_callback_info) {
  napi_value r;
  napi_get_boolean(env, evp::api().ok && evp::api().sealOk, &r);
  return r;
}

// chachaOpenInPlace(key, nonce, ad, parts, tag): decrypts the ciphertext held by `parts` (an
// array of Uint8Arrays, in order; the tag not included) in place; true when the tag matched
// (false: the parts hold garbage). Key 32 bytes, nonce 12, tag 16.
napi_value ChachaOpenInPlaceFn(napi_env env, napi_callback_info info) {
  ChachaArgs c;
  if (!chachaArgs(env, info, "chachaOpenInPlace", &c)) return nullptr;
  if (c.lastLen != 16) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "chachaOpenInPlace: tag 16 bytes");
    return nullptr;
  }
  evp::Api& a = evp::api();
  if (!a.ok) {
    napi_throw_error(env, "ERR_MONNA_NATIVE", "chachaOpenInPlace: OpenSSL's ChaCha20-Poly1305 is not available (chachaAvailable())");
    return nullptr;
  }
  int n = 0;
  bool ok = a.init(a.ctx, nullptr, nullptr, c.key, c.nonce) == 1 && a.ctrl(a.ctx, evp::kCtrlAeadSetTag, 16, c.last) == 1;
  if (ok && c.adLen > 0) ok = a.update(a.ctx, nullptr, &n, c.ad, static_cast<int>(c.adLen)) == 1;
  for (auto& [p, len] : c.parts) {
    if (!ok) break;
    if (len > 0) ok = a.update(a.ctx, p, &n, p, static_cast<int>(len)) == 1 && static_cast<size_t>(n) == len;
  }
  unsigned char rest[16];
  if (ok) ok = a.final(a.ctx, rest, &n) == 1 && n == 0;
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

// chachaSealInto(key, nonce, ad, parts, dst): encrypts the plaintext held by `parts` (an array of
// Uint8Arrays, in order) into `dst`, whose length must be the plaintext's plus 16: the
// ciphertext, then the tag. `dst` must not overlap the parts (the caller's own buffer). Key 32
// bytes, nonce 12. Returns nothing; throws when OpenSSL fails.
napi_value ChachaSealIntoFn(napi_env env, napi_callback_info info) {
  ChachaArgs c;
  if (!chachaArgs(env, info, "chachaSealInto", &c)) return nullptr;
  size_t total = 0;
  for (auto& part : c.parts) total += part.second;
  if (c.lastLen != total + 16) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "chachaSealInto: dst must be the plaintext's length plus 16");
    return nullptr;
  }
  evp::Api& a = evp::api();
  if (!a.sealOk) {
    napi_throw_error(env, "ERR_MONNA_NATIVE", "chachaSealInto: OpenSSL's ChaCha20-Poly1305 is not available (chachaAvailable())");
    return nullptr;
  }
  int n = 0;
  bool ok = a.sealInit(a.sealCtx, nullptr, nullptr, c.key, c.nonce) == 1;
  if (ok && c.adLen > 0) ok = a.sealUpdate(a.sealCtx, nullptr, &n, c.ad, static_cast<int>(c.adLen)) == 1;
  unsigned char* out = c.last;
  for (auto& [p, len] : c.parts) {
    if (!ok) break;
    if (len > 0) ok = a.sealUpdate(a.sealCtx, out, &n, p, static_cast<int>(len)) == 1 && static_cast<size_t>(n) == len;
    out += len;
  }
  if (ok) ok = a.sealFinal(a.sealCtx, out, &n) == 1 && n == 0;
  if (ok) ok = a.ctrl(a.sealCtx, evp::kCtrlAeadGetTag, 16, out) == 1;
  if (!ok) {
    napi_throw_error(env, "ERR_MONNA_NATIVE", "chachaSealInto: OpenSSL failed");
    return nullptr;
  }
  return nullptr;
}

// Payload buffers (src/broadcast/frame-stream.ts): a received model is copied, chunk by chunk,
// into a buffer of its declared size; a fresh malloc'd buffer of that size is a fresh mapping,
// and its first touches are page faults (≈ 12,500 per member and round at n = 26, LeNet). These
// are page-aligned anonymous mappings handed to JavaScript as external ArrayBuffers; when V8
// has collected one — nothing references it any more, so nothing can read it again — its
// mapping goes back to a free list (up to `poolMax` bytes, the oldest leaving first) instead of
// being unmapped, and the next payload of the same size takes it: its pages are already there.
// A reused mapping holds an earlier payload's bytes, as a buffer of Buffer.allocUnsafe would hold
// anything; the frame reader writes every byte before anyone reads it.
namespace payload_pool {
std::mutex mu;
std::vector<std::pair<void*, size_t>> freeList;  // (address, mapped length)
size_t freeBytes = 0;
size_t poolMax = 64u << 20;
double mapped = 0, reused = 0, unmapped = 0;

size_t pageRounded(size_t n) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (n + page - 1) / page * page;
}

// A mapping collected goes to the back of the free list; when the list would exceed its bound,
// the oldest go first. So mappings of sizes no payload asks for again (a Byzantine member's frames
// of odd sizes, cut or refused) leave as the swarm's own payloads come back, instead of holding
// the bound for good and sending every later mapping to munmap.
void finalize(napi_env, void* data, void* hint) {
  const size_t len = reinterpret_cast<uintptr_t>(hint);
  std::vector<std::pair<void*, size_t>> drop;
  {
    std::lock_guard<std::mutex> g(mu);
    if (len > poolMax) {
      drop.push_back({data, len});
    } else {
      size_t evict = 0;
      while (freeBytes + len > poolMax) freeBytes -= freeList[evict++].second;
      drop.assign(freeList.begin(), freeList.begin() + static_cast<std::ptrdiff_t>(evict));
      freeList.erase(freeList.begin(), freeList.begin() + static_cast<std::ptrdiff_t>(evict));
      freeList.push_back({data, len});
      freeBytes += len;
    }
    unmapped += static_cast<double>(drop.size());
  }
  for (auto& [p, n] : drop) munmap(p, n);
}
}  // namespace payload_pool

// payloadBuffer(length): an ArrayBuffer of `length` bytes (1 … 2^31 − 1; contents unspecified)
// from the payload pool, or a fresh mapping.
napi_value PayloadBufferFn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  double length = 0;
  if (argc < 1 || napi_get_value_double(env, argv[0], &length) != napi_ok || !(length >= 1 && length <= 2147483647.0) || length != std::floor(length)) {
    napi_throw_range_error(env, "ERR_MONNA_NATIVE", "payloadBuffer: length must be an integer from 1 to 2^31 - 1");
    return nullptr;
  }
  const size_t len = static_cast<size_t>(length);
  const size_t rl = payload_pool::pageRounded(len);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> g(payload_pool::mu);
    auto& f = payload_pool::freeList;
    for (size_t i = 0; i < f.size(); i++) {
      if (f[i].second != rl) continue;
      p = f[i].first;
      f.erase(f.begin() + static_cast<std::ptrdiff_t>(i));
      payload_pool::freeBytes -= rl;
      payload_pool::reused++;
      break;
    }
    if (p == nullptr) payload_pool::mapped++;
  }
  if (p == nullptr) {
    p = mmap(nullptr, rl, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      napi_throw_error(env, "ERR_MONNA_NATIVE", "payloadBuffer: out of memory");
      return nullptr;
    }
  }
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, len, payload_pool::finalize, reinterpret_cast<void*>(static_cast<uintptr_t>(rl)), &ab) != napi_ok) {
    munmap(p, rl);
    napi_throw_error(env, "ERR_MONNA_NATIVE", "payloadBuffer: this Node refuses external ArrayBuffers");
    return nullptr;
  }
  return ab;
}

// payloadPool(maxBytes?): sets the free list's bound (bytes; 0 unmaps every mapping as it is
// collected) when given, and returns { freeBytes, maxBytes, mapped, reused, unmapped }: mappings
// made, taken from the free list, and unmapped on collection since the process started.
napi_value PayloadPoolFn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  std::vector<std::pair<void*, size_t>> drop;
  if (argc >= 1) {
    napi_valuetype t;
    napi_typeof(env, argv[0], &t);
    if (t != napi_undefined) {
      double max = -1;
      if (napi_get_value_double(env, argv[0], &max) != napi_ok || !(max >= 0 && max <= 9007199254740991.0)) {
        napi_throw_range_error(env, "ERR_MONNA_NATIVE", "payloadPool: maxBytes must be a number of bytes >= 0");
        return nullptr;
      }
      std::lock_guard<std::mutex> g(payload_pool::mu);
      payload_pool::poolMax = static_cast<size_t>(max);
      auto& f = payload_pool::freeList;
      while (payload_pool::freeBytes > payload_pool::poolMax && !f.empty()) {
        drop.push_back(f.back());
        payload_pool::freeBytes -= f.back().second;
        payload_pool::unmapped++;
        f.pop_back();
      }
    }
  }
  for (auto& [p, len] : drop) munmap(p, len);
  napi_value r, v;
  napi_create_object(env, &r);
  std::lock_guard<std::mutex> g(payload_pool::mu);
  const std::pair<const char*, double> fields[] = {{"freeBytes", static_cast<double>(payload_pool::freeBytes)},
                                                   {"maxBytes", static_cast<double>(payload_pool::poolMax)},
                                                   {"mapped", payload_pool::mapped},
                                                   {"reused", payload_pool::reused},
                                                   {"unmapped", payload_pool::unmapped}};
  for (auto& [k, x] : fields) {
    napi_create_double(env, x, &v);
    napi_set_named_property(env, r, k, v);
  }
  return r;
}

}  // namespace

NAPI_MODULE_INIT() {
  const napi_property_descriptor props[] = {
      {"gemm", nullptr, Gemm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv2d", nullptr, ConvKernel<ConvOp::Forward>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv2dFilterGrad", nullptr, ConvKernel<ConvOp::FilterGrad>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv2dInputGrad", nullptr, ConvKernel<ConvOp::InputGrad>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"maxPoolGrad", nullptr, MaxPoolGradFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"sortedReduce", nullptr, SortedReduceFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"pairwise", nullptr, PairwiseFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"mean", nullptr, MeanFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"firstNonFinite", nullptr, FirstNonFiniteFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"distancesTo", nullptr, DistancesToFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"pairwiseSums", nullptr, PairwiseSumsFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"keptMean", nullptr, KeptMeanFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"nnmRows", nullptr, NnmRowsFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"nnmSorted", nullptr, NnmSortedFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"modelGradient", nullptr, ModelGradientFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"modelEvaluate", nullptr, ModelEvaluateFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"momentumStep", nullptr, MomentumStepFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"threads", nullptr, Threads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setPortable", nullptr, SetPortable, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setAvx512", nullptr, SetAvx512, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"simd", nullptr, Simd, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"chachaAvailable", nullptr, ChachaAvailableFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"chachaOpenInPlace", nullptr, ChachaOpenInPlaceFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"chachaSealInto", nullptr, ChachaSealIntoFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"payloadBuffer", nullptr, PayloadBufferFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"payloadPool", nullptr, PayloadPoolFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
