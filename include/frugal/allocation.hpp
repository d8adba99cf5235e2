/// @file
/// Heap accounting as the user sees it: whether the allocation hooks are tracking (and why
/// not), process-wide heap totals, and heap_watch, an RAII recorder of peak live heap.
#pragma once

#include <frugal/detail/heap.hpp>
#include <frugal/detail/ledger.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace frugal {

/// Whether heap allocations are counted (allocation_tracking()), and if not, why.
struct allocation_tracking_status {
  /// True when the allocation hooks are linked in and a probe allocation reached them.
  bool available = false;
  std::string reason;  ///< why not, when not available
  /// The same as `available`.
  explicit operator bool() const noexcept { return available; }
};

/// Whether heap allocations are being counted, checked for real: a probe allocation must reach
/// the hooks. Without them the allocation resources read 0, and this says why.
[[nodiscard]] inline allocation_tracking_status allocation_tracking() {
  switch (detail::linked_hooks()) {
    case detail::hooks_mode::none:
      return {false,
              "allocation hooks are not linked: link the CMake target frugal::allocation_hooks, or include "
              "<frugal/allocation_hooks.hpp> in exactly one .cpp"};
    case detail::hooks_mode::sanitizer:
      return {false, "a sanitizer (AddressSanitizer or ThreadSanitizer) owns malloc in this build; frugal's "
                     "allocation hooks stepped aside"};
    case detail::hooks_mode::installed: break;
  }
  // The probe is frugal's own allocation: made under bookkeeping, it is charged to no scope.
  const detail::bookkeeping own;
  detail::thread_state& ts = detail::this_thread;
  const std::uint64_t before = ts.heap.own_allocations;
  // Through a volatile pointer, so the compiler cannot elide the malloc/free pair.
  void* (*volatile allocate)(std::size_t) = std::malloc;
  void* p = allocate(1);
  const bool reached = ts.heap.own_allocations == before + 1;
  std::free(p);
  if (!reached)
    return {false, "allocation hooks are linked but malloc does not reach them (another allocator interposes "
                   "malloc, or the program is linked statically)"};
  return {true, {}};
}

/// Process-wide heap figures, from every thread. Live and peak bytes are usable bytes (what the
/// program may use, without the allocator's headers).
struct heap_totals {
  std::uint64_t allocations = 0;  ///< all of them, frugal's own bookkeeping included
  std::uint64_t alloc_bytes = 0;  ///< requested bytes
  /// Frees of counted blocks.
  std::uint64_t frees = 0;
  /// Usable bytes allocated and not yet freed, from every thread.
  std::int64_t live_bytes = 0;
  std::int64_t peak_bytes = 0;    ///< highest folded live heap since the program started
};

/// Exact on demand: walks the registry of threads under its lock (a cold path).
[[nodiscard]] inline heap_totals exact_heap_totals() noexcept {
  heap_totals t;
  detail::registry_lock lock;
  t.allocations = detail::heap.exited_allocations.load(std::memory_order_relaxed);
  t.alloc_bytes = detail::heap.exited_alloc_bytes.load(std::memory_order_relaxed);
  t.frees = detail::heap.exited_frees.load(std::memory_order_relaxed);
  t.live_bytes = detail::heap.live.load(std::memory_order_relaxed);
  for (const detail::thread_state* ts = detail::heap.threads; ts; ts = ts->heap.next) {
    t.allocations += detail::relaxed_load(ts->counters.allocations) + detail::relaxed_load(ts->heap.own_allocations);
    t.alloc_bytes += detail::relaxed_load(ts->counters.alloc_bytes) + detail::relaxed_load(ts->heap.own_alloc_bytes);
    t.frees += detail::relaxed_load(ts->heap.frees);
    t.live_bytes += detail::relaxed_load(ts->heap.allocated) - detail::relaxed_load(ts->heap.freed) -
                    detail::relaxed_load(ts->heap.folded);
  }
  t.peak_bytes = std::max(t.live_bytes, detail::heap.peak.load(std::memory_order_relaxed));
  return t;
}

/// The calling thread's share of the totals (its live bytes go negative when it frees blocks
/// other threads allocated). Exact, and untouched by what other threads do meanwhile.
[[nodiscard]] inline heap_totals this_thread_heap_totals() noexcept {
  const detail::thread_state& ts = detail::this_thread;
  const detail::thread_heap& h = ts.heap;
  heap_totals t;
  t.allocations = ts.counters.allocations + h.own_allocations;
  t.alloc_bytes = ts.counters.alloc_bytes + h.own_alloc_bytes;
  t.frees = h.frees;
  t.live_bytes = h.live();
  t.peak_bytes = h.live_high;
  return t;
}

///@{
/// Cheap reads of the folded totals: off by at most (threads x FRUGAL_HEAP_FOLD_BYTES).
[[nodiscard]] inline std::int64_t heap_live_bytes() noexcept { return detail::heap.live.load(std::memory_order_relaxed); }
[[nodiscard]] inline std::int64_t heap_peak_bytes() noexcept { return detail::heap.peak.load(std::memory_order_relaxed); }
///@}

/// How exactly the process's live heap, and so any peak of it, is known: each thread folds what
/// it allocates into the total in steps of FRUGAL_HEAP_FOLD_BYTES, so the total may lag by up to
/// that much per thread. 0 without the hooks. Walks the registry of threads under its lock: a
/// checkpoint's cost, not a scope's.
[[nodiscard]] inline std::int64_t heap_resolution_bytes() noexcept {
  if (!detail::hooks_installed()) return 0;
  std::int64_t threads = 0;
  detail::registry_lock lock;
  for (const detail::thread_state* ts = detail::heap.threads; ts; ts = ts->heap.next) ++threads;
  return threads * static_cast<std::int64_t>(FRUGAL_HEAP_FOLD_BYTES);
}

/// Records the peak live heap of the process from construction (or reset()) on: the peak of
/// one training step, for example. Unavailable (peak 0, available() false) only without the
/// hooks, or when memory for a new block of watcher slots cannot be allocated.
///
/// Two names, two things, here and in every report: the *level* is how high the live heap
/// stood (peak_bytes(), start_bytes(); a budget's peak_bytes), the *rise* is how far it climbed
/// above where it started (peak_rise_bytes(); a stage's peak_rise_bytes in the reports).
class heap_watch {
 public:
  heap_watch() noexcept : watcher_(detail::hooks_installed() ? detail::take_watcher(1) : nullptr) { reset(); }
  ~heap_watch() { detail::release_watcher(watcher_); }
  heap_watch(const heap_watch&) = delete;
  heap_watch& operator=(const heap_watch&) = delete;

  /// Whether the watch measures: false without the hooks or when its slot could not be allocated.
  [[nodiscard]] bool available() const noexcept { return watcher_ != nullptr; }

  /// The level: the highest live heap since the start, exact for this thread's pending bytes,
  /// folded for the other threads.
  [[nodiscard]] std::int64_t peak_bytes() const noexcept {
    if (!watcher_) return 0;
    const detail::thread_heap& h = detail::this_thread.heap;
    const std::int64_t mine = heap_live_bytes() + (h.live() - h.folded);
    return std::max(watcher_->peak.load(std::memory_order_relaxed), mine);
  }
  /// The level at the start (construction or the last reset()).
  [[nodiscard]] std::int64_t start_bytes() const noexcept { return start_; }
  /// The rise: how far the heap climbed above its level at the start (0 if it never did).
  [[nodiscard]] std::int64_t peak_rise_bytes() const noexcept { return std::max<std::int64_t>(0, peak_bytes() - start_); }

  /// Starts over from the current live heap.
  void reset() noexcept {
    if (!watcher_) return;
    detail::fold_heap(detail::this_thread.heap);
    start_ = heap_live_bytes();
    watcher_->peak.store(start_, std::memory_order_relaxed);
  }

 private:
  detail::heap_watcher* watcher_;
  std::int64_t start_ = 0;
};

}  // namespace frugal
