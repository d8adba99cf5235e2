// The main job's --threads auto (examples/fashion_mnist/thread_choice.hpp): which thread counts it
// tries, that it measures them in turn and keeps the cheapest per sample (more threads only when
// they pay for themselves), and -- what makes it safe
// to choose by timing -- that the trainer computes the same bits on any number of threads.
#include "thread_choice.hpp"
#include "trainer.hpp"

#include <gtest/gtest.h>
#include <oneapi/tbb/task_arena.h>

#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

using fmnist::thread_choice;

TEST(ThreadChoice, TriesThePowersOfTwoBelowTheCoresAndTheCores) {
  EXPECT_EQ(thread_choice::candidates_for(1), (std::vector<int>{1}));
  EXPECT_EQ(thread_choice::candidates_for(2), (std::vector<int>{1, 2}));
  EXPECT_EQ(thread_choice::candidates_for(6), (std::vector<int>{1, 2, 4, 6}));
  EXPECT_EQ(thread_choice::candidates_for(16), (std::vector<int>{1, 2, 4, 8, 16}));
  EXPECT_THROW((void)thread_choice::candidates_for(0), std::invalid_argument);
}

TEST(ThreadChoice, RejectsWhatCannotRun) {
  EXPECT_THROW(thread_choice({}, false), std::invalid_argument);
  EXPECT_THROW(thread_choice({1, 0}, false), std::invalid_argument);
  EXPECT_THROW(thread_choice({1, 2}, false, 0), std::invalid_argument);
}

TEST(ThreadChoice, MeasuresTheCandidatesInTurnAndKeepsTheCheapestPerSample) {
  thread_choice c({1, 2, 4}, false, 3);
  EXPECT_TRUE(c.measuring());
  EXPECT_EQ(c.chosen(), 4);  // the most threads until measured
  // Per sample: 1 thread 10 us, 2 threads 6 us, 4 threads 7 us; steps of 128 samples.
  const double per_sample[] = {10e-6, 6e-6, 7e-6};
  std::vector<int> order;
  for (int i = 0; i < 9; ++i) {
    order.push_back(c.threads());
    EXPECT_EQ(c.arena().max_concurrency(), c.threads());
    const double cost = per_sample[i % 3] * 128;
    EXPECT_EQ(c.record(cost, 128), i == 8) << "a first measurement completes at its last step";
  }
  EXPECT_EQ(order, (std::vector<int>{1, 2, 4, 1, 2, 4, 1, 2, 4})) << "interleaved: load changes hit all alike";
  EXPECT_FALSE(c.measuring());
  EXPECT_EQ(c.chosen(), 2);
  EXPECT_EQ(c.threads(), 2);
  EXPECT_EQ(c.measurements(), 1);
  EXPECT_FALSE(c.record(1.0, 128)) << "not measuring: a step's time is not recorded";
  EXPECT_EQ(c.describe(), "2 threads (per sample: 1 thread 10.0 us, 2 threads 6.0 us, 4 threads 7.0 us of wall)");
}

TEST(ThreadChoice, TheSlowStepsOfALoadedMachineCount) {
  thread_choice c({1, 2}, true, 3);
  // On 2 threads a step is usually faster, but when another process holds a core it waits for
  // that shard: the budget pays for those steps too, so their median would mislead.
  const double one[] = {9e-6, 9e-6, 9e-6}, two[] = {5e-6, 50e-6, 5e-6};
  for (int i = 0; i < 3; ++i) {
    c.record(one[i] * 100, 100);
    c.record(two[i] * 100, 100);
  }
  EXPECT_EQ(c.chosen(), 1);
  EXPECT_EQ(c.describe(), "1 thread (per sample: 1 thread 9.0 us, 2 threads 20.0 us of CPU)");
}

TEST(ThreadChoice, ATieGoesToFewerThreadsAndARemeasurementCanChangeTheChoice) {
  thread_choice c({1, 2}, false, 1);
  c.record(1e-3, 100);
  EXPECT_TRUE(c.record(1e-3, 100));
  EXPECT_EQ(c.chosen(), 1) << "the same speed for half the CPU";
  c.remeasure();  // the next epoch: another process left, 2 threads now pay
  EXPECT_FALSE(c.record(1e-3, 100));
  EXPECT_TRUE(c.record(0.5e-3, 100)) << "the choice changed";
  EXPECT_EQ(c.chosen(), 2);
  c.remeasure();
  c.record(1e-3, 100);
  EXPECT_FALSE(c.record(0.6e-3, 100)) << "the same choice again: nothing to note";
  EXPECT_EQ(c.chosen(), 2);
}

TEST(ThreadChoice, MoreThreadsMustBeAtLeastATenthCheaper) {
  thread_choice c({1, 2, 4}, false, 1);
  c.record(1.00e-3, 100);
  c.record(0.95e-3, 100);  // 5 % cheaper: not worth a second thread's CPU
  c.record(0.85e-3, 100);  // 15 % cheaper than 1 thread: worth it
  EXPECT_EQ(c.chosen(), 4);
  c.remeasure();
  c.record(1.00e-3, 100);
  c.record(0.80e-3, 100);
  c.record(0.75e-3, 100);  // 6 % cheaper than 2 threads
  EXPECT_EQ(c.chosen(), 2);
}

TEST(ThreadChoice, AFixedCountIsNeverMeasured) {
  thread_choice c({3}, false);
  EXPECT_FALSE(c.measuring());
  c.remeasure();
  EXPECT_FALSE(c.measuring());
  EXPECT_EQ(c.threads(), 3);
  EXPECT_FALSE(c.record(1.0, 10));
  EXPECT_EQ(c.describe(), "3 threads (fixed by --threads)");
}

// The premise of choosing by timing: the shards are as many whatever the threads, so the same
// steps on 1 and on 2 threads leave the same weights, bit for bit (real Eigen, real oneTBB).
TEST(ThreadChoice, TheTrainerComputesTheSameBitsOnAnyNumberOfThreads) {
  fmnist::dataset data;
  data.train_images.count = 512;
  data.train_images.rows = data.train_images.cols = fmnist::image_side;
  std::mt19937 rng(7);
  data.train_images.pixels.resize(data.train_images.count * data.train_images.pixels_per_image());
  for (auto& p : data.train_images.pixels) p = static_cast<std::uint8_t>(rng() & 0xFF);
  data.train_labels.resize(data.train_images.count);
  for (auto& l : data.train_labels) l = static_cast<std::uint8_t>(rng() % 10);
  std::vector<std::uint32_t> order(data.train_images.count);
  std::iota(order.begin(), order.end(), 0u);

  const auto train = [&](int threads) {
    fmnist::mlp model(fmnist::layer_sizes({32, 16}), 3);
    fmnist::optimizer opt(fmnist::optimizer_kind::sgd, model, 0.9f);
    fmnist::trainer trainer(model, opt, 4);  // 4 shards on `threads` threads
    tbb::task_arena arena(threads);
    trainer.run_in(&arena);
    for (std::size_t at = 0; at + 64 <= order.size(); at += 64)
      (void)trainer.step(data, order.data() + at, 64, 0.05f, nullptr);
    return model.params();
  };
  const fmnist::parameters one = train(1), two = train(2);
  ASSERT_EQ(one.w.size(), two.w.size());
  for (std::size_t l = 0; l < one.w.size(); ++l) {
    EXPECT_TRUE((one.w[l].array() == two.w[l].array()).all()) << "layer " << l;
    EXPECT_TRUE((one.b[l].array() == two.b[l].array()).all()) << "layer " << l;
  }
  // And the arithmetic did move the weights (a test of nothing would pass the above too).
  fmnist::mlp untrained(fmnist::layer_sizes({32, 16}), 3);
  EXPECT_FALSE((one.w[0].array() == untrained.params().w[0].array()).all());
}

}  // namespace
