// Data-parallel training across the ranks of an MPI job (fashion_mnist_mpi: main.cpp built with
// FMNIST_MPI=1 and frugal::mpi; run it under `mpirun -np K`). Everything the main loop does
// differently with several processes is here; built without MPI (FMNIST_MPI=0, the plain
// fashion_mnist) every call is what the loop did before: one process, nothing exchanged.
//
// How the job trains. Every rank loads the data and shuffles with the same seed, so the batches'
// index arrays are the same everywhere; rank r trains on its contiguous share of each batch
// (share(): sizes differing by one at most), its loss gradient scaled to the whole batch, so the
// sum over the ranks (MPI_Allreduce on every gradient buffer, in the trainer's reduction hook,
// stage "allreduce") is the batch's gradient, and every rank applies the same update (rank 0's
// learning rate: the schedule reads the budget, whose wall time each rank reads at its own
// moment): the replicas stay bit-identical (same_weights() checks it at the end). The evaluations split their
// chunks the same way and sum loss and hits over the ranks, so every rank gets the same
// validation loss, and early stopping decides the same everywhere. The budget is the job's
// (frugal::mpi::job: usage exchanged at every step), and the loop ends on the decisions the
// ranks agreed (end_step, end_epoch, should_stop): a signal or a stop on any rank stops them all
// at the same step. FLOPs and samples are each rank's own share: the job's are their sums.
//
// Rank 0 alone prints and writes files: the other ranks' stdout goes to /dev/null and their
// progress too (their errors still reach stderr).
#pragma once

#ifndef FMNIST_MPI
#define FMNIST_MPI 0  // the plain fashion_mnist: one process
#endif

#include "cli.hpp"
#include "fnv1a.hpp"
#include "mlp.hpp"
#include "trainer.hpp"

#include <frugal/budget.hpp>
#include <frugal/controller.hpp>
#include <frugal/controller_report.hpp>
#include <frugal/decision.hpp>
#include <frugal/scope.hpp>
#if FMNIST_MPI
#include <frugal/mpi.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace fmnist {

class data_parallel {
 public:
  // Under MPI: MPI_Init (FUNNELED), this rank, the ranks, the ranks on this node; the other
  // ranks' stdout goes to /dev/null. Without MPI: one process.
  data_parallel([[maybe_unused]] int& argc, [[maybe_unused]] char**& argv) {
#if FMNIST_MPI
    env_.emplace(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm node = MPI_COMM_NULL;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS &&
        node != MPI_COMM_NULL) {
      MPI_Comm_size(node, &local_);
      MPI_Comm_free(&node);
    }
    if (rank_ != 0) {
      quiet_ = std::fopen("/dev/null", "w");
      if (!std::freopen("/dev/null", "w", stdout)) std::fprintf(stderr, "fashion_mnist: rank %d: cannot silence stdout\n", rank_);
    }
#endif
  }
  data_parallel(const data_parallel&) = delete;
  data_parallel& operator=(const data_parallel&) = delete;
  ~data_parallel() {
#if FMNIST_MPI
    job_.reset();  // before MPI_Finalize (env_)
#endif
    if (quiet_) std::fclose(quiet_);
  }

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  // Whether this process prints and writes files (rank 0).
  [[nodiscard]] bool writes() const noexcept { return rank_ == 0; }
  // The progress bar's stream: stderr on rank 0, /dev/null on the others.
  [[nodiscard]] std::FILE* progress_stream() const noexcept { return quiet_ ? quiet_ : stderr; }
  // The cores this rank's threads may use: the machine's, shared by the ranks on this node (at
  // least 1), so that K ranks on one machine do not oversubscribe it.
  [[nodiscard]] int cores() const noexcept {
    const int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return std::max(1, all / std::max(1, local_));
  }

  // Refuses, with several ranks, what would need collective work this job does not do (each rank
  // would do it alone, and differently): std::invalid_argument naming the option.
  void check(const options& o) const {
    if (size_ <= 1) return;
    const auto refuse = [&](const std::string& what, const std::string& why) {
      throw std::invalid_argument(what + ": not supported with " + std::to_string(size_) + " MPI ranks (" + why +
                                  "); run it with one rank, or with the plain fashion_mnist");
    };
    if (!o.checkpoint_dir.empty())
      refuse(o.resume ? "--resume" : "--checkpoint", "each rank would save and resume its own state");
    if (o.prune.enabled) refuse("--prune", "pruning a replica needs the ranks to cut the same units at the same step");
    if (o.quantize.enabled)
      refuse("--quantize", "the gradient exchange does not leave the frozen layers out; each rank would send them");
    if (o.deploy) refuse("--deploy", "the deployment is measured on one process");
    for (const frugal::resource r : {frugal::resource::peak_bytes, frugal::resource::rss_bytes})
      if (o.budget.get(r))
        refuse("--budget " + std::string(frugal::to_string(r)) + "=...",
               "the memory probe and the batch-size knob it drives are per process");
    if (o.budget.has(frugal::resource::energy))
      refuse("--budget energy=...", "each rank reads its own machine's counters, not the job's");
  }

  // Whether `ok` holds on every rank (collective; `ok` itself with one process). For the points
  // where a rank could fail alone (rank 0's --out) or the ranks must choose alike.
  [[nodiscard]] bool all(bool ok) {
#if FMNIST_MPI
    if (job_) return job_->sum<std::int64_t>(ok ? 0 : 1) == 0;
    int mine = ok ? 1 : 0, every = 0;
    MPI_Allreduce(&mine, &every, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    return every != 0;
#else
    return ok;
#endif
  }

  // The job over `run` (every rank's budget, same name and limits): `ctl` decides with the other
  // ranks from here on, and the trainer's gradients and scores are summed over the ranks before
  // each update. A stop any rank's controller has already decided is every rank's. Collective.
  void join([[maybe_unused]] frugal::budget& run, [[maybe_unused]] frugal::controller& ctl,
            [[maybe_unused]] trainer& t) {
#if FMNIST_MPI
    job_ = std::make_unique<frugal::mpi::job>(MPI_COMM_WORLD, run);
    job_->attach(ctl);
    t.reduce_with([this, &run](parameters* gradient, batch_result& scores, float& lr) {
      const auto start = std::chrono::steady_clock::now();
      {
        frugal::scope s{run, "allreduce"};
        if (gradient)
          for (std::size_t l = 0; l < gradient->w.size(); ++l) {
            job_->allreduce_sum(gradient->w[l].data(), static_cast<std::size_t>(gradient->w[l].size()));
            job_->allreduce_sum(gradient->b[l].data(), static_cast<std::size_t>(gradient->b[l].size()));
          }
        // The learning rate follows the budget used (--schedule budget-linear), which each rank
        // reads at its own moment (the wall time goes on): rank 0's, exactly, is every rank's.
        double sums[3] = {scores.loss_sum, static_cast<double>(scores.correct), rank_ == 0 ? static_cast<double>(lr) : 0.0};
        job_->allreduce_sum(sums, 3);
        scores.loss_sum = sums[0];
        scores.correct = std::llround(sums[1]);
        lr = static_cast<float>(sums[2]);
      }
      allreduce_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ++allreduces_;
    });
    stopped_ = !all(!ctl.should_stop());
#endif
  }

  // The checkpoints, every rank's at the same step (the job's), or the controller's own.
  [[nodiscard]] frugal::decision end_step(frugal::controller& ctl, const frugal::step& s) {
#if FMNIST_MPI
    if (job_) return note(job_->end_step(ctl, s));
#endif
    return ctl.end_step(s);
  }
  [[nodiscard]] frugal::decision end_epoch(frugal::controller& ctl, const frugal::epoch& e) {
#if FMNIST_MPI
    if (job_) return note(job_->end_epoch(ctl, e));
#endif
    return ctl.end_epoch(e);
  }
  // After the loop: a stop pending on any rank becomes every rank's; the job's totals are exact.
  void end_run(frugal::controller& ctl) {
#if FMNIST_MPI
    if (job_) {
      (void)job_->end_run(ctl);
      return;
    }
#endif
    (void)ctl.end_run();
  }
  // Whether the loop ends: with several ranks, only on a stop they agreed (a signal one rank saw
  // reaches the others at the next checkpoint; a rank leaving on its own would leave them waiting).
  [[nodiscard]] bool should_stop(const frugal::controller& ctl) const {
    return job_ready() && size_ > 1 ? stopped_ : ctl.should_stop();
  }

  // This rank's part of n items: [first, first + count), sizes differing by one at most; all of
  // them with one process.
  [[nodiscard]] std::pair<std::size_t, std::size_t> share(std::size_t n) const noexcept {
    const auto k = static_cast<std::size_t>(size_), r = static_cast<std::size_t>(rank_);
    const std::size_t base = n / k, extra = n % k;
    return {r * base + std::min(r, extra), base + (r < extra ? 1 : 0)};
  }
  // FLOPs of a step of `batch` samples, over the job (each rank's share, its update included):
  // the forecast before a step is measured.
  [[nodiscard]] std::uint64_t step_flops(const trainer& t, Eigen::Index batch) const noexcept {
    if (size_ == 1) return t.step_flops(batch);
    std::uint64_t f = 0;
    const auto n = static_cast<std::size_t>(batch), k = static_cast<std::size_t>(size_);
    for (std::size_t r = 0; r < k; ++r)
      if (const std::size_t m = n / k + (r < n % k ? 1 : 0); m > 0) f += t.step_flops(static_cast<Eigen::Index>(m));
    return f;
  }

  // An evaluation of this rank's shares, summed over the ranks: every rank gets the job's.
  [[nodiscard]] evaluation combine(evaluation e) {
#if FMNIST_MPI
    if (job_ && size_ > 1) {
      const auto n = static_cast<double>(e.samples);
      double sums[3] = {e.loss * n, std::round(e.accuracy * n), n};
      job_->allreduce_sum(sums, 3);
      e.samples = static_cast<std::size_t>(sums[2]);
      e.loss = sums[2] > 0 ? sums[0] / sums[2] : 0;
      e.accuracy = sums[2] > 0 ? sums[1] / sums[2] : 0;
    }
#endif
    return e;
  }

  // The job's figures exchanged now: the budget reads the exact totals (before a report, or a
  // forecast after the loop). Collective; nothing with one process.
  void exchange() {
#if FMNIST_MPI
    if (job_) job_->exchange();
#endif
  }

  // Whether every rank's weights are the same, bit for bit (FNV-1a of the parameters compared
  // over the ranks). Collective; true with one process.
  [[nodiscard]] bool same_weights([[maybe_unused]] const parameters& p) {
#if FMNIST_MPI
    if (job_ && size_ > 1) {
      detail::fnv1a h;
      for (std::size_t l = 0; l < p.w.size(); ++l) {
        h.add(reinterpret_cast<const char*>(p.w[l].data()), static_cast<std::size_t>(p.w[l].size()) * sizeof(float));
        h.add(reinterpret_cast<const char*>(p.b[l].data()), static_cast<std::size_t>(p.b[l].size()) * sizeof(float));
      }
      std::vector<std::uint64_t> all(static_cast<std::size_t>(size_), 0);
      all[static_cast<std::size_t>(rank_)] = h.value();
      job_->allreduce_sum(all.data(), all.size());
      return std::all_of(all.begin(), all.end(), [&](std::uint64_t v) { return v == all.front(); });
    }
#endif
    return true;
  }

  // report.json: the budget and the controller's section (frugal::write_json_report), and under
  // MPI the job's "ranks" (each rank's own figures) and "exchanges" (frugal::mpi::job's report).
  void write_report(std::ostream& out, const frugal::budget& run, const frugal::controller& ctl) const {
#if FMNIST_MPI
    if (job_) {
      job_->write_json_report(out, ctl);  // the job's figures, "ranks" and "exchanges" inside
      return;
    }
#endif
    frugal::write_json_report(out, run, ctl);
  }

  // The summary's lines about the job (rank 0's stdout): each rank's figures, the exchanges and
  // the gradients' reduction per step.
  void print_summary([[maybe_unused]] std::ostream& out, [[maybe_unused]] int threads) const {
#if FMNIST_MPI
    if (!job_) return;
    out << "data parallel: " << size_ << " rank" << (size_ == 1 ? "" : "s") << " (" << local_ << " on this node), "
        << threads << " shard(s) each\n";
    job_->print_ranks(out);
    char line[200];
    std::snprintf(line, sizeof line,
                  "  allreduce: %llu steps, %.1f us each on rank 0 (gradients and scores, waiting included)\n",
                  static_cast<unsigned long long>(allreduces_),
                  allreduces_ ? allreduce_seconds_ * 1e6 / static_cast<double>(allreduces_) : 0.0);
    out << line;
#endif
  }

  // The process's exit status, the same on every rank: the highest (a signal's 128 + n on the
  // rank that got it, over the others' 128). Collective.
  [[nodiscard]] int finish(int status) {
#if FMNIST_MPI
    if (size_ > 1) {
      if (job_) {
        std::vector<std::int64_t> all(static_cast<std::size_t>(size_), 0);
        all[static_cast<std::size_t>(rank_)] = status;
        job_->allreduce_sum(all.data(), all.size());
        return static_cast<int>(*std::max_element(all.begin(), all.end()));
      }
      int highest = status;
      MPI_Allreduce(&status, &highest, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
      return highest;
    }
#endif
    return status;
  }

  // A failure on this rank that the others cannot know of (out of memory): ends the whole job
  // with `status`, rather than leave them waiting. Returns with one process.
  void fail([[maybe_unused]] int status) {
#if FMNIST_MPI
    if (size_ > 1) {
      if (job_) job_->abort("this rank failed", status);
      MPI_Abort(MPI_COMM_WORLD, status);
    }
#endif
  }

 private:
  [[nodiscard]] bool job_ready() const noexcept {
#if FMNIST_MPI
    return job_ != nullptr;
#else
    return false;
#endif
  }
  frugal::decision note(frugal::decision d) {
    if (d.stops()) stopped_ = true;
    return d;
  }

#if FMNIST_MPI
  std::optional<frugal::mpi::environment> env_;
  std::unique_ptr<frugal::mpi::job> job_;
#endif
  int rank_ = 0;
  int size_ = 1;
  int local_ = 1;
  std::FILE* quiet_ = nullptr;
  bool stopped_ = false;
  double allreduce_seconds_ = 0;
  std::uint64_t allreduces_ = 0;
};

}  // namespace fmnist
