// The cost of counting Eigen FLOPs: a counted assignment against the plain Eigen statement,
// side by side in one run, and frugal::flops_of alone (sizes only, nothing evaluated).
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cstdint>
#include <frugal/eigen/flops.hpp>
#include <frugal/frugal.hpp>

namespace {

// Both sides run inside an open scope, as in a training loop, so add_flops really charges.
template <bool Counted>
void gemm(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  const Eigen::MatrixXd a = Eigen::MatrixXd::Random(n, n), b = Eigen::MatrixXd::Random(n, n);
  Eigen::MatrixXd c(n, n);
  frugal::budget run{"run"};
  frugal::scope s{run, "gemm"};
  for (auto _ : state) {
    if constexpr (Counted)
      frugal::assign_noalias(c, a * b);
    else
      c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(n * n * n), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_plain_assign_64(benchmark::State& state) { gemm<false>(state); }
void BM_counted_assign_64(benchmark::State& state) { gemm<true>(state); }
BENCHMARK(BM_plain_assign_64)->Arg(64);
BENCHMARK(BM_counted_assign_64)->Arg(64);

// Small products show the fixed cost of counting most plainly.
void BM_plain_assign_16(benchmark::State& state) { gemm<false>(state); }
void BM_counted_assign_16(benchmark::State& state) { gemm<true>(state); }
BENCHMARK(BM_plain_assign_16)->Arg(16);
BENCHMARK(BM_counted_assign_16)->Arg(16);

// A dense layer with its bias broadcast: H = W X + b 1'.
template <bool Counted>
void dense_layer(benchmark::State& state) {
  const Eigen::MatrixXd W = Eigen::MatrixXd::Random(64, 64), X = Eigen::MatrixXd::Random(64, 32);
  const Eigen::VectorXd bias = Eigen::VectorXd::Random(64);
  Eigen::MatrixXd H(64, 32);
  frugal::budget run{"run"};
  frugal::scope s{run, "forward"};
  for (auto _ : state) {
    if constexpr (Counted)
      frugal::assign(H, (W * X).colwise() + bias);
    else
      H = (W * X).colwise() + bias;
    benchmark::DoNotOptimize(H.data());
    benchmark::ClobberMemory();
  }
}
void BM_plain_dense_layer(benchmark::State& state) { dense_layer<false>(state); }
void BM_counted_dense_layer(benchmark::State& state) { dense_layer<true>(state); }
BENCHMARK(BM_plain_dense_layer);
BENCHMARK(BM_counted_dense_layer);

// The operands are laundered through DoNotOptimize each iteration, so their sizes are read
// again and the count is not hoisted out of the loop.
void BM_flops_of_gemm(benchmark::State& state) {
  Eigen::MatrixXd a = Eigen::MatrixXd::Random(64, 64), b = Eigen::MatrixXd::Random(64, 64);
  for (auto _ : state) {
    benchmark::DoNotOptimize(a);
    benchmark::DoNotOptimize(b);
    std::uint64_t n = frugal::flops_of(a * b);
    benchmark::DoNotOptimize(n);
  }
}
BENCHMARK(BM_flops_of_gemm);

// A deeper tree: a stable softmax of a product, sixteen nodes.
void BM_flops_of_softmax(benchmark::State& state) {
  Eigen::MatrixXd w = Eigen::MatrixXd::Random(10, 64), x = Eigen::MatrixXd::Random(64, 32);
  Eigen::RowVectorXd s = Eigen::RowVectorXd::Random(32);
  for (auto _ : state) {
    benchmark::DoNotOptimize(w);
    benchmark::DoNotOptimize(x);
    benchmark::DoNotOptimize(s);
    std::uint64_t n = frugal::flops_of(
        ((w * x).array().rowwise() - (w * x).array().colwise().maxCoeff()).exp().rowwise() / s.array());
    benchmark::DoNotOptimize(n);
  }
}
BENCHMARK(BM_flops_of_softmax);

}  // namespace

BENCHMARK_MAIN();
