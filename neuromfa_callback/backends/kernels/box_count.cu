// NeuroMFA box counting: per-node radius histograms and the partition sums Z_q(r) (NEUROMFA.md section 2).
//
// One source, two compilers: NVRTC through cupy.RawModule on a GPU (neuromfa_callback/backends/cupy_backend.py),
// and g++ through the CPU harness of the tests (tests/backends/kernel_harness), which defines the CUDA built-ins
// used here. Keep warp intrinsics out; every cross-thread exchange goes through shared memory and __syncthreads().
// No header is included, so neither compiler needs the CUDA toolkit's headers.
//
// Two passes per chunk of nodes (the host side is neuromfa_callback/backends/kernel_plan.py):
//
// 1. nmfa_hist_* : one block per tile of `nt` nodes. For the dense kernels a node is a column of one or more
//    out x in weight matrices ("segments", read in place with their strides, native dtype); thread
//    (col, phase) = (tid % nt, tid / nt) reads rows phase, phase + P, ... (P = blockDim.x / nt) of column col,
//    so the threads of a warp read adjacent columns of one row (coalesced, no transpose). Each kept edge is
//    binned exactly and counted in a shared-memory histogram hist[bin][col] (conflict-free banks); the
//    distance array is never formed. bf16/fp16/fp32 magnitudes are binned by comparison against the exact
//    float32 edges of backends/binning.py; float64 weights and CSR distances use the float64 rule of the
//    NumPy oracle (d = 1/|w|, keep 1 < d <= threshold, m = rint(d * 10^decimals)). After a barrier, thread
//    col < nt writes the node's cumulative masses M(r_k) = 1 + #{kept d <= r_k} (row of `cum`), or
//    M(L) = 0 for a node with too few kept edges, and the node's sum of kept |w| (`wsum`).
// 2. nmfa_accumulate : thread k of the grid's y-slice owns radius bin k and keeps Z_q(r_k) for up to
//    NMFA_QMAX orders in registers over the nodes of its block (block x takes nodes x, x + gridDim.x, ...);
//    it adds them once to its own slice of `zpart` (no atomics: the result does not depend on scheduling).
//    p = M(r)/M(L); p^q is exp(q ln p), or on a uniform q grid two running products from q[0] and from
//    q = 0 (exactly 1 there), at most ~30 multiplications each (relative error < 1e-14).
//    The host sums the slices over blocks in float64.

#ifndef NMFA_DYNAMIC_SMEM  // the CPU harness defines its own
extern __shared__ __align__(16) unsigned char nmfa_smem_[];
#define NMFA_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(nmfa_smem_)
#endif

#define NMFA_QMAX 64      // orders per nmfa_accumulate launch (longer q grids: several launches)
#define NMFA_UNROLL 4     // independent loads in flight per thread in the histogram loop
#define NMFA_TILE_FIELDS 5  // tiles[t] = {seg_begin, seg_end, col0, ncols, row_out}
#define NMFA_SEG_FIELDS 5   // segs[s] = {pointer, rows, row_stride, col_stride, edge_offset}

// Magnitude of a stored weight as float32 (exact for bf16/fp16/fp32).
struct NmfaBf16 {
    typedef unsigned short raw;
    static __device__ __forceinline__ float magnitude(raw b) {
        return __uint_as_float(((unsigned int)(b & 0x7fffu)) << 16);
    }
};
struct NmfaF16 {
    typedef unsigned short raw;
    static __device__ __forceinline__ float magnitude(raw h) {
        const unsigned int e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
        if (e == 0u) return (float)m * 5.9604644775390625e-8f;  // subnormal: m * 2^-24, exact
        if (e == 31u) return __uint_as_float(0x7f800000u | (m << 13));  // inf / nan
        return __uint_as_float(((e + 112u) << 23) | (m << 13));
    }
};
struct NmfaF32 {
    typedef float raw;
    static __device__ __forceinline__ float magnitude(raw x) { return fabsf(x); }
};

// Bin of a float32 magnitude v by comparison against the edges of binning.float32_bin_edges:
// e[k] = smallest v whose bin is <= k (decreasing in k), e[nbins] = keep_lo, e[nbins + 1] = keep_hi.
// The float32 guess only saves comparisons; the two loops make the result exact whatever the guess.
static __device__ __forceinline__ int nmfa_bin_f32(float v, const float* e, int nbins, float guess_scale, int lo) {
    if (!(v >= e[nbins] && v < e[nbins + 1])) return -1;
    int g = (int)rintf(__fdividef(guess_scale, v)) - lo;
    g = g < 0 ? 0 : (g > nbins - 1 ? nbins - 1 : g);
    while (g < nbins - 1 && v < e[g]) ++g;
    while (g > 0 && v >= e[g - 1]) --g;
    return g;
}

// The float64 rule of the NumPy oracle for a distance d.
static __device__ __forceinline__ int nmfa_bin_f64(double d, int lo, double grid_scale, double threshold,
                                                   int decimals) {
    if (!(d > 1.0 && d <= threshold)) return -1;
    const double m = decimals ? rint(d * grid_scale) : rint(d);
    return (int)m - lo;
}

// Shared memory of a histogram block: wp[blockDim.x] doubles, hist[nbins * nt] counts, e[nbins + 2] edges.
// After the histogram is complete: every node's cumulative row, its kept-|w| sum, the node filter.
static __device__ __forceinline__ void nmfa_finish_tile(const unsigned int* hist, const double* wp, int nbins, int nt,
                                                        long long ncols, long long row, int min_nb,
                                                        unsigned int* __restrict__ cum, double* __restrict__ wsum) {
    const int tid = threadIdx.x, phases = blockDim.x / nt;
    if (tid < ncols) {
        unsigned int* out = cum + (row + tid) * (long long)nbins;
        unsigned int c = 1u;
        for (int k = 0; k < nbins; ++k) {
            c += hist[k * nt + tid];
            out[k] = c;
        }
        double s = 0.0;
        for (int p = 0; p < phases; ++p) s += wp[p * nt + tid];
        const bool ok = (long long)(c - 1u) > (long long)min_nb;
        if (!ok) out[nbins - 1] = 0u;
        wsum[row + tid] = ok ? s : 0.0;
    }
}

template <class L, bool F64>
static __device__ __forceinline__ void nmfa_hist_dense(long long tile0, const long long* __restrict__ tiles,
                                                       const long long* __restrict__ segs,
                                                       const float* __restrict__ edges,
                                                       const double* __restrict__ factors, int nbins, int nt,
                                                       int min_nb, int lo, double grid_scale, double threshold,
                                                       int decimals, unsigned int* __restrict__ cum,
                                                       double* __restrict__ wsum) {
    NMFA_DYNAMIC_SMEM(double, wp);
    unsigned int* hist = reinterpret_cast<unsigned int*>(wp + blockDim.x);
    float* e = reinterpret_cast<float*>(hist + nbins * nt);
    const int tid = threadIdx.x, T = blockDim.x, phases = T / nt, col = tid % nt, phase = tid / nt;
    const long long* tile = tiles + (tile0 + blockIdx.x) * NMFA_TILE_FIELDS;
    const long long seg_begin = tile[0], seg_end = tile[1], col0 = tile[2], ncols = tile[3], row = tile[4];
    for (int i = tid; i < nbins * nt; i += T) hist[i] = 0u;
    double w_total = 0.0;
    for (long long s = seg_begin; s < seg_end; ++s) {
        const long long* sd = segs + s * NMFA_SEG_FIELDS;
        __syncthreads();  // barrier: the previous segment's edges are no longer read (and hist is zeroed)
        if constexpr (!F64)
            for (int i = tid; i < nbins + 2; i += T) e[i] = edges[sd[4] + i];
        __syncthreads();  // barrier: edges loaded
        const typename L::raw* __restrict__ base = reinterpret_cast<const typename L::raw*>(sd[0]);
        const long long rows = sd[1], sr = sd[2];
        const double factor = factors[s];
        const float guess_scale = (float)(grid_scale / factor);
        double acc = 0.0;
        if (col < ncols) {
            const typename L::raw* __restrict__ p = base + (col0 + col) * sd[3];
            long long r = phase;
            for (; r + (NMFA_UNROLL - 1) * (long long)phases < rows; r += NMFA_UNROLL * (long long)phases) {
                typename L::raw x[NMFA_UNROLL];
#pragma unroll
                for (int u = 0; u < NMFA_UNROLL; ++u) x[u] = p[(r + u * (long long)phases) * sr];
#pragma unroll
                for (int u = 0; u < NMFA_UNROLL; ++u) {
                    if constexpr (F64) {
                        const double a = fabs((double)x[u]) * factor;
                        const double d = 1.0 / a;
                        const int b = nmfa_bin_f64(d, lo, grid_scale, threshold, decimals);
                        if (b >= 0) { atomicAdd(&hist[b * nt + col], 1u); acc += 1.0 / d; }
                    } else {
                        const float v = L::magnitude(x[u]);
                        const int b = nmfa_bin_f32(v, e, nbins, guess_scale, lo);
                        if (b >= 0) { atomicAdd(&hist[b * nt + col], 1u); acc += (double)v; }
                    }
                }
            }
            for (; r < rows; r += phases) {
                const typename L::raw x = p[r * sr];
                if constexpr (F64) {
                    const double a = fabs((double)x) * factor;
                    const double d = 1.0 / a;
                    const int b = nmfa_bin_f64(d, lo, grid_scale, threshold, decimals);
                    if (b >= 0) { atomicAdd(&hist[b * nt + col], 1u); acc += 1.0 / d; }
                } else {
                    const float v = L::magnitude(x);
                    const int b = nmfa_bin_f32(v, e, nbins, guess_scale, lo);
                    if (b >= 0) { atomicAdd(&hist[b * nt + col], 1u); acc += (double)v; }
                }
            }
        }
        w_total += F64 ? acc : acc * factor;
    }
    wp[tid] = w_total;
    __syncthreads();  // barrier: every segment counted before the scan
    nmfa_finish_tile(hist, wp, nbins, nt, ncols, row, min_nb, cum, wsum);
}

struct NmfaF64 {
    typedef double raw;
};

#define NMFA_DENSE_KERNEL(name, L, F64)                                                                              \
    extern "C" __global__ void name(long long tile0, const long long* __restrict__ tiles,                            \
                                    const long long* __restrict__ segs, const float* __restrict__ edges,             \
                                    const double* __restrict__ factors, int nbins, int nt, int min_nb, int lo,      \
                                    double grid_scale, double threshold, int decimals, unsigned int* __restrict__ cum, \
                                    double* __restrict__ wsum) {                                                      \
        nmfa_hist_dense<L, F64>(tile0, tiles, segs, edges, factors, nbins, nt, min_nb, lo, grid_scale, threshold,    \
                                decimals, cum, wsum);                                                                \
    }

NMFA_DENSE_KERNEL(nmfa_hist_bf16, NmfaBf16, false)
NMFA_DENSE_KERNEL(nmfa_hist_f16, NmfaF16, false)
NMFA_DENSE_KERNEL(nmfa_hist_f32, NmfaF32, false)
NMFA_DENSE_KERNEL(nmfa_hist_f64, NmfaF64, true)

// CSR distances (float64, already 1/|w|): tile = nt consecutive nodes; thread (col, phase) reads elements
// phase, phase + P, ... of node col0 + col.
extern "C" __global__ void nmfa_hist_csr(long long tile0, const long long* __restrict__ tiles,
                                         const long long* __restrict__ indptr, const double* __restrict__ dist,
                                         int nbins, int nt, int min_nb, int lo, double grid_scale, double threshold,
                                         int decimals, unsigned int* __restrict__ cum, double* __restrict__ wsum) {
    NMFA_DYNAMIC_SMEM(double, wp);
    unsigned int* hist = reinterpret_cast<unsigned int*>(wp + blockDim.x);
    const int tid = threadIdx.x, T = blockDim.x, phases = T / nt, col = tid % nt, phase = tid / nt;
    const long long* tile = tiles + (tile0 + blockIdx.x) * NMFA_TILE_FIELDS;
    const long long col0 = tile[2], ncols = tile[3], row = tile[4];
    for (int i = tid; i < nbins * nt; i += T) hist[i] = 0u;
    __syncthreads();  // barrier: hist is zeroed
    double acc = 0.0;
    if (col < ncols) {
        const long long start = indptr[col0 + col], len = indptr[col0 + col + 1] - start;
        for (long long r = phase; r < len; r += phases) {
            const double d = dist[start + r];
            const int b = nmfa_bin_f64(d, lo, grid_scale, threshold, decimals);
            if (b >= 0) { atomicAdd(&hist[b * nt + col], 1u); acc += 1.0 / d; }
        }
    }
    wp[tid] = acc;
    __syncthreads();  // barrier: every distance counted before the scan
    nmfa_finish_tile(hist, wp, nbins, nt, ncols, row, min_nb, cum, wsum);
}

// Z_q(r_k) over the nodes of a chunk; see the header. Launch: grid (GX, ceil(nbins / blockDim.x)).
// q[q_off .. q_off + nq) are this launch's orders (nq <= NMFA_QMAX); zpart is (GX, nbins, zstride) float64,
// npart (GX, 2) = {kept nodes, kept edges}, wpart (GX,), ppart (GX, nbins) = radius present.
extern "C" __global__ void nmfa_accumulate(const unsigned int* __restrict__ cum, const double* __restrict__ wsum,
                                           long long n_rows, int nbins, const double* __restrict__ q, int q_off, int nq,
                                           int q_zero, int uniform, double dq, int count, long long zstride,
                                           double* __restrict__ zpart, unsigned long long* __restrict__ npart,
                                           double* __restrict__ wpart, unsigned int* __restrict__ ppart) {
    const int k = blockIdx.y * blockDim.x + threadIdx.x;
    const bool active = k < nbins, counter = count && blockIdx.y == 0 && threadIdx.x == 0;
    const double* qc = q + q_off;
    const double q_first = qc[0], q_at_zero = qc[q_zero];
    double acc[NMFA_QMAX];
#pragma unroll
    for (int j = 0; j < NMFA_QMAX; ++j) acc[j] = 0.0;
    unsigned long long nodes = 0ull, edges = 0ull;
    double wtot = 0.0;
    unsigned int present = 0u;
    for (long long i = blockIdx.x; i < n_rows; i += gridDim.x) {
        const unsigned int* row = cum + i * (long long)nbins;
        const unsigned int big_c = row[nbins - 1];
        if (big_c == 0u) continue;  // too few kept edges
        if (counter) {
            nodes += 1ull;
            edges += (unsigned long long)(big_c - 1u);
            wtot += wsum[i];
        }
        if (!active) continue;
        const unsigned int c = row[k], before = k > 0 ? row[k - 1] : 1u;
        present |= (unsigned int)(c != before);
        if (c == big_c) {
#pragma unroll
            for (int j = 0; j < NMFA_QMAX; ++j) acc[j] += 1.0;  // p = 1 (rows beyond nq are never read)
            continue;
        }
        const double lx = log((double)c / (double)big_c);
        if (uniform) {
            const double step = exp(dq * lx);
            double p = exp(q_first * lx);
            const double p_zero = exp(q_at_zero * lx);  // exactly 1 where q = 0
#pragma unroll
            for (int j = 0; j < NMFA_QMAX; ++j) {
                if (j == q_zero) p = p_zero;
                acc[j] += p;
                p *= step;
            }
        } else {
#pragma unroll
            for (int j = 0; j < NMFA_QMAX; ++j)
                if (j < nq) acc[j] += exp(qc[j] * lx);
        }
    }
    if (active) {
        double* z = zpart + ((long long)blockIdx.x * nbins + k) * zstride + q_off;
#pragma unroll
        for (int j = 0; j < NMFA_QMAX; ++j)
            if (j < nq) z[j] += acc[j];
        if (count) ppart[(long long)blockIdx.x * nbins + k] |= present;
    }
    if (counter) {
        npart[2 * blockIdx.x] += nodes;
        npart[2 * blockIdx.x + 1] += edges;
        wpart[blockIdx.x] += wtot;
    }
}
