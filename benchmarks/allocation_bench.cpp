// The cost of frugal's allocation hooks, side by side in one binary: malloc+free through the
// hooks against glibc's allocator called directly, and a scope with and without allocations.
// Reports allocations and peak bytes per benchmark through frugal's MemoryManager.
#include <frugal/allocation.hpp>
#include <frugal/benchmark_memory.hpp>
#include <frugal/frugal.hpp>

#include <benchmark/benchmark.h>

#include <Eigen/Dense>

#include <cstdio>
#include <cstdlib>

extern "C" {
void* __libc_malloc(std::size_t) noexcept;
void __libc_free(void*) noexcept;
}

namespace {

// Volatile function pointers: the compiler may not elide or merge the calls.
void* (*volatile hooked_malloc)(std::size_t) = std::malloc;
void (*volatile hooked_free)(void*) = std::free;
void* (*volatile plain_malloc)(std::size_t) = __libc_malloc;
void (*volatile plain_free)(void*) = __libc_free;

void malloc_free_64_plain(benchmark::State& state) {
  for (auto _ : state) plain_free(plain_malloc(64));
}
BENCHMARK(malloc_free_64_plain);

void malloc_free_64_hooked(benchmark::State& state) {
  for (auto _ : state) hooked_free(hooked_malloc(64));
}
BENCHMARK(malloc_free_64_hooked);

void malloc_free_64_hooked_in_scope(benchmark::State& state) {
  frugal::budget run{"run"};
  frugal::scope all{run, "all"};
  for (auto _ : state) hooked_free(hooked_malloc(64));
}
BENCHMARK(malloc_free_64_hooked_in_scope);

// A scope's own cost with the hooks linked (its allocation deltas are part of every close);
// compare with scope_bench's scope_enter_exit, which runs without the hooks.
void scope_enter_exit_hooked(benchmark::State& state) {
  frugal::budget run{"run"};
  frugal::scope all{run, "all"};
  for (auto _ : state) {
    frugal::scope s{run, "step"};
    benchmark::ClobberMemory();
  }
}
BENCHMARK(scope_enter_exit_hooked);

// Reported with allocations and peak bytes: one result matrix of a 64x64 product.
void eigen_product_64(benchmark::State& state) {
  const Eigen::MatrixXf a = Eigen::MatrixXf::Random(64, 64);
  const Eigen::MatrixXf b = Eigen::MatrixXf::Random(64, 64);
  for (auto _ : state) {
    Eigen::MatrixXf c = a * b;
    benchmark::DoNotOptimize(c.data());
  }
}
BENCHMARK(eigen_product_64);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const frugal::allocation_tracking_status status = frugal::use_benchmark_memory_manager();
  if (!status) std::fprintf(stderr, "frugal: no allocation figures: %s\n", status.reason.c_str());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
