// What pruning and quantization buy on this machine, measured side by side in one run: a
// Fashion-MNIST-sized MLP step dense vs 50 % structurally pruned, dense vs sparse products at
// rising sparsity, and int8 (both product modes) vs float products with the model's bytes.
#include <frugal/eigen/compression_plan.hpp>
#include <frugal/eigen/ops.hpp>
#include <frugal/eigen/prune.hpp>
#include <frugal/eigen/quantize.hpp>
#include <frugal/eigen/structured_prune.hpp>
#include <frugal/frugal.hpp>

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <cstdint>
#include <vector>

namespace {

using Eigen::Index;
using Eigen::MatrixXf;
using Eigen::VectorXf;

constexpr Index in = 784, hidden = 256, classes = 10, batch = 128;

// ---------------------------------------------------------------------------------------------
// One training step of 784 -> hidden -> 10 (ReLU, softmax cross-entropy, SGD) through frugal's
// ops, inside a scope so the FLOPs are frugal's own count. hidden = 256: dense; 128: the same
// network after prune_hidden_units removed half its units.
// ---------------------------------------------------------------------------------------------
struct mlp {
  MatrixXf w1, w2;
  VectorXf b1, b2;
  MatrixXf z1, h, y, dy, dw2, dh, dz1, dw1;
  VectorXf db2, db1;

  void step(const MatrixXf& x, const std::vector<int>& labels) {
    frugal::dense_forward(w1, b1, x, z1);
    frugal::relu(z1, h);
    frugal::dense_forward(w2, b2, h, y);
    benchmark::DoNotOptimize(frugal::softmax_cross_entropy(y, labels, dy));
    frugal::dense_backward(w2, h, dy, dw2, db2, dh);
    frugal::relu_backward(z1, dh, dz1);
    frugal::dense_backward(w1, x, dz1, dw1, db1);
    frugal::sgd_update(w1, dw1, 0.01);
    frugal::sgd_update(b1, db1, 0.01);
    frugal::sgd_update(w2, dw2, 0.01);
    frugal::sgd_update(b2, db2, 0.01);
  }
  void forward(const MatrixXf& x) {
    frugal::dense_forward(w1, b1, x, z1);
    frugal::relu(z1, h);
    frugal::dense_forward(w2, b2, h, y);
  }
};

mlp make_mlp(Index units) {
  std::srand(1);
  mlp m;
  m.w1 = MatrixXf::Random(hidden, in) * 0.05f;
  m.w2 = MatrixXf::Random(classes, hidden) * 0.05f;
  m.b1 = VectorXf::Zero(hidden);
  m.b2 = VectorXf::Zero(classes);
  if (units < hidden) {
    const auto p = frugal::prune_hidden_units(m.w1, m.b1, m.w2, hidden - units);
    m.w1 = p.w1;
    m.b1 = p.b1;
    m.w2 = p.w2;
  }
  m.dw1.resize(m.w1.rows(), m.w1.cols());
  m.dw2.resize(m.w2.rows(), m.w2.cols());
  m.dh.resize(m.w1.rows(), batch);
  m.dz1.resize(m.w1.rows(), batch);
  m.db1.resize(m.w1.rows());
  m.db2.resize(classes);
  return m;
}

template <bool Train>
void mlp_bench(benchmark::State& state) {
  const Index units = state.range(0);
  mlp m = make_mlp(units);
  const MatrixXf x = MatrixXf::Random(in, batch);
  std::vector<int> labels;
  for (Index j = 0; j < batch; ++j) labels.push_back(static_cast<int>(j % classes));
  frugal::budget run{"run"};
  frugal::scope s{run, "step"};
  for (auto _ : state) {
    if constexpr (Train)
      m.step(x, labels);
    else
      m.forward(x);
    benchmark::ClobberMemory();
  }
  const double flops = run.used(frugal::resource::flops) / static_cast<double>(state.iterations());
  state.counters["flops"] = flops;
  state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["hidden"] = static_cast<double>(units);
}
void BM_mlp_train_step(benchmark::State& state) { mlp_bench<true>(state); }
void BM_mlp_forward(benchmark::State& state) { mlp_bench<false>(state); }
BENCHMARK(BM_mlp_train_step)->Arg(256)->Arg(128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_mlp_forward)->Arg(256)->Arg(128)->Unit(benchmark::kMicrosecond);

// ---------------------------------------------------------------------------------------------
// Unstructured pruning: 256 x 784 weights times 784 x 128 activations. Dense costs the same at
// every sparsity; sparse costs 2*nnz*N FLOPs, and time at its own rate.
// ---------------------------------------------------------------------------------------------
template <bool Sparse>
void pruned_product(benchmark::State& state) {
  const double sparsity = static_cast<double>(state.range(0)) / 100.0;
  std::srand(2);
  MatrixXf w = MatrixXf::Random(hidden, in);
  const frugal::prune_mask mask = frugal::magnitude_prune(w, sparsity);
  mask.apply(w);
  const auto s = frugal::to_sparse(w, mask);
  const MatrixXf x = MatrixXf::Random(in, batch);
  MatrixXf y(hidden, batch);
  for (auto _ : state) {
    if constexpr (Sparse)
      y.noalias() = s * x;
    else
      y.noalias() = w * x;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["sparsity"] = sparsity;
  state.counters["flops"] = static_cast<double>(Sparse ? frugal::sparse_product_flops(static_cast<std::uint64_t>(s.nonZeros()), batch)
                                                       : 2ull * hidden * in * batch);
}
void BM_pruned_dense_gemm(benchmark::State& state) { pruned_product<false>(state); }
void BM_pruned_sparse_gemm(benchmark::State& state) { pruned_product<true>(state); }
BENCHMARK(BM_pruned_dense_gemm)->Arg(0)->Arg(50)->Arg(80)->Arg(90)->Arg(95)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_pruned_sparse_gemm)->Arg(50)->Arg(80)->Arg(90)->Arg(92)->Arg(95)->Arg(98)->Unit(benchmark::kMicrosecond);

// ---------------------------------------------------------------------------------------------
// Int8 vs float: y = W x for 256 x 784 weights, x one column (GEMV) or 128 (GEMM).
// ---------------------------------------------------------------------------------------------
void BM_float_product(benchmark::State& state) {
  const Index n = state.range(0);
  std::srand(3);
  const MatrixXf w = MatrixXf::Random(hidden, in), x = MatrixXf::Random(in, n);
  MatrixXf y(hidden, n);
  for (auto _ : state) {
    y.noalias() = w * x;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["model_bytes"] = static_cast<double>(frugal::float_bytes(hidden, in));
}

template <frugal::quantized_product_mode Mode>
void int8_product(benchmark::State& state) {
  const Index n = state.range(0);
  std::srand(3);
  const MatrixXf w = MatrixXf::Random(hidden, in), x = MatrixXf::Random(in, n);
  const frugal::quantized_matrix q = frugal::quantize(w, frugal::quant_granularity::per_channel);
  MatrixXf y(hidden, n);
  for (auto _ : state) {
    frugal::quantized_product(q, x, y, Mode);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["model_bytes"] = static_cast<double>(q.bytes());
}
void BM_int8_int32_accumulate(benchmark::State& state) {
  int8_product<frugal::quantized_product_mode::int32_accumulate>(state);
}
void BM_int8_dequantize(benchmark::State& state) { int8_product<frugal::quantized_product_mode::dequantize>(state); }
BENCHMARK(BM_float_product)->Arg(1)->Arg(128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_int8_int32_accumulate)->Arg(1)->Arg(128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_int8_dequantize)->Arg(1)->Arg(128)->Unit(benchmark::kMicrosecond);

// The conversions themselves, for a 256 x 784 layer: what fake-quantization adds to a QAT step.
void BM_quantize_layer(benchmark::State& state) {
  const MatrixXf w = MatrixXf::Random(hidden, in);
  for (auto _ : state) {
    auto q = frugal::quantize(w);
    benchmark::DoNotOptimize(q.values().data());
  }
}
void BM_fake_quantize_layer(benchmark::State& state) {
  const MatrixXf w = MatrixXf::Random(hidden, in);
  for (auto _ : state) {
    MatrixXf f = frugal::fake_quantize(w);
    benchmark::DoNotOptimize(f.data());
  }
}
BENCHMARK(BM_quantize_layer)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_fake_quantize_layer)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
