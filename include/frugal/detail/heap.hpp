// Process-wide heap accounting behind the allocation hooks: per-thread counters folded into a
// process total in bounded steps, peak watchers for budgets, the registry of threads, and what
// keeps it right across thread exit and fork().
#pragma once

#include <frugal/config.hpp>
#include <frugal/detail/ledger.hpp>

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

// Defined (strongly) only by the translation unit that expands <frugal/allocation_hooks.hpp>:
// 1 when its malloc family is in place, 2 when a sanitizer owns malloc and the hooks stepped aside.
extern "C" __attribute__((weak)) const int frugal_allocation_hooks_mode;

namespace frugal::detail {

// A thread folds its change of live heap into the process total once it reaches this many
// bytes, so the process total is exact to within (threads x FRUGAL_HEAP_FOLD_BYTES).
#ifndef FRUGAL_HEAP_FOLD_BYTES
#define FRUGAL_HEAP_FOLD_BYTES (64 * 1024)
#endif


template <class T>
inline T relaxed_load(const T& v) noexcept {
  return __atomic_load_n(&v, __ATOMIC_RELAXED);
}
template <class T>
inline void relaxed_store(T& v, T x) noexcept {
  __atomic_store_n(&v, x, __ATOMIC_RELAXED);
}

inline void raise_to(std::atomic<std::int64_t>& peak, std::int64_t value) noexcept {
  std::int64_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

// A peak watcher records the highest folded live heap while its owner is active. A budget's
// busy word (see budget.hpp) lives in its slot, so a fold can test "active" without touching
// the budget, and a slot outlives every budget that used it.
struct heap_watcher {
  std::atomic<std::int64_t> peak{0};
  std::atomic<std::int64_t> busy{0};  // low bits: threads active (a heap_watch holds 1)
  std::atomic<bool> taken{false};
};

// Watchers of the peak live heap: one per budget and one per heap_watch, as many as there are.
// The first inline_watchers are static; then blocks of 128, 256, 512, ... slots, allocated on
// the cold path (a budget's construction) and never freed, so a fold reads them without a lock.
// Slots are recycled: a fold scans the prefix of slots ever taken at once, not ever created.
inline constexpr std::size_t inline_watchers = 128;
inline constexpr std::size_t watcher_blocks = 40;  // 128 << 39 slots: beyond any address space

// Hooks' link state, set by the one translation unit that expands allocation_hooks.hpp.
enum class hooks_mode : int { none = 0, installed = 1, sanitizer = 2 };

struct heap_state {
  std::atomic<std::int64_t> live{0};   // folded live heap of the process (usable bytes)
  std::atomic<std::int64_t> peak{0};   // highest folded live heap since start
  heap_watcher watchers[inline_watchers];
  // Block k (k >= 1) holds slots [inline_watchers << (k - 1), inline_watchers << k); published
  // (release) before watchers_used covers any of its slots.
  std::atomic<heap_watcher*> more_watchers[watcher_blocks - 1]{};
  std::atomic<std::size_t> watchers_used{0};  // slots ever taken: folds scan this prefix

  // Registry of threads known to the hooks, for exact totals on demand. A spin lock: taken
  // only at thread registration and exit and by exact reads, never by an allocation.
  std::atomic<bool> registry_locked{false};
  thread_state* threads = nullptr;
  std::atomic<std::uint64_t> exited_allocations{0};
  std::atomic<std::uint64_t> exited_alloc_bytes{0};
  std::atomic<std::uint64_t> exited_frees{0};
  std::atomic<int> key_state{0};  // 0: no key, 1: creating, 2: created
  pthread_key_t exit_key{};
};
inline heap_state heap{};


class registry_lock {
 public:
  registry_lock() noexcept {
    while (heap.registry_locked.exchange(true, std::memory_order_acquire)) {
    }
  }
  ~registry_lock() { heap.registry_locked.store(false, std::memory_order_release); }
  registry_lock(const registry_lock&) = delete;
  registry_lock& operator=(const registry_lock&) = delete;
};

inline constexpr std::uint32_t registered_bit = 1;
inline constexpr std::uint32_t bookkeeping_step = 2;
inline constexpr std::uint32_t exited_bit = 1u << 30;

// Out of line: it runs once per FRUGAL_HEAP_FOLD_BYTES, and inlined, its loops would make every
// hook save more registers.
FRUGAL_NOINLINE inline void fold_heap(thread_heap& h) noexcept {
  const std::int64_t live = h.live();
  const std::int64_t delta = live - h.folded;
  relaxed_store(h.folded, live);
  const std::int64_t now = heap.live.fetch_add(delta, std::memory_order_relaxed) + delta;
  raise_to(heap.peak, now);
  const std::size_t n = heap.watchers_used.load(std::memory_order_acquire);
  heap_watcher* block = heap.watchers;
  for (std::size_t begin = 0, size = inline_watchers, k = 0; begin < n; begin += size, size = begin, ++k) {
    if (k > 0) block = heap.more_watchers[k - 1].load(std::memory_order_acquire);
    const std::size_t count = n - begin < size ? n - begin : size;
    for (std::size_t i = 0; i < count; ++i) {
      heap_watcher& w = block[i];
      if (w.busy.load(std::memory_order_relaxed) & busy_count_mask) raise_to(w.peak, now);
    }
  }
}

// A thread leaving the registry (under its lock): its live heap folds into the process total
// and its counts into those of exited threads, so exact totals neither lose nor repeat them.
inline void retire_thread(thread_state& ts) noexcept {
  thread_heap& h = ts.heap;
  fold_heap(h);
  heap.exited_allocations.fetch_add(ts.counters.allocations + h.own_allocations, std::memory_order_relaxed);
  heap.exited_alloc_bytes.fetch_add(ts.counters.alloc_bytes + h.own_alloc_bytes, std::memory_order_relaxed);
  heap.exited_frees.fetch_add(h.frees, std::memory_order_relaxed);
}

// The exit handler, frugal's pthread-key destructor: the thread leaves the registry, so its
// node (in the thread's static TLS, which glibc reuses for a later thread) is free for reuse.
// What the thread still allocates and frees afterwards (pthread-key destructors that run after
// this one, in this round or a later one, and glibc's own thread teardown) takes the slow path
// and is counted straight into the exited threads' totals (see record_allocation_slow).
inline void on_thread_exit(void* state) noexcept {
  auto* ts = static_cast<thread_state*>(state);
  registry_lock lock;
  retire_thread(*ts);
  for (thread_state** p = &heap.threads; *p; p = &(*p)->heap.next)
    if (*p == ts) {
      *p = ts->heap.next;
      break;
    }
  ts->heap.state |= exited_bit;
}

inline void before_fork() noexcept;
inline void after_fork_in_parent() noexcept;
inline void after_fork_in_child() noexcept;

FRUGAL_NOINLINE inline void register_thread(thread_state& ts) noexcept {
  ts.heap.state |= registered_bit;  // first: registering may allocate (pthread_setspecific)
  int key = heap.key_state.load(std::memory_order_acquire);
  if (key != 2) {
    int expected = 0;
    if (heap.key_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
      ts.heap.state += bookkeeping_step;  // whatever these allocate is frugal's own
      pthread_key_create(&heap.exit_key, on_thread_exit);
      pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
      ts.heap.state -= bookkeeping_step;
      heap.key_state.store(2, std::memory_order_release);
    } else {
      while (heap.key_state.load(std::memory_order_acquire) != 2) {
      }
    }
  }
  {
    registry_lock lock;
    ts.heap.next = heap.threads;
    heap.threads = &ts;
  }
  // pthread_setspecific may allocate its second-level key table: frugal's own allocation.
  ts.heap.state += bookkeeping_step;
  const int armed = pthread_setspecific(heap.exit_key, &ts);
  ts.heap.state -= bookkeeping_step;
  // Without its exit handler the node would outlive the thread: leave the registry now, and
  // count everything from here on as an exited thread's (exact, on the slow path).
  if (armed != 0) on_thread_exit(&ts);
}

// fork() copies the calling thread only. Before it, that thread registers (so an allocation in
// a prepare handler that runs after this one cannot wait on the lock held here) and takes the
// registry lock: no other thread is half-way through changing the list when memory is copied.
inline void before_fork() noexcept {
  thread_state& ts = this_thread;
  if (!(ts.heap.state & registered_bit)) register_thread(ts);
  while (heap.registry_locked.exchange(true, std::memory_order_acquire)) {
  }
}

inline void after_fork_in_parent() noexcept { heap.registry_locked.store(false, std::memory_order_release); }

// In the child only the forking thread exists. The other threads' nodes are dropped, their
// counts folded in first (the totals carry on from the parent's): glibc hands those threads'
// stacks, and so their nodes, to the child's new threads, which would register them again and
// turn the list into a loop.
inline void after_fork_in_child() noexcept {
  thread_state* const self = &this_thread;
  thread_state* kept = nullptr;
  for (thread_state* p = heap.threads; p;) {
    thread_state* const next = p->heap.next;
    if (p == self)
      kept = p;
    else
      retire_thread(*p);
    p = next;
  }
  if (kept) kept->heap.next = nullptr;
  heap.threads = kept;
  heap.registry_locked.store(false, std::memory_order_release);
}

// True when the live heap has moved a fold's worth since the last fold: the caller folds.
[[nodiscard]] inline bool add_allocated(thread_heap& h, std::size_t usable) noexcept {
  const std::int64_t allocated = h.allocated + static_cast<std::int64_t>(usable);
  relaxed_store(h.allocated, allocated);
  const std::int64_t live = allocated - h.freed;
  if (live > h.live_high) h.live_high = live;
  return live - h.folded >= FRUGAL_HEAP_FOLD_BYTES;
}

// True when the live heap has moved a fold's worth since the last fold: the caller folds.
[[nodiscard]] inline bool add_freed(thread_heap& h, std::size_t usable) noexcept {
  const std::int64_t freed = h.freed + static_cast<std::int64_t>(usable);
  relaxed_store(h.freed, freed);
  return h.folded - (h.allocated - freed) >= FRUGAL_HEAP_FOLD_BYTES;
}

// A new thread, frugal's own allocation, or a thread past its exit handler. Returns p, as the
// fast path does (see record_allocation).
FRUGAL_NOINLINE inline void* record_allocation_slow(thread_state& ts, void* p, std::size_t requested,
                                                    std::size_t usable) noexcept {
  thread_heap& h = ts.heap;
  if (!(h.state & registered_bit)) register_thread(ts);
  const bool own = ((h.state & ~exited_bit) >> 1) != 0;
  if (own) {
    h.own_allocations += 1;
    h.own_alloc_bytes += requested;
  } else {
    relaxed_store(ts.counters.allocations, ts.counters.allocations + 1);
    relaxed_store(ts.counters.alloc_bytes, ts.counters.alloc_bytes + requested);
  }
  const bool fold = add_allocated(h, usable);
  if (h.state & exited_bit) {  // no registry node sums this thread any more
    heap.exited_allocations.fetch_add(1, std::memory_order_relaxed);
    heap.exited_alloc_bytes.fetch_add(requested, std::memory_order_relaxed);
  }
  if (fold || (h.state & exited_bit)) fold_heap(h);
  return p;
}

FRUGAL_NOINLINE inline void* fold_heap_then_return(void* p) noexcept {
  fold_heap(this_thread.heap);
  return p;
}

// The hot path of every allocation: a state check, three thread-local adds, two compares.
// It takes and returns the new block p so that a hook can end in it: p stays in the return
// register rather than a saved one, and the rare paths are jumps that return it too.
[[nodiscard]] inline void* record_allocation(void* p, std::size_t requested, std::size_t usable) noexcept {
  thread_state& ts = this_thread;
  thread_heap& h = ts.heap;
  if (FRUGAL_UNLIKELY(h.state != registered_bit)) return record_allocation_slow(ts, p, requested, usable);
  relaxed_store(ts.counters.allocations, ts.counters.allocations + 1);
  relaxed_store(ts.counters.alloc_bytes, ts.counters.alloc_bytes + requested);
  if (FRUGAL_UNLIKELY(add_allocated(h, usable))) return fold_heap_then_return(p);
  return p;
}

// See record_allocation_slow; returns p, as the fast path does (see record_free).
FRUGAL_NOINLINE inline void* record_free_slow(thread_state& ts, void* p, std::size_t usable) noexcept {
  thread_heap& h = ts.heap;
  if (!(h.state & registered_bit)) register_thread(ts);
  relaxed_store(h.frees, h.frees + 1);
  const bool fold = add_freed(h, usable);
  if (h.state & exited_bit) heap.exited_frees.fetch_add(1, std::memory_order_relaxed);
  if (fold || (h.state & exited_bit)) fold_heap(h);
  return p;
}

// The hot path of every free, before the block goes back to the allocator: a state check, two
// thread-local adds, a compare. Like record_allocation it takes and returns the block, so the
// hook can end in a jump to the allocator's free.
[[nodiscard]] inline void* record_free(void* p, std::size_t usable) noexcept {
  thread_state& ts = this_thread;
  thread_heap& h = ts.heap;
  if (FRUGAL_UNLIKELY(h.state != registered_bit)) return record_free_slow(ts, p, usable);
  relaxed_store(h.frees, h.frees + 1);
  if (FRUGAL_UNLIKELY(add_freed(h, usable))) return fold_heap_then_return(p);
  return p;
}

// While alive, the calling thread's allocations are frugal's own (a new stage slot, a report
// string): they still count as live heap, but are not charged to the user's scopes.
class bookkeeping {
 public:
  bookkeeping() noexcept { this_thread.heap.state += bookkeeping_step; }
  ~bookkeeping() { this_thread.heap.state -= bookkeeping_step; }
  bookkeeping(const bookkeeping&) = delete;
  bookkeeping& operator=(const bookkeeping&) = delete;
};

[[nodiscard]] inline hooks_mode linked_hooks() noexcept {
  // A weak reference: null unless the program links the hooks' translation unit. A constant,
  // so it is right from the first allocation, before any static initialiser has run.
  if (&frugal_allocation_hooks_mode == nullptr) return hooks_mode::none;
  return static_cast<hooks_mode>(frugal_allocation_hooks_mode);
}
[[nodiscard]] inline bool hooks_installed() noexcept { return linked_hooks() == hooks_mode::installed; }

// Block k of the watcher slots, allocated (as frugal's own allocation) when first needed; null
// only when that allocation fails.
[[nodiscard]] inline heap_watcher* watcher_block(std::size_t k) noexcept {
  if (k == 0) return heap.watchers;
  std::atomic<heap_watcher*>& slot = heap.more_watchers[k - 1];
  if (heap_watcher* block = slot.load(std::memory_order_acquire)) return block;
  heap_watcher* fresh = nullptr;
  {
    const bookkeeping own;
    fresh = new (std::nothrow) heap_watcher[inline_watchers << (k - 1)];
  }
  if (!fresh) return nullptr;
  heap_watcher* expected = nullptr;
  if (slot.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) return fresh;
  const bookkeeping own;  // another thread published the block first
  delete[] fresh;
  return expected;
}

// A free watcher slot, reset for a new owner: one freed by an earlier owner, or a new one.
// Null only when memory for a new block of slots cannot be allocated.
[[nodiscard]] inline heap_watcher* take_watcher(std::int64_t initial_busy) noexcept {
  for (std::size_t begin = 0, size = inline_watchers, k = 0; k < watcher_blocks; begin += size, size = begin, ++k) {
    heap_watcher* block = watcher_block(k);
    if (!block) return nullptr;
    for (std::size_t i = 0; i < size; ++i) {
      heap_watcher& w = block[i];
      bool expected = false;
      if (!w.taken.load(std::memory_order_relaxed) &&
          w.taken.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
        w.peak.store(0, std::memory_order_relaxed);  // a budget raises it when active; heap_watch resets it
        w.busy.store(initial_busy, std::memory_order_relaxed);
        const std::size_t end = begin + i + 1;
        std::size_t used = heap.watchers_used.load(std::memory_order_relaxed);
        while (used < end && !heap.watchers_used.compare_exchange_weak(used, end, std::memory_order_acq_rel)) {
        }
        return &w;
      }
    }
  }
  return nullptr;
}

inline void release_watcher(heap_watcher* w) noexcept {
  if (!w) return;
  w->busy.store(0, std::memory_order_relaxed);
  w->taken.store(false, std::memory_order_release);
}

}  // namespace frugal::detail
