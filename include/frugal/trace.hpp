/// @file
/// Opt-in tracing of scopes as Chrome trace events ("complete" events per thread), bounded in
/// memory, written as JSON that Perfetto UI and chrome://tracing open.
#pragma once

#include <frugal/clock.hpp>
#include <frugal/detail/json.hpp>
#include <frugal/detail/trace_log.hpp>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>

namespace frugal {

/// Starts recording every scope that closes, on every thread, up to max_events events (memory
/// is reserved in chunks of 1024 events of 64 bytes; later events are dropped and counted).
/// Closing a scope never throws nor terminates because of tracing: an event whose memory cannot
/// be allocated is dropped and counted too.
/// Starting again discards the previous recording: call it, and clear_trace(), while no scope
/// is open on another thread.
inline void start_tracing(std::size_t max_events = std::size_t{1} << 18) {
  if (max_events == 0)
    throw std::invalid_argument("frugal::start_tracing: max_events must be > 0, got 0");
  detail::trace_state& t = detail::tracer();
  const detail::bookkeeping own_allocations;
  {
    std::lock_guard<std::mutex> lock(t.mutex);
    t.chunks.clear();
    t.logs.clear();
    t.names.clear();
    t.generation.fetch_add(1, std::memory_order_relaxed);
    t.reserved.store(0, std::memory_order_relaxed);
    t.dropped.store(0, std::memory_order_relaxed);
    t.forgotten = 0;
    t.max_events.store(max_events, std::memory_order_relaxed);
    t.origin_ns = wall_now_ns();
  }
  detail::trace_enabled.store(true, std::memory_order_release);
}

/// Stops recording; what was recorded stays until the next start_tracing() or clear_trace().
inline void stop_tracing() noexcept { detail::trace_enabled.store(false, std::memory_order_release); }

/// Whether events are being recorded (between start_tracing() and stop_tracing()).
[[nodiscard]] inline bool tracing() noexcept { return detail::trace_enabled.load(std::memory_order_relaxed); }

/// How much the trace holds: read by trace_statistics().
struct trace_stats {
  /// Events recorded, over every thread.
  std::size_t events = 0;
  std::size_t dropped = 0;  ///< past max_events, or memory for them could not be allocated
};

/// Counts the events recorded and dropped since the last start_tracing() or clear_trace(); takes
/// the tracer's lock.
[[nodiscard]] inline trace_stats trace_statistics() {
  detail::trace_state& t = detail::tracer();
  std::lock_guard<std::mutex> lock(t.mutex);
  trace_stats s;
  for (const auto& c : t.chunks) s.events += c->count.load(std::memory_order_acquire);
  s.events -= t.forgotten;
  s.dropped = t.dropped.load(std::memory_order_relaxed);
  return s;
}

/// Frees the recording. Like start_tracing(): only while no scope is open on another thread.
inline void clear_trace() {
  stop_tracing();
  detail::trace_state& t = detail::tracer();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.chunks.clear();
  t.logs.clear();
  t.names.clear();
  t.generation.fetch_add(1, std::memory_order_relaxed);
  t.reserved.store(0, std::memory_order_relaxed);
  t.forgotten = 0;
}

/// The recording as a Chrome trace JSON object: one "X" (complete) event per scope, name = the
/// stage, cat = the budget, ts/dur in microseconds since start_tracing(), tid = frugal's thread
/// number, args = FLOPs and allocations charged inside. Safe while recording continues: events
/// appended meanwhile may or may not be included.
inline void write_chrome_trace(std::ostream& out) {
  detail::trace_state& t = detail::tracer();
  const detail::bookkeeping own_allocations;
  std::lock_guard<std::mutex> lock(t.mutex);
  detail::json_writer w(out);
  w.begin_object().key("traceEvents").begin_array();
  std::set<std::uint64_t> threads;
  for (const auto& log : t.logs) {
    threads.insert(log->thread_id);
    for (const detail::trace_chunk* c = log->head; c; c = c->next.load(std::memory_order_acquire)) {
      const std::size_t n = c->count.load(std::memory_order_acquire);
      for (std::size_t i = 0; i < n; ++i) {
        const detail::trace_event& e = c->events[i];
        if (!e.stage) continue;  // dropped after it was recorded
        w.begin_object()
            .member("name", *e.stage)
            .member("cat", *e.budget)
            .member("ph", "X")
            .member("ts", static_cast<double>(e.start_ns - t.origin_ns) / 1e3)
            .member("dur", static_cast<double>(e.duration_ns) / 1e3)
            .member("pid", 1)
            .member("tid", log->thread_id);
        w.key("args").begin_object().member("flops", e.flops).member("allocations", e.allocations);
        if (e.continued) w.member("continued", true);
        w.end_object().end_object();
      }
    }
  }
  for (std::uint64_t id : threads) {
    w.begin_object().member("name", "thread_name").member("ph", "M").member("pid", 1).member("tid", id);
    w.key("args").begin_object().member("name", "frugal thread " + std::to_string(id)).end_object().end_object();
  }
  w.end_array().member("displayTimeUnit", "ms");
  w.key("otherData").begin_object().member("dropped_events", static_cast<std::uint64_t>(t.dropped.load()));
  w.end_object().end_object();
}

}  // namespace frugal
