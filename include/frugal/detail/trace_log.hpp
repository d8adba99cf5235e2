// The per-thread event log behind opt-in tracing: scopes append complete events to their
// thread's chunk list; memory is bounded by reserving whole chunks from a global allowance.
#pragma once

#include <frugal/config.hpp>
#include <frugal/detail/heap.hpp>
#include <frugal/detail/ledger.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace frugal::detail {

struct trace_event {
  const std::string* stage;   // the budget's interned stage name (copied if the budget dies)
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

  std::mutex mutex;  // guards everything below; never taken while a chunk has room
  std::vector<std::unique_ptr<trace_chunk>> chunks;
  std::vector<std::unique_ptr<trace_thread_log>> logs;
  std::deque<std::string> names;  // names of budgets destroyed while their events lived
};

inline trace_state& tracer() {
  static trace_state state;  // constructed on first use, never on the hot path's fast branch
  return state;
}
inline std::atomic<bool> trace_enabled{false};  // the hot path's one check

// The calling thread's log, valid only while its generation is the current one: a new
// recording frees the old logs, and the generation tells without touching freed memory.
inline thread_local trace_thread_log* this_thread_log = nullptr;
inline thread_local std::uint64_t this_thread_log_generation = 0;

// Cold: the calling thread's log needs a (first or next) chunk of the allowance.
FRUGAL_NOINLINE inline trace_chunk* next_trace_chunk() {
  trace_state& t = tracer();
  const bookkeeping own_allocations;
  std::lock_guard<std::mutex> lock(t.mutex);
  const std::uint64_t generation = t.generation.load(std::memory_order_relaxed);
  trace_thread_log* log = this_thread_log_generation == generation ? this_thread_log : nullptr;
  if (!log) {
    t.logs.push_back(std::make_unique<trace_thread_log>());
    log = t.logs.back().get();
    log->thread_id = current_thread_id();
    this_thread_log = log;
    this_thread_log_generation = generation;
  }
  if (t.reserved.load(std::memory_order_relaxed) + trace_chunk_events > t.max_events.load(std::memory_order_relaxed))
    return nullptr;
  t.reserved.fetch_add(trace_chunk_events, std::memory_order_relaxed);
  t.chunks.push_back(std::make_unique<trace_chunk>());
  trace_chunk* c = t.chunks.back().get();
  if (log->tail)
    log->tail->next.store(c, std::memory_order_release);
  else
    log->head = c;
  log->tail = c;
  return c;
}

inline void record_trace_event(const frame& f, std::int64_t end_ns, std::uint64_t flops,
                               std::uint64_t allocations, const std::string* budget_name,
                               std::uint64_t budget_uid) {
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
inline void forget_trace_names(std::uint64_t budget_uid) {
  trace_state& t = tracer();
  const bookkeeping own_allocations;
  std::lock_guard<std::mutex> lock(t.mutex);
  if (t.chunks.empty()) return;
  std::vector<std::pair<const std::string*, const std::string*>> copies;  // original -> copy
  auto copy_of = [&](const std::string* original) {
    for (const auto& [from, to] : copies)
      if (from == original) return to;
    const std::string* to = &t.names.emplace_back(*original);
    copies.emplace_back(original, to);
    return to;
  };
  for (const auto& chunk : t.chunks) {
    const std::size_t n = chunk->count.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) {
      trace_event& e = chunk->events[i];
      if (e.budget_uid != budget_uid) continue;
      e.budget = copy_of(e.budget);
      e.stage = copy_of(e.stage);
      e.budget_uid = 0;  // no live budget owns these names any more
    }
  }
}

}  // namespace frugal::detail
