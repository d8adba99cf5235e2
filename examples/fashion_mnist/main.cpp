// fashion_mnist: an MLP trained on Fashion-MNIST inside a frugal budget (wall time, FLOPs,
// samples, ...), stopping before a limit is crossed, then reporting what everything cost.
#include "cli.hpp"
#include "idx.hpp"
#include "mlp.hpp"
#include "policy.hpp"
#include "progress.hpp"
#include "trainer.hpp"

#include <frugal/early_stopping.hpp>
#include <frugal/frugal.hpp>
#include <frugal/report.hpp>
#include <frugal/tbb.hpp>

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
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

using fmnist::options;

struct epoch_row {
  int epoch;
  double wall_s;
  double fraction_used;
  double flops;
  int batch;
  float lr;
  double train_loss;
  double val_loss;
  double val_accuracy;
  double test_accuracy;
};

void write_epochs_csv(std::ostream& out, const std::vector<epoch_row>& rows) {
  out << "epoch,wall_s,fraction_used,flops,batch_size,lr,train_loss,val_loss,val_accuracy,test_accuracy\n";
  char line[320];
  for (const epoch_row& r : rows) {
    std::snprintf(line, sizeof line, "%d,%.4f,%.6f,%.0f,%d,%.6g,%.6f,%.6f,%.6f,%.6f\n", r.epoch, r.wall_s,
                  r.fraction_used, r.flops, r.batch, static_cast<double>(r.lr), r.train_loss, r.val_loss,
                  r.val_accuracy, r.test_accuracy);
    out << line;
  }
}

// Fraction used of each limited resource, for the progress line.
std::vector<std::pair<std::string, double>> fractions(const frugal::limits& l, const fmnist::reading& now) {
  std::vector<std::pair<std::string, double>> out;
  for (frugal::resource r : frugal::all_resources)
    if (const auto lim = l.get(r))
      out.emplace_back(std::string(frugal::to_string(r)),
                       *lim > 0 ? now.resources[static_cast<std::size_t>(r)] / *lim : 1.0);
  std::size_t u = 0;
  for (const auto& [name, lim] : l.unit_limits()) {
    out.emplace_back(name, lim > 0 ? now.units[u] / lim : 1.0);
    ++u;
  }
  return out;
}

int train(const options& opt) {
  namespace fs = std::filesystem;
  fmnist::progress_bar progress(stderr);

  // ---- output directory: checked first, so a typo costs no training -------------------
  const fs::path out_dir = opt.out_dir;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec || !fs::is_directory(out_dir)) {
    std::fprintf(stderr, "fashion_mnist: --out: cannot create directory '%s': %s\n", opt.out_dir.c_str(),
                 ec ? ec.message().c_str() : "exists and is not a directory");
    return 1;
  }

  // ---- data -------------------------------------------------------------------------------
  fmnist::dataset data;
  const auto load_start = std::chrono::steady_clock::now();
  try {
    data = fmnist::load_fashion_mnist(opt.data_dir);
  } catch (const fmnist::data_error& e) {
    std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
    return 1;
  }
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
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(opt.threads));
  fmnist::mlp model(fmnist::layer_sizes(opt.hidden), opt.seed);
  fmnist::optimizer optim(opt.optimizer, model, opt.momentum);
  fmnist::trainer trainer(model, optim, opt.threads, batch);
  std::mt19937_64 shuffle_rng(opt.seed * 0x9E3779B97F4A7C15ull + 1);

  frugal::budget run{"train", opt.budget};
  frugal::budget& eval = run.child("eval");
  const frugal::unit_id samples = frugal::unit("samples");
#if FRUGAL_EXAMPLE_TRACE
  if (opt.trace_events > 0) frugal::start_tracing(opt.trace_events);
#endif

  fmnist::budget_guard guard(run);
  guard.set_first_forecasts(static_cast<double>(trainer.step_flops(batch)),
                            static_cast<double>(trainer.evaluation_flops(val_n + test_index.size())), batch);
  // Lightning's EarlyStopping rules on the validation loss (<frugal/early_stopping.hpp>).
  std::optional<frugal::early_stopping> early;
  if (opt.patience > 0)
    early.emplace(frugal::early_stopping{"val_loss"}.patience(static_cast<std::size_t>(opt.patience)).min_delta(1e-4));
  const fmnist::learning_rate schedule(opt.lr_schedule, opt.lr, run);

  char optimizer_text[64];
  if (opt.optimizer == fmnist::optimizer_kind::sgd)
    std::snprintf(optimizer_text, sizeof optimizer_text, "SGD (momentum %g), lr %g", static_cast<double>(opt.momentum),
                  static_cast<double>(opt.lr));
  else
    std::snprintf(optimizer_text, sizeof optimizer_text, "Adam, lr %g", static_cast<double>(opt.lr));
  std::string layers;
  for (int s : model.sizes()) layers += (layers.empty() ? "" : "-") + std::to_string(s);
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
  std::vector<epoch_row> rows;
  std::string stop_reason;
  long total_steps = 0;
  float lr = opt.lr;
  std::optional<fmnist::evaluation> last_test;
  fmnist::reading now = guard.read();
  // Training loss and accuracy since the last evaluation (an epoch, or more when deferred).
  double loss_sum = 0;
  std::int64_t correct = 0;
  std::size_t seen = 0;

  for (int epoch = 1; epoch <= opt.epochs && stop_reason.empty(); ++epoch) {
    frugal::scope epoch_scope{run, "epoch"};
    std::shuffle(order.begin(), order.end(), shuffle_rng);
    long step = 0;
    fmnist::progress_status status;
    status.epoch = epoch;
    status.epochs = opt.epochs;
    status.steps_per_epoch = steps_per_epoch;
    status.batch = batch;

    for (std::size_t start = 0; start < train_n; start += static_cast<std::size_t>(batch), ++step) {
      if (const auto crossed = guard.next_step_crosses(now)) {
        const auto spent = run.exhausted_resources();
        stop_reason = spent.empty() ? "budget: the next step and the final evaluation would cross the " + *crossed +
                                          " limit (predictive stop)"
                                    : "budget: the " + spent.front() + " limit is reached";
        break;
      }
      const auto n = static_cast<Eigen::Index>(std::min<std::size_t>(static_cast<std::size_t>(batch), train_n - start));
      lr = schedule.at(std::max(guard.progress(now), static_cast<double>(total_steps) / planned_steps));
      const fmnist::reading before = now;
      fmnist::batch_result r;
      {
        frugal::scope s{run, "step"};
        r = trainer.step(data, order.data() + start, n, lr, &run);
        frugal::add_units(samples, static_cast<double>(n));
      }
      now = guard.read();
      guard.step_done(before, now);
      ++total_steps;
      loss_sum += r.loss_sum;
      correct += r.correct;
      seen += static_cast<std::size_t>(n);

      status.step = step + 1;
      status.lr = lr;
      status.loss = loss_sum / static_cast<double>(seen);
      status.accuracy = static_cast<double>(correct) / static_cast<double>(seen);
      if (progress.due()) {
        status.used = fractions(opt.budget, now);
        const double steps_left =
            std::min(guard.steps_left(now, true), planned_steps - static_cast<double>(total_steps));
        status.seconds_left = steps_left * guard.step_seconds(true);
        status.epochs_left = steps_left / static_cast<double>(steps_per_epoch);
        progress.update(status);
      }
    }
    // Stopped before the epoch's first step: the model is the one evaluated last (or, when not
    // even one step fitted, an untrained one not worth the evaluation).
    if (step == 0) break;
    // A full epoch whose evaluation would leave no room for more training: train on into the
    // next epoch instead, and evaluate once at the budget's end.
    if (stop_reason.empty() && epoch < opt.epochs && guard.evaluation_would_end_run(now)) {
      progress.note("epoch " + std::to_string(epoch) + ": evaluation deferred to the end of the budget");
      continue;
    }

    // Evaluation: its own child budget (charged to train too), inside the epoch's scope.
    const fmnist::reading before_eval = now;
    fmnist::evaluation val, test;
    {
      frugal::scope s{eval, "validation"};
      val = trainer.evaluate(data.train_images, data.train_labels, val_index);
    }
    {
      frugal::scope s{eval, "test"};
      test = trainer.evaluate(data.test_images, data.test_labels, test_index);
    }
    now = guard.read();
    guard.evaluation_done(before_eval, now);
    last_test = test;

    rows.push_back(epoch_row{epoch, now.resources[static_cast<std::size_t>(frugal::resource::wall)],
                             run.fraction_used(), now.resources[static_cast<std::size_t>(frugal::resource::flops)],
                             batch, lr, loss_sum / static_cast<double>(seen), val.loss, val.accuracy, test.accuracy});
    loss_sum = 0;
    correct = 0;
    seen = 0;
    status.used = fractions(opt.budget, now);
    const double steps_left =
        std::min(guard.steps_left(now, true), planned_steps - static_cast<double>(total_steps));
    status.seconds_left = steps_left * guard.step_seconds(true);
    status.epochs_left = steps_left / static_cast<double>(steps_per_epoch);
    progress.epoch_done(status, fmnist::epoch_scores{val.loss, val.accuracy, test.accuracy});

    if (stop_reason.empty() && early && frugal::stops(early->update(val.loss, static_cast<std::uint64_t>(epoch))))
      stop_reason = "early stopping: " + early->message();
  }
  if (stop_reason.empty()) stop_reason = "done: all " + std::to_string(opt.epochs) + " epochs";

  // ---- report -------------------------------------------------------------------------------
  const double samples_seen = run.used("samples");
  std::printf("stopped: %s\nafter %.2f epochs (%ld steps, %.0f samples, %zu evaluations)\n\n", stop_reason.c_str(),
              samples_seen / static_cast<double>(train_n), total_steps, samples_seen, rows.size());
  frugal::print_report(std::cout, run);
  std::cout << std::endl;

  bool wrote = true;
  {
    std::ofstream f(out_dir / "report.json");
    frugal::write_json_report(f, run);
    wrote = wrote && static_cast<bool>(f);
  }
  {
    std::ofstream f(out_dir / "epochs.csv");
    write_epochs_csv(f, rows);
    wrote = wrote && static_cast<bool>(f);
  }
  {
    std::ofstream f(out_dir / "stages.csv");
    frugal::write_stages_csv(f, run);
    wrote = wrote && static_cast<bool>(f);
  }
  std::string written = (out_dir / "report.json").string() + ", epochs.csv, stages.csv";
#if FRUGAL_EXAMPLE_TRACE
  if (opt.trace_events > 0) {
    frugal::stop_tracing();
    std::ofstream f(out_dir / "trace.json");
    frugal::write_chrome_trace(f);
    wrote = wrote && static_cast<bool>(f);
    const frugal::trace_stats t = frugal::trace_statistics();
    written += ", trace.json (" + std::to_string(t.events) + " scopes" +
               (t.dropped ? ", " + std::to_string(t.dropped) + " more dropped past --trace-events" : std::string()) + ")";
  } else {
    fs::remove(out_dir / "trace.json", ec);  // not this run's: an older run's would mislead
  }
#endif
  progress.note("wrote " + written);
  if (!wrote) {
    std::fprintf(stderr, "fashion_mnist: --out: could not write the files in '%s'\n", opt.out_dir.c_str());
    return 1;
  }
  if (last_test)
    std::printf("test accuracy: %.4f\n", last_test->accuracy);
  else
    std::printf("test accuracy: not measured (the budget does not fit one step and an evaluation)\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  try {
    opt = fmnist::parse_options(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "fashion_mnist: error: %s\n(run with --help for the options)\n", e.what());
    return 2;
  }
  if (opt.help) {
    std::fputs(fmnist::help_text(argc > 0 ? argv[0] : "fashion_mnist").c_str(), stdout);
    return 0;
  }
  return train(opt);
}
