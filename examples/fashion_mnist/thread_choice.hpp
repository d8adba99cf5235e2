// --threads auto: how many worker threads the training steps use, chosen by measuring the steps
// rather than fixed at one per core.
//
// Why measure: on a shared machine a second thread can cost more than it brings (another process
// holds that core, and every step waits for its slowest shard), and under a CPU-time limit every
// thread's time is charged, spinning included. Neither is known before the run, and both change
// during it. So at each epoch's start the next steps rotate over the candidates (1, 2, 4, ... up
// to the cores, and the cores themselves), `rounds` steps each, interleaved so that a change in
// the machine's load hits every candidate alike. What is compared is each candidate's cost per
// sample over its steps -- wall time, or CPU time when the budget limits CPU time and not wall
// time -- the total over the steps, not their median: on a loaded machine more threads give a
// step that is usually fast and now and then many times slower (it waits for a shard whose core
// another process holds), and those slow steps are what the budget pays for. More threads must
// also pay for themselves: a candidate replaces one with fewer threads only when it is at least
// `margin` (10 %) cheaper, since each thread costs CPU and a near tie is noise. The steps
// measured are real training steps: nothing is spent on probing.
//
// The batch is split into the same number of shards whatever the choice (one per core), so the
// choice changes how fast a step runs, never what it computes: a run stays deterministic.
#pragma once

#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fmnist {

class thread_choice {
 public:
  // The thread counts worth trying on `cores` cores: the powers of two below it, and it.
  [[nodiscard]] static std::vector<int> candidates_for(int cores) {
    if (cores < 1) throw std::invalid_argument("fmnist::thread_choice: cores must be >= 1, got " + std::to_string(cores));
    std::vector<int> c;
    for (int k = 1; k < cores; k *= 2) c.push_back(k);
    c.push_back(cores);
    return c;
  }

  // `candidates`: the thread counts to choose from (one: no measuring, that count always).
  // `by_cpu`: compare CPU time per sample instead of wall time. `rounds`: steps per candidate
  // in each measurement.
  thread_choice(std::vector<int> candidates, bool by_cpu, int rounds = 4)
      : by_cpu_(by_cpu), rounds_(static_cast<std::size_t>(std::max(rounds, 1))) {
    if (candidates.empty()) throw std::invalid_argument("fmnist::thread_choice: no candidate thread count");
    if (rounds < 1) throw std::invalid_argument("fmnist::thread_choice: rounds must be >= 1, got " + std::to_string(rounds));
    for (int k : candidates) {
      if (k < 1) throw std::invalid_argument("fmnist::thread_choice: a thread count must be >= 1, got " + std::to_string(k));
      candidates_.push_back({k, std::make_unique<tbb::task_arena>(k), 0, 0, 0});
    }
    chosen_ = candidates_.size() - 1;  // the most threads until measured: the old default
    remeasure();
  }

  // Starts a measurement (at an epoch's start: the machine's load may have changed). No effect
  // with one candidate.
  void remeasure() {
    if (candidates_.size() < 2) return;
    for (candidate& c : candidates_) c.seconds = c.samples = 0;
    position_ = 0;
    measuring_ = true;
  }

  [[nodiscard]] bool measuring() const noexcept { return measuring_; }
  [[nodiscard]] bool by_cpu() const noexcept { return by_cpu_; }
  // The arena the next step runs in, and its thread count.
  [[nodiscard]] tbb::task_arena& arena() noexcept { return *candidates_[next()].arena; }
  [[nodiscard]] int threads() const noexcept { return candidates_[next()].threads; }
  // The count the last measurement chose (the most threads before any).
  [[nodiscard]] int chosen() const noexcept { return candidates_[chosen_].threads; }
  [[nodiscard]] int measurements() const noexcept { return measurements_; }

  // The step just run on threads() cost `seconds` (wall or CPU, as by_cpu() says) for `samples`
  // samples. Returns true when this completed the first measurement, or one whose choice
  // differs from the one before (worth a progress note).
  bool record(double seconds, double samples) {
    if (!measuring_ || samples <= 0) return false;
    candidate& c = candidates_[next()];
    c.seconds += seconds;
    c.samples += samples;
    if (++position_ < rounds_ * candidates_.size()) return false;
    measuring_ = false;
    ++measurements_;
    const std::size_t before = chosen_;
    for (candidate& c : candidates_) c.per_sample = c.seconds / c.samples;
    chosen_ = 0;
    for (std::size_t i = 1; i < candidates_.size(); ++i)
      if (candidates_[i].per_sample < (1 - margin) * candidates_[chosen_].per_sample) chosen_ = i;
    return chosen_ != before || measurements_ == 1;
  }

  // "2 threads (per sample: 1 thread 20.1 us, 2 threads 11.9 us of wall)" after a
  // measurement; "2 threads (fixed by --threads)" with one candidate.
  [[nodiscard]] std::string describe() const {
    const auto plural = [](int k) { return std::to_string(k) + (k == 1 ? " thread" : " threads"); };
    if (candidates_.size() < 2) return plural(chosen()) + " (fixed by --threads)";
    if (measurements_ == 0) return plural(chosen()) + " (not measured yet)";
    std::string s = plural(chosen()) + " (per sample:";
    for (std::size_t i = 0; i < candidates_.size(); ++i) {
      char us[32];
      std::snprintf(us, sizeof us, " %.1f us", candidates_[i].per_sample * 1e6);
      s += (i ? ", " : " ") + plural(candidates_[i].threads) + us;
    }
    return s + (by_cpu_ ? " of CPU)" : " of wall)");
  }

 private:
  struct candidate {
    int threads;
    std::unique_ptr<tbb::task_arena> arena;
    double seconds;     // this measurement's steps: their cost
    double samples;     // and their samples
    double per_sample;  // the last measurement's cost per sample
  };

  // Measuring: the candidates in turn (1, 2, 1, 2, ...); else the chosen one.
  [[nodiscard]] std::size_t next() const noexcept {
    return measuring_ ? position_ % candidates_.size() : chosen_;
  }

  // How much cheaper per sample more threads must be to be chosen over fewer.
  static constexpr double margin = 0.10;

  std::vector<candidate> candidates_;
  bool by_cpu_;
  std::size_t rounds_;
  std::size_t position_ = 0;
  std::size_t chosen_ = 0;
  bool measuring_ = false;
  int measurements_ = 0;
};

}  // namespace fmnist
