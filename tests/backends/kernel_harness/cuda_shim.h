// CPU stand-ins for the CUDA built-ins that neuromfa_callback/backends/kernels/box_count.cu uses, so that the
// very same source runs under g++: one std::thread per CUDA thread, __syncthreads() a std::barrier across the
// block's threads, atomicAdd through std::atomic_ref. Blocks run one after another (their threads concurrently),
// so a block's dynamic shared memory is one buffer, refilled with garbage before every block: a kernel that
// reads shared memory it did not write, or reads it before a barrier, gives wrong or varying results here.
#pragma once

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

namespace shim {
inline std::barrier<>* block_barrier = nullptr;
inline unsigned char* dynamic_smem = nullptr;
}  // namespace shim

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __align__(n) alignas(n)
#define NMFA_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(shim::dynamic_smem)

inline void __syncthreads() { shim::block_barrier->arrive_and_wait(); }

inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    return std::atomic_ref<unsigned int>(*p).fetch_add(v, std::memory_order_relaxed);
}

inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline float __fdividef(float a, float b) { return a / b; }

using std::exp;
using std::fabs;
using std::log;
using std::rint;
inline float fabsf(float x) { return std::fabs(x); }
inline float rintf(float x) { return std::rint(x); }

namespace shim {
// Run `body` as a CUDA grid: blockDim threads, each looping over the grid's blocks in order.
inline void launch(dim3 grid, dim3 block, std::size_t smem_bytes, const std::function<void()>& body) {
    const unsigned int n = block.x * block.y * block.z;
    std::vector<unsigned char> smem(smem_bytes + 16, 0xA5);
    std::barrier<> bar(n);
    gridDim = grid;
    blockDim = block;
    block_barrier = &bar;
    dynamic_smem = smem.data();
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (unsigned int t = 0; t < n; ++t) {
        threads.emplace_back([&, t] {
            threadIdx = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            for (unsigned int bz = 0; bz < grid.z; ++bz)
                for (unsigned int by = 0; by < grid.y; ++by)
                    for (unsigned int bx = 0; bx < grid.x; ++bx) {
                        blockIdx = dim3{bx, by, bz};
                        body();
                        bar.arrive_and_wait();  // the block is done
                        if (t == 0) std::memset(smem.data(), 0xA5, smem.size());  // fresh (garbage) shared memory
                        bar.arrive_and_wait();
                    }
        });
    }
    for (auto& th : threads) th.join();
    block_barrier = nullptr;
    dynamic_smem = nullptr;
}
}  // namespace shim
