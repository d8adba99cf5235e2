/// @file
/// oneTBB integration: parallel loops whose worker threads charge the scope that started them.
/// The caller's innermost scope travels to each task through frugal::attach. A loop given a
/// frugal::deadline_watchdog checks the hard deadline itself at every chunk.
#pragma once

#include <frugal/deadline.hpp>
#include <frugal/scope.hpp>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <stdexcept>
#include <type_traits>
#include <utility>

namespace frugal {

/// Wraps f so that, wherever it runs, it continues the scope open here and now. For
/// tbb::task_group::run, std::thread and the like:  tg.run(frugal::carry_scope([&] { ... }));
template <class F>
[[nodiscard]] auto carry_scope(F f) {
  return [ctx = current_context(), f = std::move(f)](auto&&... args) -> decltype(auto) {
    attach a{ctx};
    return f(std::forward<decltype(args)>(args)...);
  };
}

namespace detail {
// Every chunk continues the caller's scopes. The loop runs isolated: while it waits, the
// calling thread takes no unrelated outer task, which would otherwise run (and be charged)
// inside the caller's scope.
template <class Range, class Body, class... Extra>
void attached_parallel_for(const Range& range, const Body& body, Extra&&... extra) {
  const context ctx = current_context();
  tbb::this_task_arena::isolate([&] {
    tbb::parallel_for(
        range,
        [&](const Range& r) {
          attach a{ctx};
          body(r);
        },
        std::forward<Extra>(extra)...);
  });
}

// The same, bound to the watchdog's context, every chunk checking the deadline first.
template <class Range, class Body, class... Partitioner>
void deadline_checked_parallel_for(const Range& range, const Body& body, deadline_watchdog& watchdog,
                                   Partitioner&&... partitioner) {
  tbb::task_group_context* group = watchdog.bound_context();
  if (!group)
    throw std::invalid_argument(
        "frugal::parallel_for: the deadline_watchdog has no task_group_context to cancel "
        "(construct it as deadline_watchdog{budget, context})");
  const context ctx = current_context();
  tbb::this_task_arena::isolate([&] {
    tbb::parallel_for(
        range,
        [&](const Range& r) {
          if (watchdog.check()) return;  // past the deadline: the check cancelled the group
          attach a{ctx};
          body(r);
        },
        std::forward<Partitioner>(partitioner)..., *group);
  });
}

template <class T>
inline constexpr bool is_watchdog_v = std::is_same_v<std::decay_t<T>, deadline_watchdog>;
}  // namespace detail

/// tbb::parallel_for, with every chunk charged to the caller's innermost scope.
template <class Range, class Body>
void parallel_for(const Range& range, const Body& body) {
  detail::attached_parallel_for(range, body);
}

/// The same with a partitioner, or bound to a tbb::task_group_context (which a
/// deadline_watchdog cancels at the wall limit).
template <class Range, class Body, class PartitionerOrContext,
          std::enable_if_t<!std::is_integral_v<Range> && !detail::is_watchdog_v<PartitionerOrContext>, int> = 0>
void parallel_for(const Range& range, const Body& body, PartitionerOrContext&& extra) {
  detail::attached_parallel_for(range, body, std::forward<PartitionerOrContext>(extra));
}

/// Bound to the watchdog's context (it must have one: std::invalid_argument otherwise), and
/// every chunk first calls watchdog.check(): once the deadline has passed, the first chunk to
/// start cancels the group and does nothing, so a running worker stops the loop at its next
/// chunk even when the watchdog's own thread is still waiting for a CPU on a busy machine. The
/// check costs a clock read and a compare per chunk (it reads the budget only when its moment
/// passes: deadline_watchdog::check()), so keep chunks well above a microsecond -- as oneTBB
/// wants anyway.
///
///   tbb::task_group_context group;
///   frugal::deadline_watchdog watchdog{run, group};
///   frugal::parallel_for(range, body, watchdog);
template <class Range, class Body>
void parallel_for(const Range& range, const Body& body, deadline_watchdog& watchdog) {
  detail::deadline_checked_parallel_for(range, body, watchdog);
}

/// The same with a partitioner (simple_partitioner for one chunk per grain: the check runs at
/// every chunk boundary).
template <class Range, class Body, class Partitioner>
void parallel_for(const Range& range, const Body& body, Partitioner&& partitioner, deadline_watchdog& watchdog) {
  detail::deadline_checked_parallel_for(range, body, watchdog, std::forward<Partitioner>(partitioner));
}

/// The index form: f(i) for i in [first, last), chunked so the attach costs once per chunk.
template <class Index, class Function, std::enable_if_t<std::is_integral_v<Index>, int> = 0>
void parallel_for(Index first, Index last, const Function& f) {
  frugal::parallel_for(tbb::blocked_range<Index>(first, last), [&](const tbb::blocked_range<Index>& r) {
    for (Index i = r.begin(); i != r.end(); ++i) f(i);
  });
}

/// tbb::parallel_reduce (functional form), every chunk charged to the caller's innermost scope.
template <class Range, class Value, class RealBody, class Reduction>
[[nodiscard]] Value parallel_reduce(const Range& range, const Value& identity, const RealBody& body,
                                    const Reduction& reduction) {
  const context ctx = current_context();
  return tbb::this_task_arena::isolate([&] {
    return tbb::parallel_reduce(
        range, identity,
        [&](const Range& r, const Value& init) {
          attach a{ctx};
          return body(r, init);
        },
        reduction);
  });
}

}  // namespace frugal
