/// @file
/// RAII scopes that charge a stage of a budget, and the way to carry an open scope to other
/// threads (frugal::attach) so work a oneTBB worker does for it is charged to it.
#pragma once

#include <frugal/budget.hpp>
#include <frugal/clock.hpp>
#include <frugal/config.hpp>
#include <frugal/detail/ledger.hpp>
#include <frugal/detail/trace_log.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace frugal {
namespace detail {

[[nodiscard]] inline std::size_t cache_index(std::uint64_t uid, std::uintptr_t key) noexcept {
  const std::uint64_t h = uid * 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(key) * 0xC2B2AE3D27D4EB4Full;
  return static_cast<std::size_t>(h >> 32) & (FRUGAL_THREAD_CACHE_SIZE - 1);
}

[[nodiscard]] inline std::uint64_t hash_name(std::string_view name) noexcept {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

// The slow path of a stage lookup: runs once per (thread, budget, stage) and on cache misses.
FRUGAL_NOINLINE inline void fill_cache(cache_entry& e, budget& b, std::uintptr_t key, stage_key_kind kind,
                                       std::string_view name, std::uint32_t index) {
  const bookkeeping own_allocations;
  thread_block* blk = budget_access::block_for(b, current_thread_id());
  if (kind != stage_key_kind::by_index) index = budget_access::stage_index(b, name);
  stage_slot* slot = budget_access::slot_for(b, *blk, index);
  e = cache_entry{budget_access::uid(b), key, kind, static_cast<std::uint32_t>(slot->name->size()),
                  slot->name->c_str(), blk, slot};
}

[[nodiscard]] inline cache_entry& named_slot(budget& b, std::string_view name) {
  const std::uint64_t uid = budget_access::uid(b);
  const auto key = static_cast<std::uintptr_t>(hash_name(name));
  cache_entry& e = this_thread.cache[cache_index(uid, key)];
  // The hash may collide; the interned name settles it.
  if (e.budget_uid != uid || e.key != key || e.kind != stage_key_kind::by_name || e.name_size != name.size() ||
      std::memcmp(e.name, name.data(), name.size()) != 0)
    fill_cache(e, b, key, stage_key_kind::by_name, name, 0);
  return e;
}

// The length of the name in a char array of n bytes: up to its first NUL, or all n bytes.
[[nodiscard]] inline std::size_t array_name_length(const char* name, std::size_t n) noexcept {
  const void* nul = std::memchr(name, '\0', n);
  return nul ? static_cast<std::size_t>(static_cast<const char*>(nul) - name) : n;
}

// A name in a char array that is not the array's exact content up to its last byte ("ab" in
// char[8], or no terminator): looked up by content.
FRUGAL_NOINLINE inline cache_entry& array_slot_slow(cache_entry& e, budget& b, const char* name, std::size_t n) {
  const std::string_view content(name, array_name_length(name, n));
  if (content.empty()) throw std::invalid_argument("frugal::scope: stage name must not be empty, got ''");
  if (content.size() != n - 1) return named_slot(b, content);
  fill_cache(e, b, reinterpret_cast<std::uintptr_t>(name), stage_key_kind::literal, content, 0);
  return e;
}

// A const char array (usually a string literal): found by address, then confirmed by content,
// since an array filled at run time can hold another name at the same address. The compare
// is of N bytes, N known at compile time (the name and its terminator against the interned
// name's): a few loads for the usual name, no strlen.
template <std::size_t N>
[[nodiscard]] inline cache_entry& array_slot(budget& b, const char (&name)[N]) {
  const std::uint64_t uid = budget_access::uid(b);
  const auto key = reinterpret_cast<std::uintptr_t>(name);
  cache_entry& e = this_thread.cache[cache_index(uid, key)];
  if (FRUGAL_LIKELY(e.budget_uid == uid && e.key == key && e.kind == stage_key_kind::literal &&
                    e.name_size == N - 1 && std::memcmp(e.name, name, N) == 0))
    return e;
  return array_slot_slow(e, b, name, N);
}

[[nodiscard]] inline cache_entry& indexed_slot(budget& b, std::uint32_t index) {
  const std::uint64_t uid = budget_access::uid(b);
  const std::uintptr_t key = index;
  cache_entry& e = this_thread.cache[cache_index(uid, key)];
  if (e.budget_uid != uid || e.key != key || e.kind != stage_key_kind::by_index)
    fill_cache(e, b, key, stage_key_kind::by_index, {}, index);
  return e;
}

// Pushing and popping a frame are the whole hot path of a scope: a clock read, a flush of
// this thread's pending counters, the frame link, and the budget's activation count.
inline void push_frame(frame& f, const cache_entry& e, bool counts_call) noexcept {
  thread_state& ts = this_thread;
  flush_pending(ts);
  f.prev = ts.current;
  f.block = e.block;
  f.stage = e.stage;
  f.counts_call = counts_call;
  f.counts_stage = e.stage->open++ == 0;
  f.at_enter = ts.counters;
  f.live_at_enter = ts.heap.live();
  f.outer_live_high = ts.heap.live_high;
  ts.heap.live_high = f.live_at_enter;
  ts.current = &f;
  f.start_ns = wall_now_ns();
  budget_access::open(*f.block, f.start_ns);
}

inline void pop_frame(frame& f) noexcept {
  const std::int64_t end_ns = wall_now_ns();
  thread_state& ts = this_thread;
  FRUGAL_ASSERT(ts.current == &f, "scopes must close in reverse order, on the thread that opened them");
  flush_pending(ts);
  stage_slot& s = *f.stage;
  --s.open;
  const thread_counters& now = ts.counters;
  // A stage re-entered on this thread (a recursive layer, or a worker's scope inside the one
  // it continues) is charged by its outermost scope alone, which spans the inner ones.
  if (f.counts_stage) {
    if (f.counts_call) {
      s.calls.add(1);
      s.wall_ns.add(end_ns - f.start_ns);
    }
    if (const auto d = now.flops - f.at_enter.flops) s.flops.add(d);
    if (const auto d = now.allocations - f.at_enter.allocations) s.allocations.add(d);
    if (const auto d = now.alloc_bytes - f.at_enter.alloc_bytes) s.alloc_bytes.add(d);
    if (const auto growth = ts.heap.live_high - f.live_at_enter; growth > s.peak_growth.get())
      s.peak_growth.value.store(growth, std::memory_order_relaxed);
  }
  if (f.outer_live_high > ts.heap.live_high) ts.heap.live_high = f.outer_live_high;
  if (FRUGAL_UNLIKELY(trace_enabled.load(std::memory_order_relaxed))) {
    const budget& b = *f.block->owner;
    record_trace_event(f, end_ns, now.flops - f.at_enter.flops, now.allocations - f.at_enter.allocations,
                       &b.name(), budget_access::uid(b));
  }
  ts.current = f.prev;
  budget_access::close(*f.block, end_ns);
}
}  // namespace detail

/// Measures one stage of a budget while alive: wall time, FLOPs and units added on this thread,
/// (with the allocation hooks) heap allocations. Charges the budget, its ancestors and the
/// stage once each, also when closed by an exception. Scopes nest; close them on the thread
/// that opened them, in reverse order (RAII does this), and before their budget is destroyed.
class scope {
 public:
  /// A string literal (the usual case) is looked up by address, then its N bytes are compared
  /// with the cached name: a few ns after first use. An array filled at run time may hold
  /// another name at the same address later, and then maps to that name's stage.
  template <std::size_t N>
  scope(budget& b, const char (&stage)[N]) {
    static_assert(N > 1, "frugal::scope: stage name must not be empty");
    detail::push_frame(frame_, detail::array_slot(b, stage), true);
  }
  /// A mutable buffer may change between uses, so it is looked up by content.
  template <std::size_t N>
  scope(budget& b, char (&stage)[N]) : scope(b, std::string_view(stage, detail::array_name_length(stage, N))) {}
  /// Any other name (std::string, const char*) is looked up by content: a hash, then a compare.
  scope(budget& b, std::string_view stage) {
    if (stage.empty()) throw std::invalid_argument("frugal::scope: stage name must not be empty, got ''");
    detail::push_frame(frame_, detail::named_slot(b, stage), true);
  }
  /// A scope whose stage is named after the budget.
  explicit scope(budget& b) : scope(b, std::string_view(b.name())) {}

  ~scope() { detail::pop_frame(frame_); }

  scope(const scope&) = delete;
  scope& operator=(const scope&) = delete;

  /// The budget the scope charges.
  [[nodiscard]] budget& target() const noexcept { return *frame_.block->owner; }
  /// The stage the scope charges (the budget's name when none was given).
  [[nodiscard]] const std::string& stage() const noexcept { return *frame_.stage->name; }
  /// Wall time since the scope opened.
  [[nodiscard]] double elapsed_seconds() const noexcept {
    return static_cast<double>(wall_now_ns() - frame_.start_ns) / 1e9;
  }

 private:
  detail::frame frame_;
};

/// The scopes open on a thread when it was captured (innermost last): what a thread working for
/// them must continue. Capture it on the thread that opened the scopes, hand it to the threads
/// working for them, and keep those scopes (and their budgets) open until the work is done.
class context {
 public:
  context() = default;
  /// Whether no scope was open when the context was captured (attaching to it does nothing).
  [[nodiscard]] bool empty() const noexcept { return depth_ == 0; }
  /// The innermost scope's budget and stage: where the work's charges land.
  [[nodiscard]] budget* target() const noexcept { return depth_ ? chain_[depth_ - 1].target : nullptr; }
  /// The innermost scope's stage name; empty when the context is empty.
  [[nodiscard]] std::string stage() const {
    return depth_ ? detail::budget_access::stage_name(*chain_[depth_ - 1].target, chain_[depth_ - 1].stage_index)
                  : std::string();
  }
  /// How many scopes the context carries (at most FRUGAL_MAX_CONTEXT_DEPTH).
  [[nodiscard]] std::size_t depth() const noexcept { return depth_; }

 private:
  friend class attach;
  friend context current_context() noexcept;
  struct link {
    budget* target;
    std::uint32_t stage_index;
  };
  std::array<link, FRUGAL_MAX_CONTEXT_DEPTH> chain_{};  ///< outermost first
  std::size_t depth_ = 0;
};

/// The innermost FRUGAL_MAX_CONTEXT_DEPTH scopes open on the calling thread.
[[nodiscard]] inline context current_context() noexcept {
  context ctx;
  std::size_t n = 0;
  for (const detail::frame* f = detail::this_thread.current; f && n < FRUGAL_MAX_CONTEXT_DEPTH; f = f->prev) ++n;
  ctx.depth_ = n;
  for (const detail::frame* f = detail::this_thread.current; n > 0; f = f->prev)
    ctx.chain_[--n] = context::link{f->block->owner, f->stage->index};
  return ctx;
}

/// While alive, the calling thread continues ctx's scopes: its FLOPs, units and allocations are
/// charged to the innermost one's budget, and to every one of their stages (a stage includes
/// the work other threads did inside it), and the budgets count as active (wall, CPU) on it.
/// It adds no call and no wall time to the stages: the scopes that opened them have those.
/// Scopes of ctx already open on this thread (a TBB caller running its own task, nested
/// parallel loops) are not opened twice, so nothing is charged twice. An empty context attaches
/// to nothing.
class attach {
 public:
  /// Continues ctx's scopes on the calling thread until destroyed (the scopes already open here are
  /// skipped).
  explicit attach(const context& ctx) {
    for (std::size_t i = 0; i < ctx.depth_; ++i) {
      const context::link& l = ctx.chain_[i];
      if (open_on_this_thread(l)) continue;
      detail::push_frame(frames_[pushed_], detail::indexed_slot(*l.target, l.stage_index), false);
      ++pushed_;
    }
  }
  ~attach() {
    while (pushed_ > 0) detail::pop_frame(frames_[--pushed_]);
  }
  attach(const attach&) = delete;
  attach& operator=(const attach&) = delete;

  /// Whether this thread took on any of the context's scopes (false where it already had them).
  [[nodiscard]] bool attached() const noexcept { return pushed_ > 0; }

 private:
  static bool open_on_this_thread(const context::link& l) noexcept {
    for (const detail::frame* f = detail::this_thread.current; f; f = f->prev)
      if (f->block->owner == l.target && f->stage->index == l.stage_index) return true;
    return false;
  }
  std::array<detail::frame, FRUGAL_MAX_CONTEXT_DEPTH> frames_;
  std::size_t pushed_ = 0;
};

}  // namespace frugal
