// Guide 7: a hard deadline under the forecast, for what the forecast cannot see.
//
//   guide_hard_deadline [LIMITS] [STEPS] [STALL_MS]   LIMITS in frugal's syntax, default "wall=2s";
//                                                     STEPS between evaluations, default 20;
//                                                     STALL_MS, default 0: no stall
//
// Trains like guide 1, stopped by the controller's forecast before the wall limit. Evaluations
// run on the test images in parallel chunks through a frugal::abandonable_loop, and a
// frugal::deadline_watchdog is the hard deadline: if work that nobody forecast runs past the
// limit, the loop is abandoned at once, the run is cancelled, and the job ends with the last
// evaluation it completed. STALL_MS > 0 makes every evaluation chunk after the first evaluation
// sleep that long first -- a stalled disk, a throttled node -- so an evaluation runs
// far past its forecast and into the limit. Walkthrough: README.md here.
#include "../model.hpp"

#include <frugal/abandonable_loop.hpp>
#include <frugal/deadline.hpp>
#include <frugal/frugal.hpp>
#include <frugal/report.hpp>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {
// Milliseconds of the budget's wall time past its limit (negative: before it).
double ms_past_limit(const frugal::budget& run, double limit_s) {
  return (run.used(frugal::resource::wall) - limit_s) * 1e3;
}
}  // namespace

int main(int argc, char** argv) {
  const std::string limits = argc > 1 ? argv[1] : "wall=2s";
  const int eval_every = argc > 2 ? std::stoi(argv[2]) : 20;
  const int stall_ms = argc > 3 ? std::stoi(argv[3]) : 0;
  const guide::data data = guide::load_fashion_mnist(10000, 0, 2000);
  guide::mlp model(64);
  const Eigen::Index batch = 64;

  frugal::budget run{"train", frugal::limits::parse(limits)};
  frugal::budget& eval = run.child("eval");
  const double limit_s = run.limits().get(frugal::resource::wall).value_or(0);
  frugal::controller ctl{run, frugal::controller_options{}.steps_per_epoch(eval_every)};
  const frugal::linear_decay lr{0.1, run};

  // The hard deadline. Its thread sleeps until run's wall time reaches the limit, then sets its
  // flag and cancels `group`, the task group of the parallel loops. cancel_on turns the flag
  // into a `cancelled (deadline)` decision at the next checkpoint, which no callback can veto.
  tbb::task_group_context group;
  frugal::deadline_watchdog watchdog{run, group};
  ctl.cancel_on(watchdog.stop_flag(), frugal::stop_reason::deadline, [&watchdog] { return watchdog.describe(); });

  // What an evaluation's chunks write: one score per chunk. Declared before the loop, so that
  // the loop, destroyed first, waits for any chunk still writing here before it is freed.
  constexpr int chunks = 8;
  std::vector<guide::scores> parts(chunks);
  std::vector<char> part_done(chunks);
  int evaluations = 0;
  // The evaluation's chunks run on the loop's own thread and oneTBB's workers; each checks the
  // deadline before it starts, and run() returns false at the deadline without waiting for the
  // chunks already running.
  frugal::abandonable_loop loop{watchdog};

  guide::scores last;  // the last complete evaluation: the result of the run
  bool abandoned = false;
  double returned_past_limit_ms = 0;  // when run() gave up the evaluation, after the limit
  std::int64_t returned_ns = 0;        // the same moment on frugal's wall clock
  Eigen::Index next = 0;
  {
    frugal::scope whole{run, "training"};
    while (!ctl.should_stop()) {
      bool evaluate = true;
      for (int s = 0; s < eval_every; ++s) {
        const Eigen::Index n = std::min(batch, data.train.size() - next);
        double loss = 0;
        {
          frugal::scope step{run, "step"};
          loss = model.backward(data.train, next, n);
          model.update(lr());
        }
        next = (next + n) % data.train.size();
        const frugal::decision d = ctl.end_step(frugal::step{}.loss(loss).samples(static_cast<std::size_t>(n)));
        if (d.stops()) {
          evaluate = false;
          break;
        }
        if (d.ends_epoch()) break;
      }
      if (!evaluate) break;

      const bool stalled = stall_ms > 0 && evaluations >= 1;
      const Eigen::Index per_chunk = data.test.size() / chunks;
      std::fill(part_done.begin(), part_done.end(), 0);
      bool complete = false;
      {
        frugal::scope s{eval, "evaluate"};
        // The body is copied into the loop. By reference it takes only what outlives the loop
        // (declared before it); this iteration's values go by value: an abandoned chunk still
        // reads them after the iteration, and its locals, are gone.
        complete = loop.run(
            tbb::blocked_range<int>(0, chunks, 1),
            [&parts, &part_done, &model, &data, stalled, stall_ms, per_chunk](const tbb::blocked_range<int>& r) {
              for (int c = r.begin(); c != r.end(); ++c) {
                if (stalled) std::this_thread::sleep_for(std::chrono::milliseconds(stall_ms));
                const Eigen::Index first = c * per_chunk;
                const Eigen::Index n = c + 1 == chunks ? data.test.size() - first : per_chunk;
                parts[static_cast<std::size_t>(c)] = model.evaluate(data.test, first, n);
                part_done[static_cast<std::size_t>(c)] = 1;
              }
            },
            tbb::simple_partitioner{});
      }
      if (!complete) {
        // Past the hard deadline: the chunks still running write `parts`, so leave it alone and
        // keep the last complete evaluation. The next checkpoint says why the run ends.
        abandoned = true;
        returned_ns = frugal::wall_now_ns();
        returned_past_limit_ms = ms_past_limit(run, limit_s);
        (void)ctl.end_epoch();
        break;
      }
      last = guide::scores{};
      for (const guide::scores& p : parts) last += p;
      ++evaluations;
      std::printf("evaluation %d at %.3f s: test accuracy %.4f%s\n", evaluations, run.used(frugal::resource::wall),
                  last.accuracy, stalled ? " (stalled)" : "");
      (void)ctl.end_epoch();
    }
  }
  (void)ctl.end_run();

  std::printf("\nstopped: %s\n", ctl.stop_message().c_str());
  if (abandoned) {
    const double fired_past_limit_ms =
        returned_past_limit_ms - static_cast<double>(returned_ns - watchdog.fired_at_ns().value_or(returned_ns)) * 1e-6;
    std::printf("evaluation %d abandoned at the hard deadline: it fired %.2f ms after the limit, run() returned %.2f ms after it\n",
                evaluations + 1, fired_past_limit_ms, returned_past_limit_ms);
  }
  std::printf("wall used: %.3f s of %.3f s (%d evaluation%s, %llu steps)\n", run.used(frugal::resource::wall), limit_s,
              evaluations, evaluations == 1 ? "" : "s", static_cast<unsigned long long>(ctl.steps()));
  std::printf("final test accuracy: %.4f (the last complete evaluation)\n", last.accuracy);

  // The report is written while the abandoned chunks may still run: nothing here reads `parts`.
  std::printf("\n");
  frugal::print_report(std::cout, run);

  // Before `parts` could be reused or freed: wait for the abandoned chunks.
  const auto join_start = std::chrono::steady_clock::now();
  loop.join();
  if (abandoned) {
    int ended = 0;
    for (const char done : part_done) ended += done;
    std::printf("\nthe abandoned chunks ended %.1f ms after the report was written (%d of %d chunks ran)\n",
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - join_start).count(),
                ended, chunks);
  }
  return evaluations > 0 ? 0 : 1;
}
