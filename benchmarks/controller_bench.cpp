// The controller measured: the cost of end_step against the budget reads it makes, the overshoot
// study (20 runs of real Eigen GEMM steps of random size under a real wall limit: end - limit and
// budget utilisation), and the hard deadline's stop latency during a long parallel step.
#include <frugal/abandonable_loop.hpp>
#include <frugal/controller.hpp>
#include <frugal/deadline.hpp>
#include <frugal/scope.hpp>
#include <frugal/tbb.hpp>

#include <Eigen/Dense>
#include <benchmark/benchmark.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

constexpr auto never = std::chrono::hours(24 * 365);

// ---------------------------------------------------------------------------------------------
// end_step: what it costs, next to the budget reads it is made of.

void budget_used_wall(benchmark::State& state) {
  frugal::budget run{"run", frugal::limits{}.wall(never)};
  frugal::scope all{run, "all"};
  for (auto _ : state) benchmark::DoNotOptimize(run.used(frugal::resource::wall));
}
BENCHMARK(budget_used_wall);

void budget_used_flops(benchmark::State& state) {
  frugal::budget run{"run", frugal::limits{}.wall(never).flops(1e30)};
  frugal::scope all{run, "all"};
  for (auto _ : state) benchmark::DoNotOptimize(run.used(frugal::resource::flops));
}
BENCHMARK(budget_used_flops);

void budget_snapshot(benchmark::State& state) {
  frugal::budget run{"run", frugal::limits{}.wall(never).flops(1e30).units("samples", 1e30)};
  frugal::scope all{run, "all"};
  frugal::add_units("samples", 1);
  for (auto _ : state) {
    auto u = run.snapshot();
    benchmark::DoNotOptimize(u);
  }
}
BENCHMARK(budget_snapshot);

// The usual case: a wall limit only (the wall is read lock-free).
void end_step_wall_limit(benchmark::State& state) {
  frugal::budget run{"run", frugal::limits{}.wall(never)};
  frugal::scope all{run, "all"};
  frugal::controller ctl{run};
  for (auto _ : state) {
    frugal::decision d = ctl.end_step();
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(end_step_wall_limit);

// A managed batch and the step record the issue shows.
void end_step_wall_limit_batch_and_record(benchmark::State& state) {
  frugal::budget run{"run", frugal::limits{}.wall(never)};
  frugal::scope all{run, "all"};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64)};
  for (auto _ : state) {
    frugal::decision d = ctl.end_step(frugal::step{}.loss(0.5).samples(64));
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(end_step_wall_limit_batch_and_record);

// Wall and FLOPs: one extra used() (the budget's mutex and a walk of its thread blocks).
void end_step_wall_and_flops(benchmark::State& state) {
  frugal::budget run{"run", frugal::limits{}.wall(never).flops(1e30)};
  frugal::scope all{run, "all"};
  frugal::controller ctl{run};
  for (auto _ : state) {
    frugal::add_flops(1000);
    frugal::decision d = ctl.end_step();
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(end_step_wall_and_flops);

// Wall, FLOPs and a user unit: one snapshot() (it allocates its units vector).
void end_step_wall_flops_samples(benchmark::State& state) {
  frugal::budget run{"run", frugal::limits{}.wall(never).flops(1e30).units("samples", 1e30)};
  frugal::scope all{run, "all"};
  frugal::controller ctl{run};
  for (auto _ : state) {
    frugal::add_flops(1000);
    frugal::add_units("samples", 64);
    frugal::decision d = ctl.end_step();
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(end_step_wall_flops_samples);

// A CPU limit reads the thread CPU clock: a system call on virtual machines.
void end_step_with_cpu_limit(benchmark::State& state) {
  frugal::budget run{"run", frugal::limits{}.wall(never).cpu(never)};
  frugal::scope all{run, "all"};
  frugal::controller ctl{run};
  for (auto _ : state) {
    frugal::decision d = ctl.end_step();
    benchmark::DoNotOptimize(d);
  }
}
BENCHMARK(end_step_with_cpu_limit);

// Three callbacks with step-end and decision hooks.
void end_step_three_callbacks(benchmark::State& state) {
  frugal::budget run{"run", frugal::limits{}.wall(never)};
  frugal::scope all{run, "all"};
  frugal::controller ctl{run};
  std::uint64_t seen = 0;
  struct counter {
    std::uint64_t* n;
    void operator()(const frugal::step_end_event&) { ++*n; }
    void operator()(frugal::decision_event& e) { *n += e.decision.is_continue() ? 1 : 0; }
  };
  ctl.add_callback("a", counter{&seen}).add_callback("b", counter{&seen}).add_callback("c", counter{&seen});
  for (auto _ : state) {
    frugal::decision d = ctl.end_step();
    benchmark::DoNotOptimize(d);
  }
  benchmark::DoNotOptimize(seen);
}
BENCHMARK(end_step_three_callbacks);

// ---------------------------------------------------------------------------------------------
// The overshoot study.

struct quantiles {
  double min, median, p90, max;
};
quantiles quantiles_of(std::vector<double> v) {
  if (v.empty()) return {0, 0, 0, 0};
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5)]; };
  return {v.front(), at(0.5), at(0.9), v.back()};
}

// 20 runs under a 300 ms wall limit; a step multiplies two random n x n matrices, n uniform in
// [160, 256] (a step time spread of about 4x). The budget's wall is the run's elapsed time (a
// scope is open around the whole loop), so end - limit is what a user would see.
// Argument: the margin in percent.
void overshoot_study(benchmark::State& state) {
  const double margin = static_cast<double>(state.range(0)) / 100.0;
  constexpr int runs = 20;
  constexpr double limit = 0.300;
  std::vector<double> over_ms, over_pct, over_steps, over_last, utilisation, steps;
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int> size(160, 256);
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(256, 256), b = Eigen::MatrixXf::Random(256, 256);
  Eigen::MatrixXf c(256, 256);
  for (auto _ : state) {
    for (int r = 0; r < runs; ++r) {
      frugal::budget run{"train", frugal::limits{}.wall(std::chrono::duration<double>(limit))};
      // A step, as the controller sees it, is everything between two checkpoints.
      double last_step = 0, step_sum = 0;
      int n_steps = 0;
      {
        frugal::scope all{run, "train"};
        frugal::controller ctl{run, frugal::controller_options{}.margin(margin)};
        std::int64_t checkpoint = frugal::wall_now_ns();
        while (!ctl.should_stop()) {
          const int n = size(rng);
          {
            frugal::scope s{run, "step"};
            c.topLeftCorner(n, n).noalias() = a.topLeftCorner(n, n) * b.topLeftCorner(n, n);
            frugal::add_flops(2ull * n * n * n);
            benchmark::DoNotOptimize(c.data());
          }
          (void)ctl.end_step();
          const std::int64_t now = frugal::wall_now_ns();
          last_step = static_cast<double>(now - checkpoint) * 1e-9;
          checkpoint = now;
          step_sum += last_step;
          ++n_steps;
        }
      }
      const double used = run.used(frugal::resource::wall);
      const double over = used - limit;
      over_ms.push_back(over * 1e3);
      over_pct.push_back(over / limit * 100);
      over_steps.push_back(over / (step_sum / n_steps));
      over_last.push_back(over / last_step);
      utilisation.push_back(std::min(used, limit) / limit * 100);
      steps.push_back(n_steps);
    }
  }
  const quantiles o = quantiles_of(over_ms), p = quantiles_of(over_pct), s = quantiles_of(over_steps);
  const quantiles l = quantiles_of(over_last);
  const quantiles u = quantiles_of(utilisation), n = quantiles_of(steps);
  state.counters["over_ms_median"] = o.median;
  state.counters["over_ms_max"] = o.max;
  state.counters["over_pct_max"] = p.max;
  state.counters["over_steps_max"] = s.max;
  state.counters["over_last_steps_max"] = l.max;
  state.counters["runs_over"] = static_cast<double>(std::count_if(over_ms.begin(), over_ms.end(), [](double x) { return x > 0; }));
  state.counters["util_pct_min"] = u.min;
  state.counters["util_pct_median"] = u.median;
  state.counters["steps_median"] = n.median;
  std::fprintf(stderr,
               "overshoot study, margin %.0f %%, %zu runs of %.0f ms (min / median / p90 / max):\n"
               "  end - limit      %8.3f %8.3f %8.3f %8.3f ms\n"
               "  end - limit      %8.3f %8.3f %8.3f %8.3f %% of the limit\n"
               "  end - limit      %8.3f %8.3f %8.3f %8.3f mean steps\n"
               "  end - limit      %8.3f %8.3f %8.3f %8.3f last steps (the bound: < 1)\n"
               "  utilisation      %8.2f %8.2f %8.2f %8.2f %%\n"
               "  steps            %8.0f %8.0f %8.0f %8.0f\n",
               margin * 100, over_ms.size(), limit * 1e3, o.min, o.median, o.p90, o.max, p.min, p.median, p.p90, p.max,
               s.min, s.median, s.p90, s.max, l.min, l.median, l.p90, l.max, u.min, u.median, u.p90, u.max, n.min, n.median, n.p90, n.max);
}
BENCHMARK(overshoot_study)->Arg(0)->Arg(5)->Iterations(1)->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------------------------
// Stop latency of the hard deadline.

// Load K: K busy-loop processes beside the benchmark, forked from it (same session, cgroup and
// autogroup as the benchmark, nice 0, pinned nowhere), each always runnable, started 200 ms
// before the first run. Processes, not threads: they stand for other jobs on the machine, stay
// out of this process's CPU clock and of oneTBB's view of it, and -- in the same autogroup --
// the scheduler weighs them exactly as the benchmark's own threads (a loop started from another
// terminal would sit in another autogroup, which Linux shares the CPUs with as one unit). Pinned
// nowhere, so the scheduler balances them as it would a real load. With the benchmark's own two
// oneTBB threads, load 4 on this 2-vCPU machine is 6 runnable threads on 2 CPUs; the output
// says how many tasks were runnable machine-wide (procs_running, /proc/stat) just before each
// step, the loops and whatever else runs included. A child only spins (no lock, no allocation:
// it was forked from a multi-threaded process) and dies with the benchmark (PR_SET_PDEATHSIG).
class busy_loops {
 public:
  explicit busy_loops(int k) {
    for (int i = 0; i < k; ++i) {
      const pid_t pid = ::fork();
      if (pid == 0) {
        (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
        volatile std::uint64_t x = 0;
        for (;;) x = x + 1;
      }
      if (pid > 0) pids_.push_back(pid);
    }
    // Let the scheduler see them as long-running before anything is measured.
    if (k > 0) std::this_thread::sleep_for(200ms);
  }
  ~busy_loops() {
    for (const pid_t pid : pids_) ::kill(pid, SIGKILL);
    for (const pid_t pid : pids_) ::waitpid(pid, nullptr, 0);
  }
  busy_loops(const busy_loops&) = delete;
  busy_loops& operator=(const busy_loops&) = delete;

 private:
  std::vector<pid_t> pids_;
};

// Tasks runnable on the machine now (this thread included); 0 where /proc/stat is unreadable.
int procs_running() {
  int n = 0;
  if (std::FILE* f = std::fopen("/proc/stat", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "procs_running %d", &n) == 1) break;
    std::fclose(f);
  }
  return n;
}

// A parallel step far longer than the 20 ms limit: chunks of a 48 x 48 GEMM each (tens of us).
// Latency = when parallel_for returns - when the budget's wall reached the limit (the scope
// opened on a fresh budget, so that is open time + limit); also when the deadline fired (the
// watchdog's thread, or a chunk's check), and when the last chunk ended (the rest of the return
// latency is the calling thread getting back onto a CPU). Argument: load K (busy_loops above).
// deadline_stop_latency: tbb::parallel_for(range, body, ctx), the watchdog's thread alone.
// deadline_stop_latency_checked: frugal::parallel_for(range, body, watchdog), every chunk
// checking the deadline itself (deadline_watchdog::check()).
// deadline_stop_latency_abandonable: frugal::abandonable_loop::run(range, body), the same loop on
// the abandonable_loop's thread, the caller asleep until the loop ends or the deadline fires;
// "returns" is when run() returns, and the chunks in flight then end in the background.
enum class stop_path { watchdog, checked, abandonable };
template <stop_path path>
void deadline_stop_latency_impl(benchmark::State& state) {
  constexpr int runs = 20;
  constexpr double limit_s = 0.020;
  const int load = static_cast<int>(state.range(0));
  std::vector<double> return_us, wake_us, chunk_us;
  double runnable = 0;
  for (auto _ : state) {
    busy_loops loops{load};
    for (int r = 0; r < runs; ++r) {
      frugal::budget run{"train", frugal::limits{}.wall(std::chrono::duration<double>(limit_s))};
      tbb::task_group_context ctx;
      frugal::deadline_watchdog watchdog{run, ctx};
      frugal::abandonable_loop loop{watchdog};
      std::int64_t opened = 0, returned = 0;
      std::atomic<std::int64_t> last_chunk_end{0};
      const auto chunk = [&](const tbb::blocked_range<int>&) {
        Eigen::Matrix<float, 48, 48> x = Eigen::Matrix<float, 48, 48>::Random();
        Eigen::Matrix<float, 48, 48> y = x * x;
        benchmark::DoNotOptimize(y.data());
        const std::int64_t end = frugal::wall_now_ns();
        std::int64_t seen = last_chunk_end.load(std::memory_order_relaxed);
        while (seen < end && !last_chunk_end.compare_exchange_weak(seen, end, std::memory_order_relaxed)) {
        }
      };
      const tbb::blocked_range<int> range(0, 10'000'000, 1);
      runnable += procs_running();
      {
        frugal::scope step{run, "step"};
        opened = frugal::wall_now_ns();
        if constexpr (path == stop_path::abandonable)
          (void)loop.run(range, chunk, tbb::simple_partitioner());
        else if constexpr (path == stop_path::checked)
          frugal::parallel_for(range, chunk, tbb::simple_partitioner(), watchdog);
        else
          tbb::parallel_for(range, chunk, tbb::simple_partitioner(), ctx);
        returned = frugal::wall_now_ns();
      }
      loop.join();  // the abandoned chunks: last_chunk_end is final after this
      const double deadline = static_cast<double>(opened) + limit_s * 1e9;
      return_us.push_back((static_cast<double>(returned) - deadline) * 1e-3);
      // No chunk at all ends when the deadline fired before the first one did (a machine so busy
      // that the step got no CPU for the whole limit).
      if (const std::int64_t end = last_chunk_end.load(); end != 0)
        chunk_us.push_back((static_cast<double>(end) - deadline) * 1e-3);
      if (const auto fired = watchdog.fired_at_ns()) wake_us.push_back((static_cast<double>(*fired) - deadline) * 1e-3);
    }
  }
  runnable /= static_cast<double>(std::max<std::size_t>(return_us.size(), 1));
  const quantiles ret = quantiles_of(return_us), wake = quantiles_of(wake_us), chunk = quantiles_of(chunk_us);
  state.counters["return_us_min"] = ret.min;
  state.counters["return_us_median"] = ret.median;
  state.counters["return_us_p90"] = ret.p90;
  state.counters["return_us_max"] = ret.max;
  state.counters["fire_us_median"] = wake.median;
  state.counters["fire_us_p90"] = wake.p90;
  state.counters["fire_us_max"] = wake.max;
  std::fprintf(stderr,
               "deadline stop latency%s, load %d (%.1f tasks runnable), %zu runs, limit %.0f ms (min / median / p90 / max):\n"
               "  deadline fires   %8.1f %8.1f %8.1f %8.1f us after the limit\n"
               "  last chunk ends  %8.1f %8.1f %8.1f %8.1f us after the limit\n"
               "  the loop returns %8.1f %8.1f %8.1f %8.1f us after the limit\n",
               path == stop_path::abandonable ? " (abandonable loop)" : path == stop_path::checked ? " (chunks check)" : "", load, runnable, return_us.size(), limit_s * 1e3, wake.min, wake.median, wake.p90, wake.max, chunk.min,
               chunk.median, chunk.p90, chunk.max, ret.min, ret.median, ret.p90, ret.max);
}
void deadline_stop_latency(benchmark::State& state) { deadline_stop_latency_impl<stop_path::watchdog>(state); }
void deadline_stop_latency_checked(benchmark::State& state) { deadline_stop_latency_impl<stop_path::checked>(state); }
void deadline_stop_latency_abandonable(benchmark::State& state) {
  deadline_stop_latency_impl<stop_path::abandonable>(state);
}
BENCHMARK(deadline_stop_latency)->ArgName("load")->Arg(0)->Arg(2)->Arg(4)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(deadline_stop_latency_checked)->ArgName("load")->Arg(0)->Arg(2)->Arg(4)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(deadline_stop_latency_abandonable)->ArgName("load")->Arg(0)->Arg(2)->Arg(4)->Iterations(1)->Unit(benchmark::kMillisecond);

// What a chunk pays for the check while the deadline is far: a clock read and a compare.
void deadline_check_far(benchmark::State& state) {
  frugal::budget run{"train", frugal::limits{}.wall(never)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  frugal::scope step{run, "step"};
  for (auto _ : state) benchmark::DoNotOptimize(watchdog.check());
}
BENCHMARK(deadline_check_far);

}  // namespace

BENCHMARK_MAIN();
