// The cost of a scope against its floor, two steady_clock reads, measured side by side in
// one run. The README's performance table comes from this binary. The *_tsc rows run with
// frugal::use_tsc_clock() on (calibrated once per run of the row, outside the timed loop; a
// CPU without an invariant TSC skips them with the reason), so their ratios to two_clock_reads
// come from the same run too.
#include <frugal/frugal.hpp>
#include <frugal/tsc_clock.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <string>

namespace {

void two_clock_reads(benchmark::State& state) {
  for (auto _ : state) {
    auto a = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(a);
    auto b = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(b);
  }
}
BENCHMARK(two_clock_reads);

// Switches frugal's wall clock to the TSC for one run of a row, and back to steady_clock.
class tsc_clock_on {
 public:
  explicit tsc_clock_on(benchmark::State& state) : status_(frugal::use_tsc_clock()) {
    if (!status_.enabled) state.SkipWithError(("no TSC clock: " + status_.reason).c_str());
  }
  ~tsc_clock_on() { frugal::use_steady_clock(); }
  tsc_clock_on(const tsc_clock_on&) = delete;
  tsc_clock_on& operator=(const tsc_clock_on&) = delete;
  explicit operator bool() const noexcept { return status_.enabled; }

 private:
  frugal::tsc_clock_status status_;
};

// frugal's own wall clock read twice, as a scope does: steady_clock behind the clock-mode word.
void two_wall_reads(benchmark::State& state) {
  for (auto _ : state) {
    auto a = frugal::wall_now_ns();
    benchmark::DoNotOptimize(a);
    auto b = frugal::wall_now_ns();
    benchmark::DoNotOptimize(b);
  }
}
BENCHMARK(two_wall_reads);

// The same with the TSC clock on: two rdtsc reads, each converted to steady_clock's nanoseconds.
void two_wall_reads_tsc(benchmark::State& state) {
  tsc_clock_on tsc{state};
  if (!tsc) return;
  for (auto _ : state) {
    auto a = frugal::wall_now_ns();
    benchmark::DoNotOptimize(a);
    auto b = frugal::wall_now_ns();
    benchmark::DoNotOptimize(b);
  }
}
BENCHMARK(two_wall_reads_tsc);

// The usual case: a stage scope inside a training loop whose run scope is already open.
void scope_enter_exit(benchmark::State& state) {
  frugal::budget run{"run"};
  frugal::scope all{run, "all"};
  for (auto _ : state) {
    frugal::scope s{run, "step"};
    benchmark::ClobberMemory();
  }
}
BENCHMARK(scope_enter_exit);

// No enclosing scope: every scope activates the budget (the lock-free wall-union update).
void scope_enter_exit_idle_budget(benchmark::State& state) {
  frugal::budget run{"run"};
  for (auto _ : state) {
    frugal::scope s{run, "step"};
    benchmark::ClobberMemory();
  }
}
BENCHMARK(scope_enter_exit_idle_budget);

// The two rows above with the TSC clock on.
void scope_enter_exit_tsc(benchmark::State& state) {
  tsc_clock_on tsc{state};
  if (!tsc) return;
  frugal::budget run{"run"};
  frugal::scope all{run, "all"};
  for (auto _ : state) {
    frugal::scope s{run, "step"};
    benchmark::ClobberMemory();
  }
}
BENCHMARK(scope_enter_exit_tsc);

void scope_enter_exit_idle_budget_tsc(benchmark::State& state) {
  tsc_clock_on tsc{state};
  if (!tsc) return;
  frugal::budget run{"run"};
  for (auto _ : state) {
    frugal::scope s{run, "step"};
    benchmark::ClobberMemory();
  }
}
BENCHMARK(scope_enter_exit_idle_budget_tsc);

void scope_with_add_flops(benchmark::State& state) {
  frugal::budget run{"run"};
  frugal::scope all{run, "all"};
  for (auto _ : state) {
    frugal::scope s{run, "step"};
    frugal::add_flops(2 * 64 * 64 * 64);
  }
}
BENCHMARK(scope_with_add_flops);

void nested_pair(benchmark::State& state) {
  frugal::budget run{"run"};
  frugal::scope all{run, "all"};
  for (auto _ : state) {
    frugal::scope outer{run, "step"};
    frugal::scope inner{run, "forward"};
    benchmark::ClobberMemory();
  }
}
BENCHMARK(nested_pair);

// A stage named by a std::string: looked up by content (hash + compare) every time.
void scope_dynamic_name(benchmark::State& state) {
  frugal::budget run{"run"};
  frugal::scope all{run, "all"};
  const std::string name = "backward";
  for (auto _ : state) {
    frugal::scope s{run, name};
    benchmark::ClobberMemory();
  }
}
BENCHMARK(scope_dynamic_name);

// A scope on a child budget while the parent is open (evaluation inside a run).
void child_budget_scope(benchmark::State& state) {
  frugal::budget run{"run"};
  frugal::budget& eval = run.child("eval");
  frugal::scope all{run, "all"};
  for (auto _ : state) {
    frugal::scope s{eval, "eval"};
    benchmark::ClobberMemory();
  }
}
BENCHMARK(child_budget_scope);

void add_units_by_id(benchmark::State& state) {
  frugal::budget run{"run"};
  frugal::scope all{run, "all"};
  const frugal::unit_id samples = frugal::unit("samples");
  for (auto _ : state) frugal::add_units(samples, 64);
}
BENCHMARK(add_units_by_id);

}  // namespace

BENCHMARK_MAIN();
