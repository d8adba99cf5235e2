// The per-thread event log behind opt-in tracing: scopes append complete events to their
// thread's chunk list; memory is bounded by reserving whole chunks from a global allowance.
#pragma once

#include <frugal/config.hpp>
#include <frugal/detail/heap.hpp>
#include <frugal/detail/ledger.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace frugal::detail {

struct trace_event {
  const std::string* stage;   // the budget's interned stage name (copied if the budget dies);
                              // nullptr: dropped after it was recorded (see forget_trace_names)
  const std::string* budget;  // the budget's name (likewise)
  std::uint64_t budget_uid;
  std::int64_t start_ns;
  std::int64_t duration_ns;
  std::uint64_t flops;
  std::uint64_t allocations;
  bool continued;  // a worker continuing another thread's scope (frugal::attach)
};

inline constexpr std::size_t trace_chunk_events = 1024;

// Written by one thread; readers take events below `count` (published with release).
struct trace_chunk {
  trace_event events[trace_chunk_events];
  std::atomic<std::size_t> count{0};
  std::atomic<trace_chunk*> next{nullptr};
};

struct trace_thread_log {
  std::uint64_t thread_id = 0;
  trace_chunk* head = nullptr;  // owned through trace_state::chunks
  trace_chunk* tail = nullptr;
};

struct trace_state {
  std::atomic<bool> enabled{false};
  std::atomic<std::uint64_t> generation{0};  // bumped by every start: old logs are abandoned
  std::atomic<std::size_t> reserved{0};      // events reserved in chunks so far
  std::atomic<std::size_t> max_events{0};
  std::atomic<std::size_t> dropped{0};
  std::int64_t origin_ns = 0;
  std::size_t forgotten = 0;  // recorded events dropped later (forget_trace_names); under mutex

  std::mutex mutex;  // guards everything below; never taken while a chunk has room
  owned_ptrs<trace_chunk> chunks;
  owned_ptrs<trace_thread_log> logs;
  // Names of budgets destroyed while their events lived; a list (stable addresses) because,
  // unlike std::deque, it allocates nothing when constructed.
  std::list<std::string> names;
};

// tracer() is first called from ~budget() (noexcept) when tracing was never started: building
// the state must not allocate, or an out-of-memory there would terminate.
static_assert(std::is_nothrow_default_constructible_v<trace_state>);

inline trace_state& tracer() {
  static trace_state state;  // constructed on first use, never on the hot path's fast branch
  return state;
}
inline std::atomic<bool> trace_enabled{false};  // the hot path's one check

// The calling thread's log, valid only while its generation is the current one: a new
// recording frees the old logs, and the generation tells without touching freed memory.
inline thread_local trace_thread_log* this_thread_log = nullptr;
inline thread_local std::uint64_t this_thread_log_generation = 0;

// Cold: the calling thread's log needs a (first or next) chunk of the allowance. Called from
// pop_frame(), which is noexcept (a scope's destructor): so this is noexcept by construction.
// When memory for the log or the chunk cannot be had (std::bad_alloc, or the mutex failing),
// it returns nullptr and the caller drops the event and counts the drop, as past max_events;
// nothing is half-done (the allowance is charged only once the chunk is owned and linked), so
// the next event tries again.
FRUGAL_NOINLINE inline trace_chunk* next_trace_chunk() noexcept {
  trace_state& t = tracer();
  const bookkeeping own_allocations;
  try {
    std::lock_guard<std::mutex> lock(t.mutex);
    const std::uint64_t generation = t.generation.load(std::memory_order_relaxed);
    trace_thread_log* log = this_thread_log_generation == generation ? this_thread_log : nullptr;
    if (!log) {
      auto* owned = new trace_thread_log();
      owned->thread_id = current_thread_id();
      log = t.logs.adopt(owned);  // strong guarantee: on failure `owned` is freed
      this_thread_log = log;
      this_thread_log_generation = generation;
    }
    if (t.reserved.load(std::memory_order_relaxed) + trace_chunk_events > t.max_events.load(std::memory_order_relaxed))
      return nullptr;
    trace_chunk* c = t.chunks.adopt(new trace_chunk());  // likewise
    t.reserved.fetch_add(trace_chunk_events, std::memory_order_relaxed);
    if (log->tail)
      log->tail->next.store(c, std::memory_order_release);
    else
      log->head = c;
    log->tail = c;
    return c;
  } catch (...) {
    return nullptr;
  }
}

inline void record_trace_event(const frame& f, std::int64_t end_ns, std::uint64_t flops,
                               std::uint64_t allocations, const std::string* budget_name,
                               std::uint64_t budget_uid) noexcept {
  trace_state& t = tracer();
  trace_chunk* c = this_thread_log_generation == t.generation.load(std::memory_order_relaxed) && this_thread_log
                       ? this_thread_log->tail
                       : nullptr;
  std::size_t n = c ? c->count.load(std::memory_order_relaxed) : trace_chunk_events;
  if (n == trace_chunk_events) {
    c = next_trace_chunk();
    if (!c) {
      t.dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    n = 0;
  }
  c->events[n] = trace_event{f.stage->name, budget_name, budget_uid, f.start_ns, end_ns - f.start_ns,
                             flops, allocations, !f.counts_call};
  c->count.store(n + 1, std::memory_order_release);
}

// A budget is going away while events may still point at its names: give them copies.
// Called from ~budget(), which is noexcept: when the copies cannot be allocated, the budget's
// events are dropped instead (stage set to nullptr: writers skip them, trace_statistics() counts
// them in `dropped`), never left pointing at freed names.
inline void forget_trace_names(std::uint64_t budget_uid) noexcept {
  trace_state& t = tracer();
  const bookkeeping own_allocations;
  // std::mutex::lock() throws only on misuse (EDEADLK), never for want of memory.
  std::lock_guard<std::mutex> lock(t.mutex);
  if (t.chunks.empty()) return;
  try {
    // First every copy (may throw), then the rewrite (cannot): no event is left half-renamed.
    std::vector<const std::string*> originals;  // originals[i] -> copies[i]
    std::vector<const std::string*> copies;
    auto copy_of = [&](const std::string* original) {
      for (const std::string* from : originals)
        if (from == original) return;
      originals.push_back(original);
      copies.push_back(nullptr);
      copies.back() = &t.names.emplace_back(*original);
    };
    for (const auto& chunk : t.chunks) {
      const std::size_t n = chunk->count.load(std::memory_order_acquire);
      for (std::size_t i = 0; i < n; ++i) {
        const trace_event& e = chunk->events[i];
        if (e.budget_uid != budget_uid || !e.stage) continue;
        copy_of(e.budget);
        copy_of(e.stage);
      }
    }
    auto find = [&](const std::string* original) {
      for (std::size_t i = 0; i < originals.size(); ++i)
        if (originals[i] == original) return copies[i];
      return original;  // not reached: every name was copied above
    };
    for (const auto& chunk : t.chunks) {
      const std::size_t n = chunk->count.load(std::memory_order_acquire);
      for (std::size_t i = 0; i < n; ++i) {
        trace_event& e = chunk->events[i];
        if (e.budget_uid != budget_uid || !e.stage) continue;
        e.budget = find(e.budget);
        e.stage = find(e.stage);
        e.budget_uid = 0;  // no live budget owns these names any more
      }
    }
  } catch (...) {
    for (const auto& chunk : t.chunks) {
      const std::size_t n = chunk->count.load(std::memory_order_acquire);
      for (std::size_t i = 0; i < n; ++i) {
        trace_event& e = chunk->events[i];
        if (e.budget_uid != budget_uid || !e.stage) continue;
        e.stage = e.budget = nullptr;  // dropped: its names die with the budget
        e.budget_uid = 0;
        ++t.forgotten;
        t.dropped.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
}

}  // namespace frugal::detail
