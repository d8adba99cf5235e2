// Per-thread accounting state: the counters a thread bumps, the slots it charges, the stack of
// open scopes. Internal to frugal; the layout is what keeps the hot path lock-free.
#pragma once

#include <frugal/config.hpp>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace frugal {
class budget;

namespace detail {

// An owning list of heap objects in the order they were added: what
// std::vector<std::unique_ptr<T>> would be -- an entry reads as a T* (null for an entry not
// filled yet), the objects are deleted first to last -- but held in one std::vector<void*> that
// every T shares. A unique_ptr and a vector of it per T would cost every translation unit that
// includes frugal a noticeable share of its compile time (frugal is header-only).
template <class T>
class owned_ptrs {
 public:
  owned_ptrs() noexcept = default;
  owned_ptrs(const owned_ptrs&) = delete;
  owned_ptrs& operator=(const owned_ptrs&) = delete;
  ~owned_ptrs() { clear(); }

  [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
  [[nodiscard]] bool empty() const noexcept { return items_.empty(); }
  [[nodiscard]] T* operator[](std::size_t i) const noexcept { return static_cast<T*>(items_[i]); }
  // Throws std::out_of_range past the end, as std::vector::at does.
  [[nodiscard]] T* at(std::size_t i) const { return static_cast<T*>(items_.at(i)); }
  [[nodiscard]] T* back() const noexcept { return static_cast<T*>(items_.back()); }

  // Appends p and owns it; when that fails (out of memory), deletes p and rethrows.
  T* adopt(T* p) {
    try {
      items_.push_back(p);
    } catch (...) {
      delete p;
      throw;
    }
    return p;
  }
  // Grows to n entries, the new ones null.
  void grow_to(std::size_t n) {
    if (items_.size() < n) items_.resize(n, nullptr);
  }
  // Entry i owns p from now on (the object it held, if any, is deleted).
  void reset(std::size_t i, T* p) noexcept {
    delete static_cast<T*>(items_[i]);
    items_[i] = p;
  }
  // Deletes every object, first to last, and empties the list.
  void clear() noexcept {
    static_assert(sizeof(T) > 0, "owned_ptrs<T> deletes a T: T must be complete");
    for (void* p : items_) delete static_cast<T*>(p);
    items_.clear();
  }

  // Range-for yields the T* of each entry.
  class iterator {
   public:
    explicit iterator(void* const* at) noexcept : at_(at) {}
    T* operator*() const noexcept { return static_cast<T*>(*at_); }
    iterator& operator++() noexcept {
      ++at_;
      return *this;
    }
    bool operator!=(const iterator& other) const noexcept { return at_ != other.at_; }

   private:
    void* const* at_;
  };
  [[nodiscard]] iterator begin() const noexcept { return iterator(items_.data()); }
  [[nodiscard]] iterator end() const noexcept { return iterator(items_.data() + items_.size()); }

 private:
  std::vector<void*> items_;
};

// A counter written by exactly one thread and read by any. The owner's update is a relaxed
// load and store (no lock prefix, no shared cache line in the owner's inner loop); readers
// see a value that is at most one update old.
template <class T>
struct owned_counter {
  std::atomic<T> value{};
  void add(T delta) noexcept {
    value.store(value.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }
  [[nodiscard]] T get() const noexcept { return value.load(std::memory_order_relaxed); }
};

// Additive resources a thread measures on its own, monotone for the thread's lifetime.
// Allocation hooks bump these, so the type is trivial and constant-initialised.
struct thread_counters {
  std::uint64_t flops;
  std::uint64_t allocations;
  std::uint64_t alloc_bytes;
};

// One thread's share of one stage (budget, stage name): inclusive charges of the scopes
// that opened the stage on that thread.
struct stage_slot {
  stage_slot(std::uint32_t stage_index, const std::string* stage_name) noexcept
      : index(stage_index), name(stage_name) {}
  const std::uint32_t index;       // position in the budget's stage table
  const std::string* const name;   // the budget's interned name, stable for its lifetime
  owned_counter<std::uint64_t> calls;
  owned_counter<std::int64_t> wall_ns;
  owned_counter<std::uint64_t> flops;
  owned_counter<std::uint64_t> allocations;
  owned_counter<std::uint64_t> alloc_bytes;
  owned_counter<std::int64_t> peak_growth;  // largest rise of the thread's live heap in one scope
  std::array<owned_counter<double>, FRUGAL_MAX_UNITS> units{};
  // Scopes of the stage open on the owning thread (touched only by it). Only the outermost
  // one charges the stage: an inner one's charges are already inside the outer one's.
  std::uint32_t open = 0;
};

struct thread_blocks;

// One thread's share of one budget. Additive charges here are exclusive of child budgets
// (readers sum the subtree); CPU time is inclusive (it is measured per activation, which
// already spans the children).
//
// A block outlives its thread: when the thread exits, the block (counters and stage slots
// as they stand) is handed to the next new thread that uses the budget, which keeps adding
// to the same counters. Totals stay exact, and a budget holds as many blocks as threads ever
// used it at the same time, not as many as ever used it.
struct thread_block {
  thread_block(budget* owner_budget, thread_block* parent_block, std::uint64_t thread) noexcept
      : owner(owner_budget), parent(parent_block), thread_id(thread) {}
  budget* const owner;
  // Set when a thread takes the block, under the budget's mutex (and the registry's).
  thread_block* parent;    // the same thread's block of the parent budget
  std::uint64_t thread_id;  // the owning thread; 0 while free

  // The owning thread's list of its blocks (null once free, or when the thread took the block
  // after its exit handler ran), and the links of that list, or of the budget's free list.
  // Under thread_blocks_mutex (budget.hpp).
  thread_blocks* list = nullptr;
  thread_block* list_prev = nullptr;
  thread_block* list_next = nullptr;

  // Touched only by the owning thread (and set by it when it takes the block).
  int open = 0;                  // scopes of this budget or its descendants open on the thread
  // The block is the budget's one-thread block: while no other thread has used the budget, its
  // transitions go to the budget's solo word without an atomic read-modify-write (budget.hpp).
  bool solo = false;
  std::int64_t cpu_start_ns = -1;  // thread CPU clock at activation; -1 when not measured

  owned_counter<std::uint64_t> flops;
  owned_counter<std::uint64_t> allocations;
  owned_counter<std::uint64_t> alloc_bytes;
  owned_counter<std::int64_t> cpu_ns;
  owned_counter<std::int64_t> wall_rest_ns;  // the budget's wall below a tick, from this thread's transitions
  std::array<owned_counter<double>, FRUGAL_MAX_UNITS> units{};

  // Grown by the owning thread, read by others; both under the budget's mutex.
  owned_ptrs<stage_slot> stages;
};

// The blocks a live thread holds, so that its exit hands them on (budget.hpp).
struct thread_blocks {
  thread_block* head = nullptr;
};

// A budget's busy word (budget.hpp): the low busy_count_bits count the threads that have the
// budget active (a heap_watch holds 1); the rest is time. 22 bits hold any number of threads
// Linux can run at once (PID_MAX_LIMIT is 2^22, so at most 2^22 - 1 tasks).
inline constexpr int busy_count_bits = 22;
inline constexpr std::int64_t busy_count_mask = (std::int64_t{1} << busy_count_bits) - 1;

// An open scope on a thread. Lives inside the scope object on the user's stack.
struct frame {
  frame* prev;
  thread_block* block;
  stage_slot* stage;
  std::int64_t start_ns;
  thread_counters at_enter;  // for the stage's inclusive charges
  std::int64_t live_at_enter;       // the thread's live heap when the scope opened
  std::int64_t outer_live_high;     // the enclosing scope's running maximum, restored at close
  bool counts_call;          // false for a worker continuing a caller's scope (frugal::attach)
  bool counts_stage;         // false when the stage was already open on the thread (re-entered)
};

struct thread_state;

// What the allocation hooks keep per thread. Fields other threads read (the registry's exact
// sums) are stored with relaxed atomic stores: plain moves, but race-free.
struct thread_heap {
  // Usable bytes this thread allocated, and freed. Kept apart (live = allocated - freed) so a
  // malloc and a free update different words: no store-to-load chain between the two.
  std::int64_t allocated;
  std::int64_t freed;
  std::int64_t folded;     // the part of live already added to the process total
  std::int64_t live_high;  // maximum of live since the innermost open scope opened
  std::uint64_t frees;
  std::uint64_t own_allocations;  // frugal's bookkeeping: not in the scopes' counters
  std::uint64_t own_alloc_bytes;
  // 1 on the fast path. Bit 0: registered; each open bookkeeping guard adds 2; exited_bit is
  // set once the thread's exit handler ran. Zero (a new thread) or anything else: slow path.
  std::uint32_t state;
  thread_state* next;  // the registry's list

  // Live heap of this thread (negative when it freed more than it allocated: cross-thread frees).
  [[nodiscard]] std::int64_t live() const noexcept { return allocated - freed; }
};

// Maps (budget uid, stage key) to this thread's block and slot. Budget uids are never reused,
// so an entry of a destroyed budget can never match again and needs no invalidation. A
// thread's exit clears its entries: its blocks go on to other threads (budget.hpp).
enum class stage_key_kind : std::uint32_t { empty = 0, literal, by_name, by_index };
// The entry also holds the stage's interned name, so a hit can confirm the name by content:
// an address or a hash alone does not name a stage.
struct cache_entry {
  std::uint64_t budget_uid;
  std::uintptr_t key;
  stage_key_kind kind;
  std::uint32_t name_size;
  const char* name;  // the interned name's bytes, NUL-terminated; stable for the budget's life
  thread_block* block;
  stage_slot* stage;
};

struct unit_cache_entry {
  const char* data;
  std::size_t size;
  std::uint32_t index;
};

// All of a thread's state in one trivially destructible, constant-initialised object: one TLS
// base for the hot path, and safe to touch before main and after static destructors.
struct thread_state {
  frame* current;                // innermost open scope, or null
  thread_counters counters;      // monotone totals of this thread
  thread_counters flushed;       // counters at the last charge to a budget
  std::uint64_t thread_id;       // 0 until first needed
  cache_entry cache[FRUGAL_THREAD_CACHE_SIZE];
  unit_cache_entry unit_cache[8];
  std::uint32_t unit_cache_next;
  thread_heap heap;
};

inline thread_local thread_state this_thread{};

static_assert((FRUGAL_THREAD_CACHE_SIZE & (FRUGAL_THREAD_CACHE_SIZE - 1)) == 0,
              "FRUGAL_THREAD_CACHE_SIZE must be a power of two");

inline std::atomic<std::uint64_t> next_thread_id{1};

[[nodiscard]] inline std::uint64_t current_thread_id() noexcept {
  thread_state& ts = this_thread;
  if (FRUGAL_UNLIKELY(ts.thread_id == 0))
    ts.thread_id = next_thread_id.fetch_add(1, std::memory_order_relaxed);
  return ts.thread_id;
}

// Charges what this thread measured since the last charge to the innermost open scope's
// budget. Called at every scope transition and before reads, so each unit lands exactly once.
inline void flush_pending(thread_state& ts) noexcept {
  const thread_counters now = ts.counters;
  if (frame* f = ts.current) {
    thread_block& b = *f->block;
    if (const auto d = now.flops - ts.flushed.flops) b.flops.add(d);
    if (const auto d = now.allocations - ts.flushed.allocations) b.allocations.add(d);
    if (const auto d = now.alloc_bytes - ts.flushed.alloc_bytes) b.alloc_bytes.add(d);
  }
  ts.flushed = now;
}

}  // namespace detail
}  // namespace frugal
