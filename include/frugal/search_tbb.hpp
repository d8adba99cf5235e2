/// @file
/// A search's trials run in parallel on oneTBB: each rung's trials as tasks, at most the
/// options' concurrency at once, each charged to its own child budget.
#pragma once

#include <frugal/search.hpp>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <cstddef>
#include <functional>

namespace frugal {

/// An executor for search::run: the rung's trials on an arena of `concurrency` threads (the
/// caller's included). Each trial runs isolated: a thread waiting inside one trial's parallel
/// work never picks up another trial, which would run inside the first one's scopes and charge
/// its stages. Work a trial hands to frugal::parallel_for shares the same threads.
[[nodiscard]] inline trial_executor tbb_trial_executor(std::size_t concurrency) {
  return [concurrency](std::size_t count, const std::function<void(std::size_t)>& task) {
    tbb::task_arena arena(static_cast<int>(concurrency));
    arena.execute([&] {
      tbb::parallel_for(
          tbb::blocked_range<std::size_t>(0, count, 1),
          [&](const tbb::blocked_range<std::size_t>& r) {
            for (std::size_t i = r.begin(); i != r.end(); ++i) tbb::this_task_arena::isolate([&] { task(i); });
          },
          tbb::simple_partitioner{});
    });
  };
}

/// Runs the search with options().concurrency() trials at once on oneTBB.
inline const search_result& run_parallel(search& s, const search::trial_function& f) {
  return s.run(f, tbb_trial_executor(s.options().concurrency()));
}

}  // namespace frugal
