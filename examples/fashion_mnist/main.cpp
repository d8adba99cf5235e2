// fashion_mnist: an MLP trained on Fashion-MNIST inside a frugal budget (wall time, FLOPs,
// samples, ...), stopping before a limit is crossed, then reporting what everything cost.
#include "checkpoint.hpp"
#include "cli.hpp"
#include "data_parallel.hpp"
#include "deploy.hpp"
#include "idx.hpp"
#include "mlp.hpp"
#include "policy.hpp"
#include "progress.hpp"
#include "pruning.hpp"
#include "quantizing.hpp"
#include "thread_choice.hpp"
#include "trainer.hpp"

#include <frugal/allocation.hpp>
#include <frugal/controller.hpp>
#include <frugal/durable_file.hpp>
#include <frugal/signals.hpp>
#include <frugal/early_stopping.hpp>
#include <frugal/frugal.hpp>
#include <frugal/report.hpp>
#include <frugal/tbb.hpp>
#include <frugal/tsc_clock.hpp>
// The state document (--checkpoint, --resume) needs nlohmann_json: CMake defines this when
// the target frugal::state_json exists.
#if FMNIST_STATE_JSON
#include <frugal/state_json.hpp>
#endif

// trace.json seam: the lead's <frugal/trace.hpp> (opt-in, bounded recording of scopes as
// Chrome trace events) is used as soon as it exists; nothing else here depends on it.
#if __has_include(<frugal/trace.hpp>)
#include <frugal/trace.hpp>
#define FRUGAL_EXAMPLE_TRACE 1
#else
#define FRUGAL_EXAMPLE_TRACE 0
#endif

#include <oneapi/tbb/global_control.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <new>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using fmnist::options;

// What the run is doing, for the message of a std::bad_alloc that reaches main(): set before
// each phase that allocates much (the data, the model, training, the report). A fixed buffer,
// so the message itself needs no memory.
char g_doing[320] = "starting";

template <class... Args>
void doing(const char* format, Args... args) noexcept {
  std::snprintf(g_doing, sizeof g_doing, format, args...);
}

using fmnist::epoch_row;

// One row per evaluation. A score not measured (NaN: the test set between the run's start and
// its end, without --test-every-epoch; the validation at a stop between epochs) is an empty field.
void write_epochs_csv(std::ostream& out, const std::vector<epoch_row>& rows) {
  out << "epoch,wall_s,fraction_used,flops,batch_size,lr,train_loss,val_loss,val_accuracy,test_accuracy,parameters,"
         "step_flops\n";
  auto score = [](double v) {
    char b[32] = "";
    if (!std::isnan(v)) std::snprintf(b, sizeof b, "%.6f", v);
    return std::string(b);
  };
  char line[320];
  for (const epoch_row& r : rows) {
    std::snprintf(line, sizeof line, "%d,%.4f,%.6f,%.0f,%d,%.6g,%.6f,%s,%s,%s,%llu,%llu\n", r.epoch, r.wall_s,
                  r.fraction_used, r.flops, r.batch, static_cast<double>(r.lr), r.train_loss, score(r.val_loss).c_str(),
                  score(r.val_accuracy).c_str(), score(r.test_accuracy).c_str(),
                  static_cast<unsigned long long>(r.parameters), static_cast<unsigned long long>(r.step_flops));
    out << line;
  }
}

// Fraction used of each limited consumable, for the progress line (a level, peak_bytes, is a
// height under a ceiling, not budget spent: the progress line does not count it).
// Loss and accuracy on index[...], in chunks whose size the controller picks: under a
// peak_bytes limit, by its memory model of the "evaluation" stage (the first chunks measure it);
// otherwise the trainer's default chunk. With `fits`, each chunk first asks it whether a chunk of
// up to that many images still fits the budget, and the evaluation ends where one does not (the
// result's `samples` says how many images it covers). Under MPI a chunk is the job's (the default
// chunk per rank), each rank evaluates its share of it, and the result is the job's.
fmnist::evaluation evaluate(fmnist::data_parallel& dp, frugal::controller& ctl, fmnist::trainer& trainer,
                            const fmnist::image_set& images, const std::vector<std::uint8_t>& labels,
                            const std::vector<std::uint32_t>& index, const std::function<bool(std::size_t)>& fits = {}) {
  const std::size_t most = static_cast<std::size_t>(fmnist::trainer::default_eval_chunk) * static_cast<std::size_t>(dp.size());
  trainer.begin_evaluation();
  for (std::size_t at = 0; at < index.size();) {
    const std::size_t left = index.size() - at;
    if (fits && !fits(std::min(most, left))) break;
    const std::size_t chunk = ctl.chunk_size("evaluation", std::min(most, left));
    const auto [first, mine] = dp.share(chunk);
    if (mine > 0) trainer.evaluate_chunk(images, labels, index.data() + at + first, static_cast<Eigen::Index>(mine));
    ctl.end_chunk("evaluation", chunk);
    at += chunk;
  }
  return dp.combine(trainer.end_evaluation());
}

std::vector<std::pair<std::string, double>> fractions(const frugal::budget& run) {
  const frugal::limits l = run.limits();
  std::vector<std::pair<std::string, double>> out;
  for (frugal::resource r : frugal::all_resources)
    if (const auto lim = l.get(r); lim && frugal::is_consumable(r))
      out.emplace_back(std::string(frugal::to_string(r)), run.fraction_used(r));
  for (const auto& [name, lim] : l.unit_limits())
    out.emplace_back(name, lim > 0 ? run.used(std::string_view(name)) / lim : 1.0);
  return out;
}

// Creates `dir` if needed and checks that it takes files now, not after the whole budget is
// spent (--out /proc exists but takes no files); false after saying why on stderr.
bool prepare_directory(const char* option, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    std::fprintf(stderr, "fashion_mnist: %s: cannot create directory '%s': %s\n", option, dir.string().c_str(),
                 ec ? ec.message().c_str() : "exists and is not a directory");
    return false;
  }
  try {
    frugal::check_writable_directory(dir);
  } catch (const frugal::io_error& e) {
    std::fprintf(stderr, "fashion_mnist: %s: %s\n", option, e.what());
    return false;
  }
  return true;
}

// --deploy: the plan, a pruned and int8 copy of the model saved as OUT/model.deployed, and both
// models measured on the test set by the same code (deploy.hpp); the block on stdout and
// OUT/deploy.json. 0, or 1 after saying why on stderr.
int deploy_model(const fmnist::mlp& model, const fmnist::dataset& data, const fmnist::deploy_limits& limits,
                 const std::filesystem::path& out_dir, fmnist::progress_bar& progress) {
  doing("deploying the model (--deploy, MLP %s)", fmnist::shape_text(model.sizes()).c_str());
  try {
    const fmnist::deployment d = fmnist::deploy(model, data.test_images, data.test_labels, limits, out_dir);
    fmnist::print_deployment(stdout, d);
    const std::filesystem::path json = out_dir / "deploy.json";
    frugal::write_file_atomically(json, [&](std::ostream& o) { fmnist::write_deployment_json(o, d); });
    progress.note("wrote " + json.string() + (d.deployed ? ", " + d.file.string() : std::string()));
  } catch (const frugal::io_error& e) {
    std::fprintf(stderr, "fashion_mnist: --deploy: %s\n", e.what());
    return 1;
  } catch (const fmnist::deploy_error& e) {  // the file just written does not read back
    std::fprintf(stderr, "fashion_mnist: --deploy: %s\n", e.what());
    return 1;
  }
  return 0;
}

int train(options opt, fmnist::data_parallel& dp) {
  namespace fs = std::filesystem;
  fmnist::progress_bar progress(dp.progress_stream());

  // ---- output directories: checked first, so a typo costs no training -----------------
  const fs::path out_dir = opt.out_dir;
  std::error_code ec;
  // Under MPI rank 0 writes the files: the others wait for its answer.
  if (!dp.all(!dp.writes() || prepare_directory("--out", out_dir))) return 1;
  const fs::path checkpoint_dir = opt.checkpoint_dir;
  if (!opt.checkpoint_dir.empty()) {
#if !FMNIST_STATE_JSON
    std::fprintf(stderr, "fashion_mnist: --checkpoint: this build has no state document (frugal::state_json "
                         "needs nlohmann_json: apt-get install nlohmann-json3-dev, then rebuild)\n");
    return 1;
#endif
    if (!prepare_directory("--checkpoint", checkpoint_dir)) return 1;
  }

  // ---- data -------------------------------------------------------------------------------
  doing("loading the data from %s", opt.data_dir.c_str());
  fmnist::dataset data;
  const auto load_start = std::chrono::steady_clock::now();
  bool loaded = true;
  try {
    data = fmnist::load_fashion_mnist(opt.data_dir);
  } catch (const fmnist::data_error& e) {
    std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
    loaded = false;
  }
  if (!dp.all(loaded)) return 1;
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  // The last 5000 training images are held out for validation (early stopping, val loss).
  const std::size_t total = data.train_images.count;
  const std::size_t val_n = std::min<std::size_t>(5000, total / 10);
  const std::size_t train_n = total - val_n;
  if (train_n == 0 || data.test_images.count == 0) {
    std::fprintf(stderr, "fashion_mnist: %s: too few images to train and test\n", opt.data_dir.c_str());
    return 1;
  }
  std::vector<std::uint32_t> order(train_n), val_index(val_n), test_index(data.test_images.count);
  std::iota(order.begin(), order.end(), 0u);
  std::iota(val_index.begin(), val_index.end(), static_cast<std::uint32_t>(train_n));
  std::iota(test_index.begin(), test_index.end(), 0u);
  const int batch = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(opt.batch), train_n));

  // ---- model, shards, budget ------------------------------------------------------------
  // --threads N: N shards on N threads. auto: a shard per core, and how many threads run them is
  // measured as the run goes (thread_choice.hpp); the shards, hence the results, stay the same.
  // Under MPI, the cores of this machine shared by its ranks.
  const int cores = dp.cores();
  const int shards = opt.threads > 0 ? opt.threads : cores;
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(shards));
  {
    // The model's size from the command line, before any of it is allocated: 784-65536-65536-10
    // is 4.3e9 parameters, 17 GB of weights alone.
    const std::vector<int> sizes = fmnist::layer_sizes(opt.hidden);
    std::string shape;
    std::uint64_t params = 0;
    for (std::size_t l = 0; l < sizes.size(); ++l) {
      shape += (l ? "-" : "") + std::to_string(sizes[l]);
      if (l + 1 < sizes.size())
        params += static_cast<std::uint64_t>(sizes[l + 1]) * (static_cast<std::uint64_t>(sizes[l]) + 1);
    }
    doing("building the model (%s, %llu parameters, %s of weights)", shape.c_str(),
          static_cast<unsigned long long>(params), frugal::format_bytes(4.0 * static_cast<double>(params)).c_str());
  }
  fmnist::mlp model(fmnist::layer_sizes(opt.hidden), opt.seed);
  fmnist::optimizer optim(opt.optimizer, model, opt.momentum);
  fmnist::trainer trainer(model, optim, shards);
  std::mt19937_64 shuffle_rng(opt.seed * 0x9E3779B97F4A7C15ull + 1);

  // --deploy-from DIR: no training, no budget; the model of DIR's checkpoint (as narrow, and with
  // as many frozen int8 layers, as it was saved), deployed as at a run's end.
  if (!opt.deploy_from.empty()) {
#if FMNIST_STATE_JSON
    const fs::path dir = opt.deploy_from;
    fmnist::training_progress saved;
    try {
      const frugal::run_state state = frugal::load_state(dir / "state.json");
      fmnist::load_checkpoint(dir, state.controller.steps, model, optim, trainer, order, shuffle_rng, saved, true,
                              model.layers() - 1);
    } catch (const std::exception& e) {  // frugal::io_error, frugal::state_error, fmnist::checkpoint_error
      std::fprintf(stderr, "fashion_mnist: --deploy-from: %s\n", e.what());
      return 1;
    }
    progress.note("--deploy-from " + dir.string() + ": MLP " + fmnist::shape_text(model.sizes()) + " after " +
                  std::to_string(saved.total_steps) + " steps" +
                  (model.frozen_layers() > 0 ? ", " + std::to_string(model.frozen_layers()) + " layer(s) frozen as int8"
                                             : std::string()));
    return deploy_model(model, data, *opt.deploy, out_dir, progress);
#else
    std::fprintf(stderr, "fashion_mnist: --deploy-from: this build has no state document (frugal::state_json "
                         "needs nlohmann_json: apt-get install nlohmann-json3-dev, then rebuild)\n");
    return 1;
#endif
  }

  frugal::budget run{"train", opt.budget};
  // --price: the run's cost is its wall, CPU and FLOPs at these prices (a core-hour price makes
  // the budget measure CPU time); a cost limit is then watched like any other.
  if (opt.price) run.set_price(*opt.price);
  // An energy limit needs a counter to read: say why there is none rather than never stop.
  if (opt.budget.has(frugal::resource::energy) && !run.measures_energy()) {
    std::fprintf(stderr, "fashion_mnist: error: --budget energy=...: energy cannot be measured here: %s\n",
                 run.energy_unavailable().c_str());
    return 2;
  }
  frugal::budget& eval = run.child("eval");
  const frugal::unit_id samples = frugal::unit("samples");
  // A trace grows the heap as scopes end, a part no batch size controls: under a memory limit
  // it is off unless asked for (and then it counts against the limit like any memory).
  const bool memory_limited = opt.budget.get(frugal::resource::peak_bytes) || opt.budget.get(frugal::resource::rss_bytes);
  if (memory_limited && !opt.trace_events_given) opt.trace_events = 0;
#if FRUGAL_EXAMPLE_TRACE
  if (opt.trace_events > 0) frugal::start_tracing(opt.trace_events);
#endif

  // The controller decides after every step: it stops before a step whose forecast (the
  // largest of the recent steps) would cross a limit, ends an epoch early when the rest of it
  // and the evaluation at its end would not fit, stops after an evaluation when one more step
  // and evaluation would not, sizes the batch under a peak_bytes limit by its memory model
  // (gradient accumulation keeps the --batch samples per update; any size down to 1), and
  // applies early stopping on the validation loss.
  frugal::controller_options control;
  control.batch_size(static_cast<std::size_t>(batch))
      .batch_limits(1, static_cast<std::size_t>(batch))
      .effective_batch(static_cast<std::size_t>(batch))
      .epoch_samples(train_n)
      .planned_epochs(static_cast<std::size_t>(opt.epochs));
  // Lightning's EarlyStopping rules on the validation loss (<frugal/early_stopping.hpp>).
  if (opt.patience > 0)
    control.early_stop(frugal::early_stopping{"val_loss"}.patience(static_cast<std::size_t>(opt.patience)).min_delta(1e-4));
  // --prune: when the cost of the epochs planned (the steps and epoch ends left, at the measured
  // cost per step) exceeds what the limited wall, cpu or flops have left, the rule asks for that
  // shortfall of the cost to be removed (at most --prune-max at once); the loop below removes
  // hidden units to match (pruning.hpp). Its default warm-up (10 steps) and cooldown (16, over
  // which the controller measures what the pruning changed) stand.
  if (opt.prune.enabled)
    control.prune(frugal::prune_rule{}.name("prune hidden units").max_fraction(opt.prune.max_fraction));
  // --quantize: the same test of the plan; the one width it may choose is 8 bits, and what a step
  // then costs is what the job predicts for frozen int8 layers (their backward and update gone;
  // an int8 product charged like a float one), not 8 / 32 of it -- asked at each decision, so it
  // is the model's as it is then (narrower after a pruning, or a resumed pruned checkpoint), not
  // as it was when the controller was built. Deferred: a layer frozen at
  // step 10 would stay as initialised, so it fires when the saving is just enough for the rest
  // of the plan. Evaluations cost what they did (scales_epoch_ends(false)). With --prune too,
  // one compression at a time: the quantizing waits for a pruning's effect to be measured.
  if (opt.quantize.enabled)
    control.quantize(frugal::quantize_rule{}
                         .name("quantize layers")
                         .widths({8})
                         .expected_cost([&trainer, layers = opt.quantize.layers, batch](int) {
                           return fmnist::frozen_step_cost_fraction(trainer, layers, batch);
                         })
                         .defer()
                         .scales_epoch_ends(false));
  // The evaluations: the validation set at every epoch's end (early stopping), the test set once
  // at the run's end (or at every epoch's end too, --test-every-epoch). The run's end then does
  // test / validation images = 2 epoch ends' worth of evaluation more (the same forward passes
  // over twice the images): the controller keeps room for it on top of the next step and an
  // epoch's end, and counts it in the plan --prune fits.
  const double validation_flops = static_cast<double>(trainer.evaluation_flops(val_n));
  const double test_flops = static_cast<double>(trainer.evaluation_flops(test_index.size()));
  const double test_ratio = opt.test_every_epoch || validation_flops <= 0 ? 0 : test_flops / validation_flops;
  control.run_end_work(test_ratio);
  // No fixed margin: the controller measures each resource's headroom from the spread of its
  // costs (none for FLOPs and samples, which do not vary; what this machine's load needs for
  // wall and CPU time).
  frugal::controller ctl{run, control};
  // SIGTERM, SIGINT, SIGUSR1 (a scheduler's warning or time limit, Ctrl-C): the next checkpoint
  // stops the run, which then writes its reports as at any stop; a second signal ends the
  // process at once. Exit status 128 + the signal's number (143 for SIGTERM) after a clean stop.
  frugal::signal_stop signals;
  signals.bind(ctl);
  const double evaluation_flops = validation_flops + test_flops;
  const double first_step_flops = static_cast<double>(dp.step_flops(trainer, batch));
  const fmnist::evaluation_cost evaluation_cost(ctl, validation_flops, test_flops, test_ratio,
                                                [&](std::size_t b) {
                                                  return static_cast<double>(dp.step_flops(trainer, static_cast<Eigen::Index>(
                                                      b > 0 ? b : static_cast<std::size_t>(batch))));
                                                });
  // The controller learns an evaluation's cost at the first epoch's end; until then this
  // callback keeps room for it (the validation and the test: the run may end in that epoch).
  ctl.add_callback("first evaluation reserve", fmnist::first_evaluation_reserve(ctl, evaluation_cost));
  // Where the loop is and what it has gathered: a new run's start, or what --resume reads back.
  fmnist::training_progress prog;
  prog.smallest_batch = static_cast<std::uint64_t>(batch);
  prog.lr = opt.lr;
  [[maybe_unused]] const fs::path state_file = checkpoint_dir / "state.json";
  bool resumed = false;
#if FMNIST_STATE_JSON
  // --resume: the budget carries what the earlier processes used (frugal::resume, before any
  // scope opens on it), the controller its counters, models, rules and stop; the model, the
  // optimizer and the loop position come from the model file state.json names.
  if (!opt.checkpoint_dir.empty() && fs::exists(state_file)) {
    if (!opt.resume) {
      progress.note("--checkpoint: " + state_file.string() +
                    " exists; without --resume this run starts anew and its checkpoints replace it");
    } else {
      doing("resuming from %s", state_file.string().c_str());
      try {
        frugal::resume(state_file, run, ctl);
        fmnist::load_checkpoint(checkpoint_dir, ctl.steps(), model, optim, trainer, order, shuffle_rng, prog,
                                opt.prune.enabled, opt.quantize.enabled ? opt.quantize.layers : 0);
      } catch (const std::exception& e) {  // frugal::state_error, fmnist::checkpoint_error, a budget's refusal
        std::fprintf(stderr, "fashion_mnist: --resume: %s\n", e.what());
        return 1;
      }
      resumed = true;
      progress.note("resumed from " + state_file.string() + ": epoch " + std::to_string(prog.epoch) + ", step " +
                    std::to_string(ctl.steps()) + ", " + frugal::format_duration(run.used(frugal::resource::wall)) +
                    " of wall used before; " + frugal::format_duration(run.downtime().count()) +
                    " between the processes, not charged");
    }
  } else if (opt.resume) {
    progress.note("--resume: no checkpoint in " + checkpoint_dir.string() + " yet: starting anew");
  }
#endif
  const fmnist::learning_rate schedule(opt.lr_schedule, opt.lr, run);
  const frugal::limits limits = run.limits();
  // Under a memory limit, the controller measures a step's memory before the first one: the
  // forward and backward of the smallest batch, then of the largest size that measurement
  // allows, no update; training then starts at the largest batch the fitted line says fits
  // (or stops now, if not even one sample does). Nothing happens without a peak_bytes limit,
  // nor on a resume (the restored controller has its memory model).
  if (!resumed) {
    doing("measuring the memory of a step (peak_bytes limit %s)",
          limits.get(frugal::resource::peak_bytes) ? frugal::format_bytes(*limits.get(frugal::resource::peak_bytes)).c_str()
                                                   : "none");
    frugal::scope s{run, "memory probe"};
    (void)ctl.probe_memory([&](std::size_t n) { trainer.probe(data, order.data(), static_cast<Eigen::Index>(n)); });
  }
  if (const frugal::memory_model* m = ctl.level_model("peak_bytes"); m && !m->empty())
    progress.note("memory probe: peak = " + frugal::format_bytes(m->base()) + " + " +
                  frugal::format_bytes(m->rise_per_unit()) + " per sample; batch " + std::to_string(ctl.batch_size()) +
                  " x " + std::to_string(ctl.accumulation_steps()) + " accumulation");
  frugal::heap_watch heap;  // a step's heap (its level, and where it started), for the memory model
  // Under MPI, from here on: one budget for the job, decisions agreed, gradients summed.
  dp.join(run, ctl, trainer);

  char optimizer_text[64];
  if (opt.optimizer == fmnist::optimizer_kind::sgd)
    std::snprintf(optimizer_text, sizeof optimizer_text, "SGD (momentum %g), lr %g", static_cast<double>(opt.momentum),
                  static_cast<double>(opt.lr));
  else
    std::snprintf(optimizer_text, sizeof optimizer_text, "Adam, lr %g", static_cast<double>(opt.lr));
  const std::string planned_layers = fmnist::shape_text(fmnist::layer_sizes(opt.hidden));
  std::string layers = fmnist::shape_text(model.sizes());  // narrower after a pruning
  progress.note("fashion_mnist: " + std::to_string(train_n) + " training, " + std::to_string(val_n) +
                " validation, " + std::to_string(test_index.size()) + " test images (loaded in " +
                frugal::format_duration(load_seconds) + "); MLP " + layers + ", " +
                std::to_string(model.params().count()) + " parameters; " + optimizer_text + " " +
                std::string(fmnist::to_string(opt.lr_schedule)) + "; batch " + std::to_string(batch) + " in " +
                std::to_string(trainer.shards()) + " shard(s); budget \"" + opt.budget_text + "\"");

  // ---- training -------------------------------------------------------------------------
  const long steps_per_epoch = static_cast<long>((train_n + static_cast<std::size_t>(batch) - 1) /
                                                 static_cast<std::size_t>(batch));
  const double planned_steps = static_cast<double>(steps_per_epoch) * opt.epochs;
  std::string stop_reason;

  // Before anything is measured, the formulas: a FLOP or sample limit that cannot hold one step
  // and the evaluation is not worth starting on. (A budget already spent, the controller has
  // stopped on its own: its words stand.)
  if (!dp.should_stop(ctl)) {
    if (const auto flops = limits.get(frugal::resource::flops); flops && first_step_flops + evaluation_flops > *flops)
      stop_reason = "budget: one step and the final evaluation do not fit the flops limit (forecast from the formulas)";
    if (const auto n = limits.get("samples"); n && static_cast<double>(batch) > *n)
      stop_reason = "budget: one step does not fit the samples limit";
  }

  // --checkpoint: the model file, then state.json naming it (by the controller's step count),
  // then the older model files go. After an epoch's end its time is charged to that end (the
  // controller then keeps room for it with the final evaluation), not to the next step.
  bool at_epoch_end = false;  // the controller's last checkpoint was end_epoch()
  auto save_checkpoint = [&]() -> bool {
#if FMNIST_STATE_JSON
    if (opt.checkpoint_dir.empty()) return true;
    doing("saving a checkpoint to %s", opt.checkpoint_dir.c_str());
    try {
      {
        frugal::scope s{run, "checkpoint"};
        fmnist::save_checkpoint(checkpoint_dir, ctl.steps(), model, optim, trainer, order, shuffle_rng, prog);
      }
      if (at_epoch_end) ctl.charge_to_epoch_end();
      frugal::save_state(state_file, run, ctl);
      fmnist::remove_older_checkpoints(checkpoint_dir, ctl.steps());
      if (at_epoch_end) ctl.charge_to_epoch_end();
    } catch (const frugal::io_error& e) {
      std::fprintf(stderr, "fashion_mnist: --checkpoint: %s\n", e.what());
      return false;
    }
#endif
    return true;
  };

  constexpr double not_measured = std::numeric_limits<double>::quiet_NaN();  // epochs.csv: an empty field

  // Samples in the trainer's pending gradient (prog.accumulated): with a shrunken batch,
  // micro-batches are gathered until --batch samples (or the epoch's last) make an update. An
  // epoch the controller ends early leaves its part for the next one's first update.
  bool stopped_at_step = false;
  // The threads that run the shards: measured at each epoch's start unless --threads fixed them.
  // Under a CPU-time limit without a wall limit a thread's time is what is scarce, not the wall.
  fmnist::thread_choice workers(
      opt.threads > 0 ? std::vector<int>{opt.threads} : fmnist::thread_choice::candidates_for(cores),
      limits.get(frugal::resource::cpu).has_value() && !limits.get(frugal::resource::wall).has_value());
  std::int64_t steps_here = 0;  // steps this process ran (a resume of a finished run runs none)
  while (prog.epoch <= opt.epochs && stop_reason.empty() && !dp.should_stop(ctl)) {
    const int epoch = prog.epoch;
    workers.remeasure();
    doing("training (epoch %d, MLP %s, batch %d, %d thread(s))", epoch, layers.c_str(), batch, workers.chosen());
    fmnist::progress_status status;
    status.epoch = epoch;
    status.epochs = opt.epochs;
    status.steps_per_epoch = steps_per_epoch;
    {
      frugal::scope epoch_scope{run, "epoch"};
      if (prog.start == 0) std::shuffle(order.begin(), order.end(), shuffle_rng);  // else resumed mid-epoch
      long step = static_cast<long>((prog.start + static_cast<std::size_t>(batch) - 1) / static_cast<std::size_t>(batch));
      for (std::size_t start = prog.start; start < train_n; ++step) {
        const std::size_t b = ctl.batch_size();
        const std::size_t n = std::min(b, train_n - start);
        const bool apply = prog.accumulated + n >= static_cast<std::size_t>(batch) || start + n == train_n;
        prog.lr = schedule.at(std::max(fmnist::budget_progress(run, limits, evaluation_cost),
                                       static_cast<double>(prog.total_steps) / planned_steps));
        fmnist::batch_result r;
        heap.reset();
        trainer.run_in(&workers.arena());
        const bool timed = workers.measuring();
        const bool by_cpu = timed && workers.by_cpu();
        const std::int64_t began = by_cpu ? frugal::process_cpu_now_ns() : frugal::wall_now_ns();
        {
          frugal::scope s{run, "step"};
          // Under MPI this rank's share of the batch; r is then the whole batch's.
          const auto [first, mine] = dp.share(n);
          r = trainer.step(data, order.data() + start + first, static_cast<Eigen::Index>(mine), prog.lr, &run, batch,
                           apply);
          frugal::add_units(samples, static_cast<double>(mine));
        }
        if (timed) {
          const std::int64_t ended = by_cpu ? frugal::process_cpu_now_ns() : frugal::wall_now_ns();
          if (workers.record(static_cast<double>(ended - began) * 1e-9, static_cast<double>(n)))
            progress.note("step " + std::to_string(prog.total_steps + 1) + ": threads: " + workers.describe());
        }
        prog.accumulated = apply ? 0 : prog.accumulated + n;
        start += n;
        prog.start = start;
        ++prog.total_steps;
        ++steps_here;
        prog.loss_sum += r.loss_sum;
        prog.correct += r.correct;
        prog.seen += n;
        prog.train_peak = std::max(prog.train_peak, static_cast<double>(heap.peak_bytes()));
        const frugal::decision d = dp.end_step(ctl, frugal::step{}
                                                    .loss(r.loss_sum / static_cast<double>(n))
                                                    .samples(n)
                                                    .peak_bytes(static_cast<double>(heap.peak_bytes()))
                                                    .start_bytes(static_cast<double>(heap.start_bytes())));
        at_epoch_end = false;
        if (d.has(frugal::action::shrink_batch) || d.has(frugal::action::grow_batch)) {
          prog.smallest_batch = std::min<std::uint64_t>(prog.smallest_batch, d.batch_size());
          progress.note("step " + std::to_string(prog.total_steps) + ": " + d.reason());
        }
        if (d.has(frugal::action::prune)) {
          // The samples of the plan not yet trained: the rest of this epoch and the epochs after.
          const std::uint64_t planned_samples = static_cast<std::uint64_t>(opt.epochs) * train_n;
          const std::uint64_t done = static_cast<std::uint64_t>(epoch - 1) * train_n + start;
          const std::optional<fmnist::prune_event> e =
              fmnist::prune_hidden_layer(model, optim, trainer, opt.prune, d.prune_fraction(),
                                         planned_samples > done ? planned_samples - done : 0, static_cast<std::size_t>(batch));
          if (e) {
            layers = fmnist::shape_text(model.sizes());
            progress.note("step " + std::to_string(prog.total_steps) + ": pruned hidden layer " +
                          std::to_string(e->layer) + " from " + std::to_string(e->units_before) + " to " +
                          std::to_string(e->units_after) + " units (MLP " + layers + ", " +
                          std::to_string(model.params().count()) + " parameters): a step of " + std::to_string(batch) +
                          " samples " + frugal::format_count(static_cast<double>(e->step_flops_before)) + " -> " +
                          frugal::format_count(static_cast<double>(e->step_flops_after)) + " FLOPs; " + d.reason());
          } else {
            progress.note("step " + std::to_string(prog.total_steps) + ": no pruning: hidden layer " +
                          std::to_string(opt.prune.layer) + " is at its floor of " +
                          std::to_string(std::min(opt.prune.min_units, model.sizes()[opt.prune.layer])) +
                          " units (--prune-min-units); " + d.reason());
          }
        }
        if (d.has(frugal::action::quantize)) {
          if (const std::optional<fmnist::quantize_event> e = fmnist::freeze_leading_layers(model, trainer, opt.quantize, batch))
            progress.note("step " + std::to_string(prog.total_steps) + ": froze layer(s) " +
                          std::to_string(e->layers_before + 1) + "-" + std::to_string(e->layers_after) +
                          " as int8 per-channel weights (" + frugal::format_bytes(static_cast<double>(e->float_bytes)) +
                          " -> " + frugal::format_bytes(static_cast<double>(e->int8_bytes)) + "; " +
                          std::to_string(model.trained_count()) + " of " + std::to_string(model.params().count()) +
                          " parameters trained): a step of " + std::to_string(batch) + " samples " +
                          frugal::format_count(static_cast<double>(e->step_flops_before)) + " -> " +
                          frugal::format_count(static_cast<double>(e->step_flops_after)) + " FLOPs; " + d.reason());
        }

        status.step = step + 1;
        status.batch = static_cast<int>(ctl.batch_size());
        status.lr = prog.lr;
        status.loss = prog.loss_sum / static_cast<double>(prog.seen);
        status.accuracy = static_cast<double>(prog.correct) / static_cast<double>(prog.seen);
        if (progress.due()) {
          status.used = fractions(run);
          const frugal::cost_model* wall = ctl.step_model(frugal::resource::wall);
          const double left = std::min(fmnist::steps_left(ctl, evaluation_cost, ctl.batch_size()),
                                       planned_steps - static_cast<double>(prog.total_steps));
          status.seconds_left = wall && !wall->empty() ? left * wall->mean(ctl.batch_size()) : -1;
          status.epochs_left = left / static_cast<double>(steps_per_epoch);
          progress.update(status);
        }
        if (d.stops()) stopped_at_step = true;
        if (d.ends_epoch()) break;
      }
      // A stop decided at a step means even the next step does not fit (or the loss is not
      // finite, or a signal came): an evaluation now would run past the limit. The last
      // evaluation stands, and a resume goes on from this step (prog.epoch, prog.start).
      if (stopped_at_step) break;

      // Evaluation, the end of every epoch (a full one, one the controller ended early, or the
      // last): its own child budget (charged to train too), inside the epoch's scope. The test
      // set only with --test-every-epoch; else once, at the run's end (below the loop).
      fmnist::evaluation val;
      std::optional<fmnist::evaluation> test;
      heap.reset();
      {
        doing("evaluating the validation set (epoch %d)", epoch);
        frugal::scope s{eval, "validation"};
        val = evaluate(dp, ctl, trainer, data.train_images, data.train_labels, val_index);
      }
      if (opt.test_every_epoch) {
        doing("evaluating the test set (epoch %d)", epoch);
        frugal::scope s{eval, "test"};
        test = evaluate(dp, ctl, trainer, data.test_images, data.test_labels, test_index);
        prog.last_test = test;
      }
      prog.eval_peak = std::max(prog.eval_peak, static_cast<double>(heap.peak_bytes()));
      // Early stopping, and whether one more step and evaluation fit.
      (void)dp.end_epoch(ctl, frugal::epoch{}.metric("val_loss", val.loss));
      at_epoch_end = true;

      prog.rows.push_back(epoch_row{epoch, run.used(frugal::resource::wall), run.fraction_used(),
                                    run.used(frugal::resource::flops), static_cast<int>(ctl.batch_size()), prog.lr,
                                    prog.loss_sum / static_cast<double>(std::max<std::uint64_t>(prog.seen, 1)),
                                    val.loss, val.accuracy, test ? test->accuracy : not_measured,
                                    model.params().count(), trainer.step_flops(batch)});
      prog.loss_sum = 0;
      prog.correct = 0;
      prog.seen = 0;
      status.used = fractions(run);
      const double left = std::min(fmnist::steps_left(ctl, evaluation_cost, ctl.batch_size()),
                                   planned_steps - static_cast<double>(prog.total_steps));
      const frugal::cost_model* wall = ctl.step_model(frugal::resource::wall);
      status.seconds_left = wall && !wall->empty() ? left * wall->mean(ctl.batch_size()) : -1;
      status.epochs_left = left / static_cast<double>(steps_per_epoch);
      progress.epoch_done(status, fmnist::epoch_scores{val.loss, val.accuracy, test ? test->accuracy : not_measured});
    }  // the epoch's scope ends before the save: the state describes whole epochs
    prog.epoch = epoch + 1;
    prog.start = 0;
    // The stop's save comes after end_run(), below.
    if (!ctl.should_stop() && prog.epoch <= opt.epochs && !save_checkpoint()) return 1;
  }
  dp.end_run(ctl);  // a stop that came between checkpoints (on any rank) becomes the run's stop here
  if (stop_reason.empty())
    stop_reason = ctl.should_stop() ? ctl.stop_message() : "done: all " + std::to_string(opt.epochs) + " epochs";

  // The final test evaluation (without --test-every-epoch), by the process that ends the run: not
  // after a signal with --checkpoint (a resume goes on), nor when this process trained nothing
  // (a resume of a finished run: the saved test accuracy stands), nor without any training. The
  // controller kept room for it (run_end_work); it runs unless its forecast would cross a
  // limit now (with the headroom unless its room was kept: a stop at an epoch's end).
  std::string test_note = "the budget does not fit one step and an evaluation";
  std::string test_partial;  // when the budget let only part of the test set be evaluated
  if (!opt.test_every_epoch && prog.total_steps > 0 && (steps_here > 0 || !prog.last_test)) {
    const bool resumable = ctl.stop_reason() == frugal::stop_reason::signal && !opt.checkpoint_dir.empty();
    // In chunks, each only if it still fits: the controller kept room for the whole test set, but
    // a machine that slowed at the run's end (a last validation slower than forecast) would
    // otherwise cost all of it; then the accuracy is that of the first images only, and says so.
    const std::size_t test_n = test_index.size();
    auto share = [&](std::size_t images) { return static_cast<double>(images) / static_cast<double>(test_n); };
    const std::size_t first_chunk = static_cast<std::size_t>(fmnist::trainer::default_eval_chunk) * static_cast<std::size_t>(dp.size());
    std::string misfit = fmnist::final_test_misfit(ctl, evaluation_cost, !at_epoch_end, share(std::min(first_chunk, test_n)));
    if (!dp.all(misfit.empty()) && misfit.empty()) misfit = "another rank's forecast";
    if (resumable) {
      prog.last_test.reset();
      test_note = "stopped by a signal: the process that resumes from " + opt.checkpoint_dir +
                  " and ends the run evaluates it";
    } else if (!misfit.empty()) {
      prog.last_test.reset();
      test_note = "the final test evaluation would not fit: " + misfit;
    } else {
      doing("evaluating the test set (the run's end)");
      heap.reset();
      {
        frugal::scope s{eval, "test"};
        prog.last_test = evaluate(dp, ctl, trainer, data.test_images, data.test_labels, test_index, [&](std::size_t chunk) {
          dp.exchange();  // under MPI, the job's usage now: every rank decides alike
          return dp.all(fmnist::final_test_misfit(ctl, evaluation_cost, !at_epoch_end, share(chunk)).empty());
        });
      }
      prog.eval_peak = std::max(prog.eval_peak, static_cast<double>(heap.peak_bytes()));
      if (prog.last_test->samples < test_n) {
        test_partial = "test accuracy on the first " + std::to_string(prog.last_test->samples) + " of " +
                       std::to_string(test_n) + " test images: the rest would not fit the budget";
        progress.note(test_partial);
      }
      // Its row: the last epoch's, when the model is that epoch's end's (a stop there, or the
      // epochs' cap); else (a stop between epochs) a row of its own, without a validation.
      if (prog.start == 0 && !prog.rows.empty() && prog.rows.back().epoch == prog.epoch - 1) {
        prog.rows.back().test_accuracy = prog.last_test->accuracy;
      } else {
        prog.rows.push_back(epoch_row{prog.epoch, run.used(frugal::resource::wall), run.fraction_used(),
                                      run.used(frugal::resource::flops), static_cast<int>(ctl.batch_size()), prog.lr,
                                      prog.loss_sum / static_cast<double>(std::max<std::uint64_t>(prog.seen, 1)),
                                      not_measured, not_measured, prog.last_test->accuracy, model.params().count(),
                                      trainer.step_flops(batch)});
      }
      char scores[96];
      std::snprintf(scores, sizeof scores, "test set (the run's end): loss %.4f, accuracy %.4f", prog.last_test->loss,
                    prog.last_test->accuracy);
      progress.note(scores);
    }
  }
  // The stop's checkpoint (or the last epoch's): a resume goes on from here, or (all epochs
  // run, or a budget spent) finds nothing left to do.
  if (!save_checkpoint()) return 1;
  if (const auto smallest = static_cast<std::size_t>(prog.smallest_batch); smallest < static_cast<std::size_t>(batch))
    std::printf("batch: shrank to %zu (x%zu accumulation), now %zu\n", smallest,
                (static_cast<std::size_t>(batch) + smallest - 1) / smallest, ctl.batch_size());

  // ---- report -------------------------------------------------------------------------------
  // Under MPI: the job's exact totals, and the replicas compared (the last collective work).
  dp.exchange();
  const bool same_weights = dp.same_weights(model.params());
  doing("writing the report to %s", opt.out_dir.c_str());
  const double samples_seen = run.used("samples");
  std::printf("stopped: %s\nafter %.2f epochs (%ld steps, %.0f samples, %zu evaluations)\n", stop_reason.c_str(),
              samples_seen / static_cast<double>(train_n), static_cast<long>(prog.total_steps), samples_seen, prog.rows.size());
  if (opt.threads == 0) std::printf("threads: %s\n", workers.describe().c_str());
  if (layers != planned_layers)  // the prunings, each in the progress notes and report.json's "compressions"
    std::printf("pruned: MLP %s -> %s (%zu prunings), %llu parameters; a step of %d samples %.0f -> %llu FLOPs\n",
                planned_layers.c_str(), layers.c_str(),
                static_cast<std::size_t>(std::count_if(ctl.history().compressions.begin(), ctl.history().compressions.end(),
                                                       [](const frugal::compression_record& c) {
                                                         return c.kind == frugal::action::prune;
                                                       })),
                static_cast<unsigned long long>(model.params().count()), batch, first_step_flops,
                static_cast<unsigned long long>(trainer.step_flops(batch)));
  if (model.frozen_layers() > 0)  // the quantizing, in the progress notes and report.json's "compressions"
    std::printf("quantized: layer(s) 1-%zu frozen as int8 per-channel weights, %llu of %llu parameters trained; a step "
                "of %d samples %.0f -> %llu FLOPs\n",
                model.frozen_layers(), static_cast<unsigned long long>(model.trained_count()),
                static_cast<unsigned long long>(model.params().count()), batch, first_step_flops,
                static_cast<unsigned long long>(trainer.step_flops(batch)));
  // The heap's peaks in bytes (a limit is whole bytes: a check against it must be too).
  if (heap.available()) {
    const auto peak_limit = limits.get(frugal::resource::peak_bytes);
    std::printf("heap: peak %.0f B (%s); training steps %.0f B, evaluations %.0f B; limit %s\n",
                run.used(frugal::resource::peak_bytes), frugal::format_bytes(run.used(frugal::resource::peak_bytes)).c_str(),
                prog.train_peak, prog.eval_peak,
                peak_limit ? (std::to_string(static_cast<long long>(*peak_limit)) + " B").c_str() : "none");
  }
  // Money and energy, derived from and beside the wall they were spent over.
  const frugal::usage spent = run.snapshot();
  if (run.measures_cost())
    std::printf("cost: %s for %s of wall, %s%s FLOPs (price %s)\n",
                frugal::format_money(spent[frugal::resource::cost], run.price().currency()).c_str(),
                frugal::format_duration(spent[frugal::resource::wall]).c_str(),
                run.measures_cpu() ? (frugal::format_duration(spent[frugal::resource::cpu]) + " of CPU, ").c_str() : "",
                frugal::format_count(spent[frugal::resource::flops]).c_str(), run.price().to_string().c_str());
  // Where no counter is readable, the report below says why (once).
  if (run.measures_energy())
    std::printf("energy: %s over %s of wall (%.1f W on average, RAPL package and DRAM domains)\n",
                frugal::format_energy(spent[frugal::resource::energy]).c_str(),
                frugal::format_duration(spent[frugal::resource::wall]).c_str(),
                spent[frugal::resource::wall] > 0 ? spent[frugal::resource::energy] / spent[frugal::resource::wall] : 0.0);
  std::printf("\n");
  frugal::print_report(std::cout, run);
  if (dp.size() > 1)
    std::cout << "\nreplicas: " << (same_weights ? "the same weights on all " : "DIFFERENT weights on the ")
              << dp.size() << " ranks\n";
  dp.print_summary(std::cout, trainer.shards());
  std::cout << std::endl;
  if (!same_weights && dp.writes())
    std::fprintf(stderr, "fashion_mnist: the ranks' weights differ at the end of training\n");

  // Every file is written whole or not at all (a temporary file, fsync, rename): a full disk or
  // a kill during the write leaves no truncated report. A failure says which file and why.
  std::string written = (out_dir / "report.json").string() + ", epochs.csv, stages.csv";
  if (dp.writes()) try {
    frugal::write_file_atomically(out_dir / "report.json", [&](std::ostream& o) { dp.write_report(o, run, ctl); });
    frugal::write_file_atomically(out_dir / "epochs.csv", [&](std::ostream& o) { write_epochs_csv(o, prog.rows); });
    frugal::write_file_atomically(out_dir / "stages.csv", [&](std::ostream& o) { frugal::write_stages_csv(o, run); });
#if FRUGAL_EXAMPLE_TRACE
    if (opt.trace_events > 0) {
      frugal::stop_tracing();
      frugal::write_file_atomically(out_dir / "trace.json", [&](std::ostream& o) { frugal::write_chrome_trace(o); });
      const frugal::trace_stats t = frugal::trace_statistics();
      written += ", trace.json (" + std::to_string(t.events) + " scopes" +
                 (t.dropped ? ", " + std::to_string(t.dropped) + " more dropped past --trace-events" : std::string()) + ")";
    } else {
      fs::remove(out_dir / "trace.json", ec);  // not this run's: an older run's would mislead
    }
#endif
  } catch (const frugal::io_error& e) {
    std::fprintf(stderr, "fashion_mnist: --out: %s\n", e.what());
    return 1;
  }
  progress.note("wrote " + written);

  // ---- deployment (--deploy) ------------------------------------------------------------------
  // After training and its report, outside the training budget (its cost is the deployment's, not
  // the run's): the plan, a pruned and int8 copy of the model saved as OUT/model.deployed, and both
  // models measured on the test set by the same code (deploy.hpp). Not after a stop on a signal:
  // the process is asked to end. The "test accuracy" line stays the last on stdout.
  const fs::path deployed_files[] = {out_dir / "model.deployed", out_dir / "deploy.json"};
  if (opt.deploy && ctl.stop_reason() != frugal::stop_reason::signal) {
    if (deploy_model(model, data, *opt.deploy, out_dir, progress) != 0) return 1;
  } else if (dp.writes()) {
    for (const fs::path& f : deployed_files) fs::remove(f, ec);  // not this run's: an older run's would mislead
  }
  if (!test_partial.empty()) std::printf("%s\n", test_partial.c_str());
  if (prog.last_test)
    std::printf("test accuracy: %.4f\n", prog.last_test->accuracy);
  else
    std::printf("test accuracy: not measured (%s)\n", test_note.c_str());
  // stdout is a file too (a full disk, a closed pipe): a report that was not written is an error.
  std::cout.flush();
  if (std::fflush(stdout) != 0 || std::ferror(stdout) || !std::cout) {
    std::fprintf(stderr, "fashion_mnist: cannot write to stdout: %s\n", std::strerror(errno));
    return 1;
  }
  if (ctl.stop_reason() == frugal::stop_reason::signal) return 128 + frugal::signal_stop::signal_number();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // fashion_mnist_mpi: MPI for the program's life, this rank's place in the job; else one process.
  fmnist::data_parallel dp(argc, argv);
  options opt;
  try {
    opt = fmnist::parse_options(argc, argv);
    dp.check(opt);  // with several ranks, what the job cannot do alike on every rank
  } catch (const std::invalid_argument& e) {
    if (dp.writes()) std::fprintf(stderr, "fashion_mnist: error: %s\n(run with --help for the options)\n", e.what());
    return 2;
  }
  if (!dp.writes()) opt.trace_events = 0;  // trace.json is rank 0's
  if (opt.help) {
    std::fputs(fmnist::help_text(argc > 0 ? argv[0] : "fashion_mnist").c_str(), stdout);
    return 0;
  }
  // FRUGAL_CLOCK=tsc: the scopes read the calibrated time-stamp counter (<frugal/tsc_clock.hpp>),
  // at 0.4x the cost of steady_clock; a refusal says why, and the run goes on with steady_clock.
  if (const char* clock = std::getenv("FRUGAL_CLOCK"); clock && *clock) {
    const frugal::tsc_clock_status tsc = frugal::use_clock_from_environment();
    if (tsc)
      std::fprintf(stderr, "fashion_mnist: wall clock: the TSC (%.3f GHz, calibrated against steady_clock)\n",
                   tsc.calibration.frequency_hz * 1e-9);
    else
      std::fprintf(stderr, "fashion_mnist: wall clock: steady_clock (%s)\n", tsc.reason.c_str());
  }
  // Out of memory: a clear message naming what could not be allocated, status 1 (as for a data
  // or output error), never an abort. Caught here, so the run's memory is freed first.
  // Under MPI every rank ends with the same status (a signal's on any rank), and one rank out of
  // memory ends the job.
  try {
    return dp.finish(train(opt, dp));
  } catch (const std::bad_alloc& e) {
    std::fprintf(stderr, "fashion_mnist: out of memory %s: %s\n", g_doing, e.what());
    dp.fail(1);
    return 1;
  }
}
