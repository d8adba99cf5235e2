// The cost of a scope against its floor, two steady_clock reads, measured side by side in
// one run. The README's performance table comes from this binary.
#include <frugal/frugal.hpp>

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
