/// @file
/// A Google Benchmark MemoryManager fed by frugal's heap counters: any benchmark binary that
/// links frugal::allocation_hooks reports allocations and peak bytes per benchmark.
#pragma once

#include <frugal/allocation.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>

namespace frugal {

/// Counts every thread's allocations between Start and Stop. max_bytes_used is the peak live
/// heap above its level at Start; net_heap_growth is the change of live heap (usable bytes).
class benchmark_memory_manager : public benchmark::MemoryManager {
 public:
  /// Google Benchmark calls it before the measured run: notes the heap totals and resets the peak
  /// watch.
  void Start() override {
    watch_.reset();
    start_ = exact_heap_totals();
  }
  /// Fills `result` with the allocations, requested bytes, net heap growth and peak rise since
  /// Start().
  void Stop(Result& result) override {
    const heap_totals end = exact_heap_totals();
    result.num_allocs = static_cast<std::int64_t>(end.allocations - start_.allocations);
    result.total_allocated_bytes = static_cast<std::int64_t>(end.alloc_bytes - start_.alloc_bytes);
    result.net_heap_growth = end.live_bytes - start_.live_bytes;
    result.max_bytes_used = std::max<std::int64_t>(0, watch_.peak_bytes() - start_.live_bytes);
  }
  /// Google Benchmark 1.7 still declares the pointer form pure virtual.
  void Stop(Result* result) override { Stop(*result); }

 private:
  heap_watch watch_;
  heap_totals start_;
};

/// Registers frugal's memory manager with Google Benchmark when allocation tracking works, and
/// says why not otherwise (so a binary can print it rather than report zeros). Call before
/// benchmark::RunSpecifiedBenchmarks().
inline allocation_tracking_status use_benchmark_memory_manager() {
  allocation_tracking_status status = allocation_tracking();
  if (status) {
    static benchmark_memory_manager manager;
    benchmark::RegisterMemoryManager(&manager);
  }
  return status;
}

}  // namespace frugal
