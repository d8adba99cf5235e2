// Data-parallel training of the MLP: each batch split into shards that run forward and backward
// on oneTBB workers, gradients reduced after; every stage measured by a frugal scope.
#pragma once

#include "idx.hpp"
#include "mlp.hpp"

#include <frugal/budget.hpp>
#include <frugal/scope.hpp>
#include <frugal/tbb.hpp>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

namespace fmnist {

struct batch_result {
  double loss_sum = 0;  // summed over the batch's samples
  std::int64_t correct = 0;
};

struct evaluation {
  double loss = 0;      // mean cross-entropy
  double accuracy = 0;
  std::size_t samples = 0;
};

class trainer {
 public:
  // Shards: at most `shards` per batch (one per worker thread). The buffers that depend on the
  // batch follow it (workspace::resize): each step sizes them for its own batch, each
  // evaluation chunk for its chunk. What does not depend on it is allocated here: per shard a
  // gradient, and the gradient an accumulation gathers into (so the heap a step needs is
  // resident + a part that grows with the batch, the line frugal's memory model fits).
  trainer(mlp& model, optimizer& opt, int shards) : model_(model), opt_(opt), shards_(std::max(1, shards)) {
    for (int s = 0; s < shards_; ++s) work_.emplace_back(model.sizes(), 0);
    accumulated_.emplace(model.sizes());
  }

  [[nodiscard]] int shards() const noexcept { return shards_; }

  // Data-parallel training across processes (data_parallel.hpp): at every step, after this
  // process's shards are reduced and before the update, `f` gets the gradient about to be
  // applied (null on a step that only accumulates), the step's scores and its learning rate, and
  // may replace them (the sums over the processes; one process's rate, so that every process
  // applies the same update). Empty, the default: this process's batch alone.
  using reduction = std::function<void(parameters* gradient, batch_result& scores, float& lr)>;
  void reduce_with(reduction f) { reduce_ = std::move(f); }
  // The shards of the next steps and evaluations run in `arena` (nullptr: the caller's). The
  // shards stay as many: the threads change the speed, never the arithmetic.
  void run_in(tbb::task_arena* arena) noexcept { arena_ = arena; }

  // The gradient an accumulation has gathered and not yet applied (null when none), and its
  // restoration, for a checkpoint (checkpoint.hpp): the next step adds to it.
  [[nodiscard]] const parameters* pending_gradient() const noexcept { return pending_ ? &*accumulated_ : nullptr; }
  [[nodiscard]] parameters& restore_pending_gradient() noexcept {
    pending_ = true;
    return *accumulated_;
  }

  // After the model's hidden layer `hidden` kept the units `kept` (pruning.hpp): the pending
  // gradient shrinks the same way, and every shard's buffers are made anew for the new sizes
  // (empty: the next step or chunk sizes them, as after an evaluation).
  void keep_units(std::size_t hidden, const frugal::unit_selection& kept) {
    accumulated_->keep_units(hidden, kept);
    follow_model();
  }
  // After the model took another shape (a pruned checkpoint): buffers and the pending-gradient
  // store for it; nothing is pending.
  void follow_model() {
    work_.clear();  // the old buffers go first: the heap never holds both shapes
    for (int s = 0; s < shards_; ++s) work_.emplace_back(model_.sizes(), 0);
    if (accumulated_->w.size() != model_.params().w.size() || !same_shape(*accumulated_, model_.params())) {
      accumulated_.reset();  // the old store goes first: the heap never holds both
      accumulated_.emplace(model_.sizes());
      pending_ = false;
    }
  }

  // One optimisation step on the samples index[0..batch). With `run`, each stage is a scope
  // of it ("forward", "backward", "update": the caller opens "step"); with null, the same
  // work runs unmeasured (the plain side of an overhead comparison).
  [[nodiscard]] batch_result step(const dataset& data, const std::uint32_t* index, Eigen::Index batch, float lr,
                    frugal::budget* run) {
    return step(data, index, batch, lr, run, batch, true);
  }

  // One micro-batch of gradient accumulation: the gradients of index[0..batch), scaled to
  // `effective` samples, are added to the pending gradient; with `apply`, the optimiser steps
  // on it (the "update" scope) and it starts over. A step that applies its own gradient alone
  // (batch == effective) copies nothing.
  [[nodiscard]] batch_result step(const dataset& data, const std::uint32_t* index, Eigen::Index batch, float lr,
                    frugal::budget* run, Eigen::Index effective, bool apply) {
    const int used = shards_used(batch);
    const auto range = [&](int k) { return shard(batch, used, k); };
    fit_buffers(batch, used);
    {
      std::optional<frugal::scope> s;
      if (run) s.emplace(*run, "forward");
      for_shards(used, [&](int k) {
        const auto [first, n] = range(k);
        workspace& ws = work_[static_cast<std::size_t>(k)];
        ws.reset_scores();
        load_batch(ws, data.train_images, data.train_labels, index + first, n);
        forward(model_, ws, n, effective);
      });
    }
    {
      std::optional<frugal::scope> s;
      if (run) s.emplace(*run, "backward");
      for_shards(used, [&](int k) { backward(model_, work_[static_cast<std::size_t>(k)], range(k).second); });
      for (int k = 1; k < used; ++k) work_[0].grad.add(work_[static_cast<std::size_t>(k)].grad, model_.frozen_layers());
      if (used == 0)  // a process's empty share of a batch (data_parallel.hpp): it adds nothing
        for (std::size_t l = 0; l < work_[0].grad.w.size(); ++l) {
          work_[0].grad.w[l].setZero();
          work_[0].grad.b[l].setZero();
        }
      if (pending_ || !apply) {
        if (!pending_) {
          *accumulated_ = work_[0].grad;  // same shapes: no allocation
        } else {
          accumulated_->add(work_[0].grad, model_.frozen_layers());
        }
        pending_ = true;
      }
    }
    batch_result r;
    for (int k = 0; k < used; ++k) {
      r.loss_sum += work_[static_cast<std::size_t>(k)].loss_sum;
      r.correct += work_[static_cast<std::size_t>(k)].correct;
    }
    if (reduce_) reduce_(apply ? (pending_ ? &*accumulated_ : &work_[0].grad) : nullptr, r, lr);
    if (apply) {
      std::optional<frugal::scope> s;
      if (run) s.emplace(*run, "update");
      opt_.step(model_, pending_ ? *accumulated_ : work_[0].grad, lr);
      pending_ = false;
    }
    return r;
  }

  // The memory of a step of `batch` samples, measured without training: forward and backward
  // into the shards' gradients, no update, no accumulation (frugal::controller::probe_memory).
  void probe(const dataset& data, const std::uint32_t* index, Eigen::Index batch) {
    const int used = shards_used(batch);
    fit_buffers(batch, used);
    for_shards(used, [&](int k) {
      const auto [first, n] = shard(batch, used, k);
      workspace& ws = work_[static_cast<std::size_t>(k)];
      ws.reset_scores();
      load_batch(ws, data.train_images, data.train_labels, index + first, n);
      forward(model_, ws, n, batch);
      backward(model_, ws, n);
    });
    for (int k = 1; k < used; ++k) work_[0].grad.add(work_[static_cast<std::size_t>(k)].grad, model_.frozen_layers());
  }

  // An evaluation: begin_evaluation(), then chunks of images in order, then the result. Each
  // chunk is sharded like a step; the buffers follow the chunk (the step's are freed first, the
  // last chunk's at the end), so a chunk size chosen under a memory limit
  // (controller::chunk_size) is what it costs, and no step pays for an evaluation's buffers.
  void begin_evaluation() {
    fit_buffers(0, 0);  // the step's buffers go: a chunk's memory is then the chunk's alone
    for (workspace& ws : work_) ws.reset_scores();
    evaluated_ = 0;
  }
  void evaluate_chunk(const image_set& images, const std::vector<std::uint8_t>& labels, const std::uint32_t* index,
                      Eigen::Index n) {
    const int used = shards_used(n);
    fit_buffers(n, used);
    for_shards(used, [&](int k) {
      const auto [first, m] = shard(n, used, k);
      workspace& ws = work_[static_cast<std::size_t>(k)];
      load_batch(ws, images, labels, index + first, m);
      forward(model_, ws, m, m, false);
    });
    evaluated_ += static_cast<std::size_t>(n);
  }
  // The result; the chunk's buffers go, so the next step starts from the resident heap alone.
  [[nodiscard]] evaluation end_evaluation() {
    fit_buffers(0, 0);
    evaluation e;
    for (const workspace& ws : work_) {
      e.loss += ws.loss_sum;
      e.accuracy += static_cast<double>(ws.correct);
    }
    e.samples = evaluated_;
    if (evaluated_ > 0) {
      e.loss /= static_cast<double>(evaluated_);
      e.accuracy /= static_cast<double>(evaluated_);
    }
    return e;
  }

  // Loss and accuracy of the model on images index[0..n), forward only, in chunks of
  // `chunk` images (default_eval_chunk when 0). Charged to whatever scope the caller has open.
  [[nodiscard]] evaluation evaluate(const image_set& images, const std::vector<std::uint8_t>& labels,
                                    const std::vector<std::uint32_t>& index, Eigen::Index chunk = 0) {
    if (chunk <= 0) chunk = default_eval_chunk;
    begin_evaluation();
    const auto n = static_cast<Eigen::Index>(index.size());
    for (Eigen::Index at = 0; at < n; at += chunk)
      evaluate_chunk(images, labels, index.data() + at, std::min(chunk, n - at));
    return end_evaluation();
  }

  // FLOPs of a step of `batch` samples and of evaluating n samples, from the formulas: the
  // forecast before anything has been measured. With `frozen`: had the first that many layers
  // been frozen (quantizing.hpp), the model unchanged.
  [[nodiscard]] std::uint64_t step_flops(Eigen::Index batch, std::optional<std::size_t> frozen = std::nullopt) const noexcept {
    const int used = shards_used(batch);
    std::uint64_t f = 0;
    for (int k = 0; k < used; ++k) {
      const auto n = static_cast<std::uint64_t>(shard(batch, used, k).second);
      f += model_.forward_flops(n, frozen) + model_.backward_flops(n, frozen);
      // Shards scale their loss gradient to the whole batch.
      if (used > 1) f += flop::elementwise(static_cast<std::uint64_t>(model_.sizes().back()) * n);
    }
    return f + static_cast<std::uint64_t>(used - 1) * model_.trained_count(frozen) + opt_.step_flops(model_, frozen);
  }
  [[nodiscard]] std::uint64_t evaluation_flops(std::size_t n) const noexcept {
    return model_.forward_flops(static_cast<std::uint64_t>(n), 0);  // frozen layers evaluate in float
  }

  // Images per evaluation chunk without a memory limit: 256 per shard on two threads, large
  // enough that the products run at full speed.
  static constexpr Eigen::Index default_eval_chunk = 512;

 private:
  // Sizes the buffers of the `used` shards for their part of `batch` samples, and frees those
  // of the shards it leaves idle. On this (the calling) thread, so the allocation hooks see the
  // bytes exactly.
  void fit_buffers(Eigen::Index batch, int used) {
    // Shrinking ones first: the heap never holds a grown shard beside one not yet shrunk.
    const auto wanted = [&](int k) { return k < used ? shard(batch, used, k).second : Eigen::Index{0}; };
    for (int k = 0; k < shards_; ++k)
      if (wanted(k) < work_[static_cast<std::size_t>(k)].capacity) work_[static_cast<std::size_t>(k)].resize(wanted(k));
    for (int k = 0; k < shards_; ++k) work_[static_cast<std::size_t>(k)].resize(wanted(k));
  }

  [[nodiscard]] int shards_used(Eigen::Index batch) const noexcept {
    return static_cast<int>(std::min<Eigen::Index>(shards_, batch));
  }
  // Shard k of `used`: [first, first + n) of the batch, sizes differing by one at most.
  [[nodiscard]] static std::pair<Eigen::Index, Eigen::Index> shard(Eigen::Index batch, int used, int k) noexcept {
    const Eigen::Index base = batch / used, extra = batch % used;
    return {k * base + std::min<Eigen::Index>(k, extra), base + (k < extra ? 1 : 0)};
  }

  [[nodiscard]] static bool same_shape(const parameters& a, const parameters& b) noexcept {
    for (std::size_t l = 0; l < a.w.size(); ++l)
      if (a.w[l].rows() != b.w[l].rows() || a.w[l].cols() != b.w[l].cols()) return false;
    return true;
  }

  // f(k) for each shard k on its own oneTBB task, charged to the caller's open scopes; in the
  // arena run_in() named, if any (its threads, not the shards, say how many run at once).
  template <class F>
  void for_shards(int n, const F& f) {
    if (n == 1) {
      f(0);
      return;
    }
    const auto all = [&] {
      frugal::parallel_for(
          tbb::blocked_range<int>(0, n, 1),
          [&](const tbb::blocked_range<int>& r) {
            for (int k = r.begin(); k != r.end(); ++k) f(k);
          },
          tbb::simple_partitioner{});
    };
    if (arena_)
      arena_->execute(all);
    else
      all();
  }

  mlp& model_;
  optimizer& opt_;
  std::optional<parameters> accumulated_;  // the pending gradient of an accumulation
  bool pending_ = false;
  int shards_;
  tbb::task_arena* arena_ = nullptr;
  reduction reduce_;
  std::vector<workspace> work_;
  std::size_t evaluated_ = 0;  // images in the evaluation under way
};

}  // namespace fmnist
