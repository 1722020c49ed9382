// C entry points that run the kernels of box_count.cu on the CPU (see cuda_shim.h). Built by
// tests/backends/kernel_harness/__init__.py with g++ -std=c++20 -pthread; NMFA_KERNEL_FILE names the .cu file.
#include "cuda_shim.h"

#include NMFA_KERNEL_FILE

#define NMFA_DENSE_LAUNCHER(name)                                                                                   \
    extern "C" void launch_##name(unsigned gx, unsigned gy, unsigned bx, long long smem, long long tile0,            \
                                  const long long* tiles, const long long* segs, const float* edges,                \
                                  const double* factors, int nbins, int nt, int min_nb, int lo, double grid_scale,  \
                                  double threshold, int decimals, unsigned int* cum, double* wsum) {                \
        shim::launch(dim3{gx, gy, 1}, dim3{bx, 1, 1}, (std::size_t)smem, [&] {                                     \
            name(tile0, tiles, segs, edges, factors, nbins, nt, min_nb, lo, grid_scale, threshold, decimals, cum,   \
                 wsum);                                                                                             \
        });                                                                                                          \
    }

NMFA_DENSE_LAUNCHER(nmfa_hist_bf16)
NMFA_DENSE_LAUNCHER(nmfa_hist_f16)
NMFA_DENSE_LAUNCHER(nmfa_hist_f32)
NMFA_DENSE_LAUNCHER(nmfa_hist_f64)

extern "C" void launch_nmfa_hist_csr(unsigned gx, unsigned gy, unsigned bx, long long smem, long long tile0,
                                     const long long* tiles, const long long* indptr, const double* dist, int nbins,
                                     int nt, int min_nb, int lo, double grid_scale, double threshold, int decimals,
                                     unsigned int* cum, double* wsum) {
    shim::launch(dim3{gx, gy, 1}, dim3{bx, 1, 1}, (std::size_t)smem, [&] {
        nmfa_hist_csr(tile0, tiles, indptr, dist, nbins, nt, min_nb, lo, grid_scale, threshold, decimals, cum, wsum);
    });
}

extern "C" void launch_nmfa_accumulate(unsigned gx, unsigned gy, unsigned bx, long long smem, const unsigned int* cum,
                                       const double* wsum, long long n_rows, int nbins, const double* q, int q_off,
                                       int nq, int q_zero, int uniform, double dq, int count, long long zstride,
                                       double* zpart, unsigned long long* npart, double* wpart, unsigned int* ppart) {
    shim::launch(dim3{gx, gy, 1}, dim3{bx, 1, 1}, (std::size_t)smem, [&] {
        nmfa_accumulate(cum, wsum, n_rows, nbins, q, q_off, nq, q_zero, uniform, dq, count, zstride, zpart, npart,
                        wpart, ppart);
    });
}
