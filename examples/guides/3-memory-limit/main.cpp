// Guide 3: a memory limit (peak_bytes) that the batch size is chosen to fit.
//
//   guide_memory_limit [ROOM]     ROOM: heap the training may add to what the program holds
//                                 once its data are loaded (default 1MiB)
//
// A step's heap grows with its batch. Before the first step the controller measures a step at
// two batch sizes (probe_memory), fits peak(b) = base + rise * b and starts at the largest batch
// forecast under the limit; gradient accumulation keeps 256 samples per update. The evaluation
// runs in chunks sized by the same kind of model (chunk_size). Walkthrough: README.md here.
#include "../model.hpp"

#include <frugal/frugal.hpp>
#include <frugal/report.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  const std::string room = argc > 1 ? argv[1] : "1MiB";
  const guide::data data = guide::load_fashion_mnist(3000, 1000, 0);
  guide::mlp model(64);
  const std::size_t update_batch = 256;  // samples per SGD update, however they are split

  // Heap figures come from frugal's allocation hooks (CMake: link frugal::allocation_hooks).
  // Where they do not count -- not linked, or a sanitizer owns malloc -- a peak_bytes limit
  // cannot be enforced: say so rather than pretend.
  const frugal::allocation_tracking_status tracking = frugal::allocation_tracking();
  if (!tracking)
    std::printf("warning: peak_bytes is not measured in this build (%s): the batch is not sized by memory\n",
                tracking.reason.c_str());

  // The limit is a level, how high the heap may stand: here what the program holds now (data,
  // model) plus ROOM. In a real program, a number ("peak_bytes=6GiB") or "peak_bytes=auto"
  // (the container's memory limit).
  const double limit = static_cast<double>(frugal::exact_heap_totals().live_bytes) + frugal::parse_bytes(room);
  frugal::budget run{"train", frugal::limits{}.wall(1s).peak_bytes(limit)};

  // The batch knob: start at 256, never below 8; effective_batch keeps 256 samples per update
  // (accumulation_steps() micro-batches of batch_size() each).
  frugal::controller ctl{run, frugal::controller_options{}
                                  .batch_size(update_batch)
                                  .batch_limits(8, update_batch)
                                  .effective_batch(update_batch)};

  // The probe does the memory-deciding work of a step of n samples (forward and backward) and
  // leaves the model unchanged (no update).
  (void)ctl.probe_memory([&](std::size_t n) {
    (void)model.backward(data.train, 0, static_cast<Eigen::Index>(n));
    model.clear_gradient();
  });
  if (const frugal::memory_model* m = ctl.level_model("peak_bytes"); m && !m->empty())
    std::printf("memory probe: peak(b) = %s + %s per sample; batch %zu x %zu accumulation steps\n",
                frugal::format_bytes(m->base()).c_str(), frugal::format_bytes(m->rise_per_unit()).c_str(),
                ctl.batch_size(), ctl.accumulation_steps());

  const frugal::linear_decay lr{0.1, run};
  std::size_t gathered = 0;  // samples in the gradient not yet applied
  while (!ctl.should_stop()) {
    frugal::scope epoch{run, "epoch"};
    bool stopped = false;
    for (Eigen::Index first = 0; first < data.train.size();) {
      const Eigen::Index n = std::min(static_cast<Eigen::Index>(ctl.batch_size()), data.train.size() - first);
      double loss = 0;
      {
        frugal::scope step{run, "step"};
        loss = model.backward(data.train, first, n);
        gathered += static_cast<std::size_t>(n);
        if (gathered >= update_batch) {  // the micro-batches make up a whole update
          model.update(lr());
          gathered = 0;
        }
      }
      first += n;
      // Without step{}.peak_bytes(...) the controller measures the heap since the last
      // checkpoint itself; a decision may shrink (or later grow) the batch.
      const frugal::decision d = ctl.end_step(frugal::step{}.loss(loss).samples(static_cast<std::size_t>(n)));
      if (d.has(frugal::action::shrink_batch) || d.has(frugal::action::grow_batch))
        std::printf("  batch now %zu x %zu: %s\n", d.batch_size(), d.accumulation_steps(), d.reason().c_str());
      stopped = d.stops();
      if (d.ends_epoch()) break;
    }
    if (stopped) break;

    // Evaluation in chunks: chunk_size() gives the largest chunk its own memory model fits under
    // the limit (the first chunk is small, to measure), end_chunk() records what it used.
    guide::scores val;
    std::size_t largest_chunk = 0;
    {
      frugal::scope s{run, "evaluation"};
      for (Eigen::Index first = 0; first < data.val.size();) {
        const std::size_t left = static_cast<std::size_t>(data.val.size() - first);
        const std::size_t chunk = ctl.chunk_size("evaluation", std::min<std::size_t>(left, 1000));
        val += model.evaluate(data.val, first, static_cast<Eigen::Index>(chunk));
        ctl.end_chunk("evaluation", chunk);
        first += static_cast<Eigen::Index>(chunk);
        largest_chunk = std::max(largest_chunk, chunk);
      }
    }
    std::printf("epoch %llu: val_acc %.4f (batch %zu x %zu, evaluation chunks up to %zu)\n",
                static_cast<unsigned long long>(ctl.epochs()), val.accuracy, ctl.batch_size(),
                ctl.accumulation_steps(), largest_chunk);
    (void)ctl.end_epoch();
  }
  (void)ctl.end_run();

  std::printf("\nstopped: %s\n", ctl.stop_message().c_str());
  if (tracking)
    std::printf("peak heap: %.0f B, limit %.0f B\n", run.used(frugal::resource::peak_bytes), limit);
  std::printf("batch: %zu x %zu accumulation steps = %zu samples per update\n\n", ctl.batch_size(),
              ctl.accumulation_steps(), ctl.effective_batch());
  frugal::print_report(std::cout, run);
}
