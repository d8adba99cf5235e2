// One training step of the Fashion-MNIST example's MLP (784-256-128-10, batch 128, 2 shards) on
// synthetic 784-pixel data, plain next to instrumented as the example runs it, in one binary.
//
// plain: the trainer's step with no budget: no scopes (FLOPs are still counted into the
//   thread's counters by the ops; that is an add to a thread-local, and the hooks are linked).
// scoped: the same step under the example's scopes: "step" around "forward", "backward",
//   "update", and the samples unit.
// controlled: scoped, plus a heap_watch reset and read and frugal::controller::end_step with
//   loss, samples and peak bytes: everything the example does per step.
// The overhead is the ratio of these rows, measured side by side; nothing here asserts a time.
#include "mlp.hpp"
#include "trainer.hpp"

#include <frugal/allocation.hpp>
#include <frugal/budget.hpp>
#include <frugal/controller.hpp>
#include <frugal/scope.hpp>

#include <benchmark/benchmark.h>
#include <oneapi/tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace {

constexpr Eigen::Index batch = 128;
constexpr std::size_t images = 4096;  // synthetic: random pixels and labels

fmnist::dataset synthetic() {
  fmnist::dataset d;
  d.train_images.count = images;
  d.train_images.rows = fmnist::image_side;
  d.train_images.cols = fmnist::image_side;
  d.train_images.pixels.resize(images * fmnist::image_side * fmnist::image_side);
  d.train_labels.resize(images);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pixel(0, 255), label(0, fmnist::classes - 1);
  for (auto& p : d.train_images.pixels) p = static_cast<std::uint8_t>(pixel(rng));
  for (auto& l : d.train_labels) l = static_cast<std::uint8_t>(label(rng));
  return d;
}

// What every row shares: the data, a model, its optimiser, a 2-shard trainer on 2 threads.
struct setup {
  tbb::global_control threads{tbb::global_control::max_allowed_parallelism, 2};
  fmnist::dataset data = synthetic();
  fmnist::mlp model{fmnist::layer_sizes({256, 128}), 1};
  fmnist::optimizer opt{fmnist::optimizer_kind::sgd, model, 0.9f};
  fmnist::trainer trainer{model, opt, 2};
  std::vector<std::uint32_t> order = [] {
    std::vector<std::uint32_t> o(images);
    std::iota(o.begin(), o.end(), 0u);
    return o;
  }();
  std::size_t at = 0;
  // The next batch's first index, cycling through the data.
  const std::uint32_t* next() {
    if (at + static_cast<std::size_t>(batch) > images) at = 0;
    const std::uint32_t* p = order.data() + at;
    at += static_cast<std::size_t>(batch);
    return p;
  }
};

constexpr float lr = 0.01f;

void step_plain(benchmark::State& state) {
  setup s;
  for (auto _ : state) {
    const fmnist::batch_result r = s.trainer.step(s.data, s.next(), batch, lr, nullptr);
    benchmark::DoNotOptimize(r.loss_sum);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
}
BENCHMARK(step_plain)->UseRealTime()->Unit(benchmark::kMicrosecond);

void step_scoped(benchmark::State& state) {
  setup s;
  frugal::budget run{"train"};
  const frugal::unit_id samples = frugal::unit("samples");
  frugal::scope epoch{run, "epoch"};
  for (auto _ : state) {
    frugal::scope step{run, "step"};
    const fmnist::batch_result r = s.trainer.step(s.data, s.next(), batch, lr, &run);
    frugal::add_units(samples, static_cast<double>(batch));
    benchmark::DoNotOptimize(r.loss_sum);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
}
BENCHMARK(step_scoped)->UseRealTime()->Unit(benchmark::kMicrosecond);

void step_controlled(benchmark::State& state) {
  setup s;
  // Limits that never bind, so every iteration is a step that goes on.
  frugal::budget run{"train", frugal::limits{}.wall(std::chrono::hours(24 * 365)).flops(1e30).units("samples", 1e30)};
  const frugal::unit_id samples = frugal::unit("samples");
  frugal::controller ctl{run, frugal::controller_options{}
                                  .batch_size(static_cast<std::size_t>(batch))
                                  .batch_limits(16, static_cast<std::size_t>(batch))
                                  .effective_batch(static_cast<std::size_t>(batch))
                                  .epoch_samples(images * 1000)};
  frugal::heap_watch heap;
  frugal::scope epoch{run, "epoch"};
  for (auto _ : state) {
    heap.reset();
    fmnist::batch_result r;
    {
      frugal::scope step{run, "step"};
      r = s.trainer.step(s.data, s.next(), batch, lr, &run);
      frugal::add_units(samples, static_cast<double>(batch));
    }
    const frugal::decision d = ctl.end_step(frugal::step{}
                                                .loss(r.loss_sum / static_cast<double>(batch))
                                                .samples(static_cast<std::size_t>(batch))
                                                .peak_bytes(static_cast<double>(heap.peak_bytes())));
    benchmark::DoNotOptimize(d.batch_size());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
}
BENCHMARK(step_controlled)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
