// Command line of the Fashion-MNIST example, with CLI11 (<CLI/CLI.hpp>, Debian's libcli11-dev):
// every option, its default, its check, and --help. A bad value is CLI11's ValidationError
// "--batch: invalid value '0': must be in [1, 55000]" (CLI11 puts the option's name before the
// check's words); parse_options() turns any CLI11 parse error into std::invalid_argument with
// CLI11's message, and main exits with status 2.
#pragma once

#include "deploy.hpp"
#include "idx.hpp"
#include "mlp.hpp"
#include "policy.hpp"
#include "pruning.hpp"
#include "quantizing.hpp"

#include <frugal/price.hpp>
#include <frugal/units.hpp>

#include <CLI/CLI.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace fmnist {

inline constexpr const char* default_budget = "wall=20s";

struct options {
  bool help = false;
  frugal::limits budget = frugal::limits::parse(default_budget);
  std::string budget_text = default_budget;
  int epochs = 100;
  bool epochs_given = false;  // --epochs on the command line: the plan --prune fits the budget to
  int batch = 128;
  float lr = 0.1f;
  bool lr_given = false;
  schedule lr_schedule = schedule::budget_linear;
  optimizer_kind optimizer = optimizer_kind::sgd;
  float momentum = 0.9f;
  std::vector<int> hidden{256, 128};
  int patience = 10;
  std::uint64_t seed = 1;
  std::string data_dir = default_data_dir;
  std::string out_dir = "fashion_mnist_out";
  int threads = 0;  // 0: auto (as many shards as cores; the threads that run them chosen by measuring)
  std::size_t trace_events = 1'000'000;  // 0: no trace.json
  bool trace_events_given = false;       // --trace-events on the command line
  std::string checkpoint_dir;            // "": no checkpoints
  bool resume = false;
  bool test_every_epoch = false;         // else the test set is evaluated once, at the run's end
  prune_options prune;                   // --prune and its bounds
  quantize_options quantize;             // --quantize and its bound
  std::optional<deploy_limits> deploy;   // --deploy: after training, compress to fit (deploy.hpp)
  std::string deploy_from;               // --deploy-from DIR: deploy DIR's checkpoint, no training
  std::optional<frugal::price> price;    // --price: what the run's wall, CPU and FLOPs cost
};

namespace detail {

// The checks. Each reads one value strictly and throws std::invalid_argument with
// "invalid value 'TEXT': why" (CLI11 puts "--option: " before it).
[[noreturn]] inline void bad_value(std::string_view value, std::string_view why) {
  throw std::invalid_argument("invalid value '" + std::string(value) + "': " + std::string(why));
}

// What is wrong with `text` as an integer in [lo, hi] ("" when nothing: then it is in v).
template <class Int>
[[nodiscard]] std::string int_problem(std::string_view text, Int lo, Int hi, Int& v) {
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc::result_out_of_range) return "out of range";
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) return "not an integer";
  if (v < lo || v > hi) return "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return {};
}

template <class Int>
[[nodiscard]] Int parse_int(std::string_view text, Int lo, Int hi) {
  Int v{};
  if (const std::string why = int_problem(text, lo, hi, v); !why.empty()) bad_value(text, why);
  return v;
}

[[nodiscard]] inline float parse_real(std::string_view text, double lo, double hi, bool lo_inclusive,
                                      bool hi_inclusive) {
  double v = 0;
  try {
    v = frugal::parse_count(text);  // strict: no inf, nan, hex, sign or trailing text
  } catch (const std::invalid_argument&) {
    bad_value(text, "not a non-negative number");
  }
  const bool low_ok = lo_inclusive ? v >= lo : v > lo;
  const bool high_ok = hi_inclusive ? v <= hi : v < hi;
  if (!low_ok || !high_ok)
    bad_value(text, std::string("must be in ") + (lo_inclusive ? "[" : "(") + frugal::detail::units_impl::shortest(lo) +
                        ", " + frugal::detail::units_impl::shortest(hi) + (hi_inclusive ? "]" : ")"));
  return static_cast<float>(v);
}

[[nodiscard]] inline std::vector<int> parse_layers(std::string_view text) {
  std::vector<int> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item =
        text.substr(start, comma == std::string_view::npos ? text.size() - start : comma - start);
    if (item.empty()) bad_value(text, "expected comma-separated layer sizes such as 256,128");
    int size = 0;
    if (const std::string why = int_problem(item, 1, 65536, size); !why.empty())
      bad_value(text, "layer '" + std::string(item) + "': " + why);
    out.push_back(size);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (out.size() > 8) bad_value(text, "at most 8 hidden layers");
  return out;
}

[[nodiscard]] inline std::string parse_path(std::string_view text) {
  if (text.empty()) bad_value(text, "empty path");
  return std::string(text);
}

[[nodiscard]] inline frugal::limits parse_budget(std::string_view text) {
  try {
    return frugal::limits::parse(text);
  } catch (const std::invalid_argument& e) {
    bad_value(text, e.what());
  }
}

[[nodiscard]] inline frugal::price parse_price(std::string_view text) {
  try {
    return frugal::price::parse(text);
  } catch (const std::invalid_argument& e) {
    bad_value(text, e.what());
  }
}

// --deploy "model_bytes=64KiB,inference_flops=1e5": either key or both, each once; sizes as
// --budget reads them (frugal::parse_bytes: 200000, 64KiB, 1.5MB), FLOPs per sample a whole count
// (frugal::parse_count: 1e5). Zero is refused: no model has 0 bytes or costs 0 FLOPs. The bound
// 1e15 keeps the value exact in a uint64 (and is far above any model this example can build).
[[nodiscard]] inline deploy_limits parse_deploy(std::string_view text) {
  constexpr const char* keys = "use model_bytes=SIZE and/or inference_flops=COUNT, comma-separated";
  constexpr double most = 1e15;
  deploy_limits l;
  if (text.find_first_not_of(" \t") == std::string_view::npos) bad_value(text, std::string("empty: ") + keys);
  std::vector<frugal::key_value> entries;
  try {
    entries = frugal::split_key_values(text, "deploy");  // the form of --budget and --price
  } catch (const std::invalid_argument& e) {
    bad_value(text, std::string(e.what()) + " (" + keys + ")");
  }
  for (const frugal::key_value& kv : entries) {
    const std::string key(kv.key);
    if (key != "model_bytes" && key != "inference_flops") bad_value(text, "unknown key '" + key + "' (" + keys + ")");
    double v = 0;
    try {
      v = key == "model_bytes" ? frugal::parse_bytes(kv.value, key) : frugal::parse_count(kv.value, key);
    } catch (const std::invalid_argument& e) {  // "frugal: model_bytes: cannot parse bytes '-1': ..."
      bad_value(text, e.what());
    }
    if (key == "inference_flops" && v != std::floor(v))
      bad_value(text, "inference_flops must be a whole number of FLOPs, got " + std::string(kv.value));
    if (!(v > 0) || v > most) bad_value(text, key + " must be in [1, 1e15], got " + std::string(kv.value));
    (key == "model_bytes" ? l.model_bytes : l.inference_flops) = static_cast<std::uint64_t>(v);
  }
  return l;
}

[[nodiscard]] inline optimizer_kind parse_optimizer(std::string_view text) {
  if (text == "sgd") return optimizer_kind::sgd;
  if (text == "adam") return optimizer_kind::adam;
  bad_value(text, "use sgd or adam");
}

// An option whose value `parse` reads (and checks) into `store`: the check is a CLI11
// Validator, so a bad value is CLI11's ValidationError "--name: invalid value 'TEXT': why"
// before anything is stored; then the option's callback stores the value read and the text
// (an option given twice keeps its last value).
template <class Parse, class Store>
CLI::Option* add_checked(CLI::App& app, const std::string& name, const std::string& type, Parse parse, Store store,
                         const std::string& description) {
  CLI::Option* opt = app.add_option_function<std::string>(
      name, [parse, store](const std::string& v) { store(parse(v), v); }, description);
  opt->type_name(type);
  opt->check(CLI::Validator(
      [parse](std::string& v) -> std::string {
        // CLI11 takes the next argument as the value whatever it is: "--out --resume" would
        // write to a directory "--resume". No value here starts with "--".
        if (v.rfind("--", 0) == 0) return "missing value (the next argument, '" + v + "', is an option)";
        try {
          (void)parse(v);
        } catch (const std::invalid_argument& e) {
          return e.what();
        }
        return {};
      },
      ""));  // no description: the option's words say what it takes
  return opt;
}

[[nodiscard]] inline std::string join_ints(const std::vector<int>& v, const char* separator) {
  std::string s;
  for (const int x : v) s += (s.empty() ? "" : separator) + std::to_string(x);
  return s;
}

}  // namespace detail

// The options on a CLI11 app, storing into `o`; the help text's defaults are o's (a
// default-constructed options: the same values parse_options starts from).
inline void define_options(CLI::App& app, options& o) {
  using detail::add_checked;
  const options d;  // the defaults, for the words
  app.description("Trains an MLP on Fashion-MNIST inside a compute budget, then reports what it cost.");
  app.get_formatter()->column_width(22);
  app.get_formatter()->label("Usage", "usage");
  app.get_formatter()->label("OPTIONS", "options");
  app.set_help_flag("-h,--help", "this text");
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  add_checked(
      app, "--budget", "LIMITS", detail::parse_budget,
      [&o](const frugal::limits& l, const std::string& text) {
        o.budget = l;
        o.budget_text = text;  // as given, for the progress line
      },
      std::string("what the run may use (default \"") + default_budget +
          "\"): comma-separated key=value,\n"
          "keys wall, cpu (durations: 1h30m, 20s, 500ms), flops, allocations\n"
          "(counts: 2.5e12), alloc_bytes, peak_bytes (sizes: 512MiB, 2GB), cost\n"
          "(money, with --price: 0.02USD), energy (RAPL counters: 50kJ, 0.1kWh), or\n"
          "any user unit such as samples=1e6. \"\" means no limit (the epochs cap ends).\n"
          "frugal::controller stops training before a limit would be crossed: the\n"
          "next step, the epoch's end and the final test evaluation must still fit.\n"
          "Under a peak_bytes limit it shrinks the batch, and gradient accumulation\n"
          "keeps --batch samples per update.");
  add_checked(
      app, "--epochs", "N", [](std::string_view v) { return detail::parse_int<int>(v, 1, 1'000'000); },
      [&o](int v, const std::string&) {
        o.epochs = v;
        o.epochs_given = true;
      },
      "at most N passes over the training set (default " + std::to_string(d.epochs) +
          "); with --prune,\nthe plan the budget must fit");
  add_checked(
      app, "--batch", "N", [](std::string_view v) { return detail::parse_int<int>(v, 1, 55'000); },
      [&o](int v, const std::string&) { o.batch = v; },
      "samples per optimisation step (default " + std::to_string(d.batch) + ")");
  add_checked(
      app, "--lr", "X", [](std::string_view v) { return detail::parse_real(v, 0, 10, false, true); },
      [&o](float v, const std::string&) {
        o.lr = v;
        o.lr_given = true;
      },
      "initial learning rate, in (0, 10] (default 0.1 for sgd, 0.001 for adam)");
  add_checked(
      app, "--schedule", "NAME", [](std::string_view v) { return parse_schedule(v); },
      [&o](schedule s, const std::string&) { o.lr_schedule = s; },
      "learning rate over the run: budget-linear (default; decays to zero at\n"
      "the budget's end), constant, or step (x0.1 at 50 % and 75 % of the budget)");
  add_checked(
      app, "--optimizer", "NAME", detail::parse_optimizer,
      [&o](optimizer_kind k, const std::string&) { o.optimizer = k; }, "sgd (with momentum, default) or adam");
  add_checked(
      app, "--momentum", "X", [](std::string_view v) { return detail::parse_real(v, 0, 1, true, false); },
      [&o](float v, const std::string&) { o.momentum = v; }, "SGD momentum in [0, 1) (default 0.9)");
  add_checked(
      app, "--hidden", "LIST", detail::parse_layers,
      [&o](std::vector<int> v, const std::string&) { o.hidden = std::move(v); },
      "hidden layer sizes, at most 8, each in [1, 65536] (default " + detail::join_ints(d.hidden, ",") +
          ":\na 784-" + detail::join_ints(d.hidden, "-") + "-10 network)");
  add_checked(
      app, "--patience", "N", [](std::string_view v) { return detail::parse_int<int>(v, 0, 1'000'000); },
      [&o](int v, const std::string&) { o.patience = v; },
      "stop when the validation loss has not improved for N epochs\n(default " + std::to_string(d.patience) +
          "; 0 disables early stopping)");
  add_checked(
      app, "--seed", "N",
      [](std::string_view v) {
        return detail::parse_int<std::uint64_t>(v, 0, std::numeric_limits<std::uint64_t>::max());
      },
      [&o](std::uint64_t v, const std::string&) { o.seed = v; },
      "seeds the weights and the shuffling (default " + std::to_string(d.seed) + ")");
  add_checked(
      app, "--threads", "N|auto",
      [](std::string_view v) { return v == "auto" ? 0 : detail::parse_int<int>(v, 1, 256); },
      [&o](int v, const std::string&) { o.threads = v; },
      "worker threads, in [1, 256]: each batch is split in N shards. auto (the\n"
      "default): one shard per core, and the steps at each epoch's start measure\n"
      "1, 2, 4, ... threads (4 steps each, interleaved); the cheapest per sample\n"
      "(wall; CPU under a cpu limit without a wall limit) runs the epoch, more\n"
      "threads only if at least 10 % cheaper. The shards stay as many, so the\n"
      "choice never changes the results");
  add_checked(
      app, "--data", "DIR", detail::parse_path,
      [&o](std::string v, const std::string&) { o.data_dir = std::move(v); },
      "the *-ubyte.gz files (default " + d.data_dir + ",\nfrom Debian's package dataset-fashion-mnist)");
  add_checked(
      app, "--out", "DIR", detail::parse_path, [&o](std::string v, const std::string&) { o.out_dir = std::move(v); },
      "where the files go (default " + d.out_dir +
          "): report.json (the budget\n"
          "tree and its stages), epochs.csv (one row per evaluation), stages.csv,\n"
          "trace.json; examples/fashion_mnist/plot.sh DIR plots epochs.csv");
  app.add_flag("--test-every-epoch", o.test_every_epoch,
               "evaluate the test set at every epoch's end too, for a test curve in\n"
               "epochs.csv and plot.sh's plot (each costs twice a validation). By\n"
               "default the test set is evaluated once, when the run ends, inside the\n"
               "budget (the controller keeps room for it), and only the validation set\n"
               "is evaluated at an epoch's end (it drives early stopping)");
  add_checked(
      app, "--checkpoint", "DIR", detail::parse_path,
      [&o](std::string v, const std::string&) { o.checkpoint_dir = std::move(v); },
      "save the run at each epoch's end and at the stop, in DIR: state.json\n"
      "(the budget used and the controller's state, frugal's state document) and\n"
      "model-<step>.bin (weights, optimizer, data order, where the epoch stopped)");
  app.add_flag("--resume", o.resume,
               "with --checkpoint: go on from DIR's checkpoint when it has one (else\n"
               "start anew), inside the same total budget: the time the job was down is\n"
               "not charged. The same command line works for the first run and every\n"
               "restart (a scheduler's requeue); --hidden, --optimizer and --data must\n"
               "not change. The test set is evaluated by the process that ends the run.");
  app.add_flag("--prune", o.prune.enabled,
               "when the --epochs planned will not fit the budget, remove hidden units\n"
               "(structured pruning: every product after it is smaller) so the rest of\n"
               "the plan fits: frugal::prune_rule decides how much of the work's cost to\n"
               "remove (after 10 warm-up steps; again after 16 more steps if still\n"
               "short), frugal's compression plan how many units. Needs --epochs");
  add_checked(
      app, "--prune-layer", "N", [](std::string_view v) { return detail::parse_int<std::size_t>(v, 1, 8); },
      [&o](std::size_t v, const std::string&) { o.prune.layer = v; },
      "the hidden layer --prune narrows, 1 = the first (default " + std::to_string(d.prune.layer) + ")");
  add_checked(
      app, "--prune-min-units", "N", [](std::string_view v) { return detail::parse_int<int>(v, 1, 65536); },
      [&o](int v, const std::string&) { o.prune.min_units = v; },
      "--prune never leaves the layer narrower than N units (default " + std::to_string(d.prune.min_units) + ")");
  add_checked(
      app, "--prune-max", "X", [](std::string_view v) { return detail::parse_real(v, 0, 1, false, true); },
      [&o](float v, const std::string&) { o.prune.max_fraction = static_cast<double>(v); },
      "the most of the work's cost one pruning removes, in (0, 1] (default " +
          frugal::detail::units_impl::shortest(d.prune.max_fraction) + ")");
  app.add_flag("--quantize", o.quantize.enabled,
               "when the --epochs planned will not fit the budget, freeze the first\n"
               "--quantize-layers layers as int8 per-channel weights: they compute with\n"
               "frugal's int8 product and are no longer trained, so a step skips their\n"
               "backward and update; the layers after them train on. frugal::quantize_rule\n"
               "decides when: as late as the rest of the plan allows, once the first epoch\n"
               "end has measured the evaluations (with --prune, only once a pruning's\n"
               "effect is measured and the plan is still short). Needs --epochs");
  add_checked(
      app, "--quantize-layers", "N", [](std::string_view v) { return detail::parse_int<std::size_t>(v, 1, 8); },
      [&o](std::size_t v, const std::string&) { o.quantize.layers = v; },
      "the layers --quantize freezes, from the input on; the output layer always\n"
      "trains (default " + std::to_string(d.quantize.layers) + ")");
  add_checked(
      app, "--deploy-from", "DIR", detail::parse_path,
      [&o](std::string v, const std::string&) { o.deploy_from = std::move(v); },
      "with --deploy: train nothing; deploy the model of the checkpoint in DIR\n"
      "(a --checkpoint directory: pruned or quantized runs too) under the\n"
      "--deploy limits. --hidden and --optimizer must be the run's");
  add_checked(
      app, "--price", "PRICES", detail::parse_price, [&o](const frugal::price& p, const std::string&) { o.price = p; },
      "what the run costs, comma-separated: instance_hour=MONEY (per hour of\n"
      "wall time), core_hour=MONEY (per hour of CPU time), flop=MONEY (per FLOP),\n"
      "MONEY a number and an ISO 4217 code named once (3.60USD). The report then\n"
      "gives the run's cost, and --budget may limit it: cost=0.02USD");
  add_checked(
      app, "--deploy", "LIMITS", detail::parse_deploy,
      [&o](deploy_limits l, const std::string&) { o.deploy = l; },
      "after training, deploy the model inside these limits, comma-separated:\n"
      "model_bytes=SIZE (the saved file: 64KiB, 200000) and/or inference_flops=N\n"
      "(per image, as frugal counts them: 1e5). Weights become int8 per channel\n"
      "(4x fewer bytes; an int8 multiply-add is still 2 FLOPs, charged to flops\n"
      "like a float one, so only removing hidden units of layer 1, smallest L2\n"
      "norm first, lowers the FLOPs). Prints the float and the deployed model's\n"
      "bytes, FLOPs and time per image and test accuracy; writes OUT/model.deployed\n"
      "(read by fashion_mnist_classify) and OUT/deploy.json. Limits that even one\n"
      "unit cannot meet deploy nothing and say so (exit status 0)");
  add_checked(
      app, "--trace-events", "N",
      [](std::string_view v) { return detail::parse_int<std::size_t>(v, 0, std::size_t{1} << 30); },
      [&o](std::size_t v, const std::string&) {
        o.trace_events = v;
        o.trace_events_given = true;
      },
      "record at most N scopes in trace.json (Chrome trace format: open it in\n"
      "https://ui.perfetto.dev or chrome://tracing); 0: no trace (default " +
          std::to_string(d.trace_events) +
          ";\n0 under a peak_bytes or rss_bytes limit: a trace grows the heap ~72 B a\n"
          "scope, which no batch size controls)");
  app.footer(
      "Progress goes to stderr (a live bar on a terminal, plain lines otherwise); the report and a\n"
      "last line \"test accuracy: 0.XXXX\" go to stdout. Exit status: 0 done (a budget's stop\n"
      "included), 1 data, output or checkpoint error or out of memory (the message names what could\n"
      "not be allocated), 2 bad command line; after a clean stop on a signal, 128 + its number (143\n"
      "for SIGTERM, 130 for SIGINT, 138 for SIGUSR1): a scheduler sees the job was interrupted.\n"
      "Environment: FRUGAL_CLOCK=tsc makes the scopes read the CPU's time-stamp counter,\n"
      "calibrated against steady_clock (stderr says so, or why not).");
}

// The --help text, CLI11's (the same app parse_options reads).
[[nodiscard]] inline std::string help_text(std::string_view program) {
  options o;
  CLI::App app;
  app.name(std::string(program));
  define_options(app, o);
  return app.help();
}

// argv[1..argc) -> options. "--key value" and "--key=value" both work; -h or --help sets
// options::help (main prints help_text() and exits 0). Any other CLI11 parse error (a bad
// value, a missing one, an unknown option, an unexpected argument, --resume without
// --checkpoint) throws std::invalid_argument with CLI11's message.
[[nodiscard]] inline options parse_options(int argc, const char* const* argv) {
  options o;
  CLI::App app;
  app.name(argc > 0 ? argv[0] : "fashion_mnist");
  define_options(app, o);
  // CLI11 2.1 reads "--key=" (an empty value) as "--key" and takes the next argument as the
  // value: "--budget=" (no limit) would swallow the option after it. Passed as "--key" "", the
  // empty value is the option's, as "--budget ''" is. (CLI11 wants the arguments reversed.)
  std::vector<std::string> args;
  for (int i = argc - 1; i >= 1; --i) {
    const std::string_view a = argv[i];
    if (a.size() > 3 && a.substr(0, 2) == "--" && a.back() == '=' && a.find('=') == a.size() - 1) {
      args.emplace_back();
      args.emplace_back(a.substr(0, a.size() - 1));
    } else {
      args.emplace_back(a);
    }
  }
  try {
    app.parse(args);
    if (o.budget.has(frugal::resource::cost) && !o.price)
      throw CLI::RequiresError("--budget cost=...", "--price (what the wall, CPU and FLOPs cost, e.g. instance_hour=3.60USD)");
    if (o.price && !o.budget.currency().empty() && !o.price->currency().empty() &&
        o.budget.currency() != o.price->currency())
      throw CLI::ValidationError("--budget", "the cost limit is in " + o.budget.currency() + " but --price is in " +
                                                 o.price->currency());
    if (!o.deploy_from.empty() && !o.deploy)
      throw CLI::RequiresError("--deploy-from", "--deploy LIMITS (what the saved model must fit)");
    if (!o.deploy_from.empty() && !o.checkpoint_dir.empty())
      throw CLI::ExcludesError("--deploy-from", "--checkpoint (it trains nothing, so saves nothing)");
    if (o.resume && o.checkpoint_dir.empty())
      throw CLI::RequiresError("--resume", "--checkpoint DIR (where the run to go on from is saved)");
    // Pruning fits the plan to the budget: without a plan of the user's own (the default 100
    // epochs is a cap, not a plan), it would prune to the floor.
    if (o.prune.enabled && !o.epochs_given)
      throw CLI::RequiresError("--prune", "--epochs N (the plan the budget must fit)");
    if (o.quantize.enabled && !o.epochs_given)
      throw CLI::RequiresError("--quantize", "--epochs N (the plan the budget must fit)");
    if (app.count("--quantize-layers") > 0 && !o.quantize.enabled) throw CLI::RequiresError("--quantize-layers", "--quantize");
    if (o.quantize.enabled && o.quantize.layers > o.hidden.size())
      throw CLI::ValidationError("--quantize-layers",
                                 "invalid value '" + std::to_string(o.quantize.layers) + "': the network has " +
                                     std::to_string(o.hidden.size() + 1) + " layers (--hidden), and the output layer trains");
    for (const char* name : {"--prune-layer", "--prune-min-units", "--prune-max"})
      if (app.count(name) > 0 && !o.prune.enabled) throw CLI::RequiresError(name, "--prune");
    if (o.prune.enabled && o.prune.layer > o.hidden.size())
      throw CLI::ValidationError("--prune-layer",
                                 "invalid value '" + std::to_string(o.prune.layer) + "': the network has " +
                                     std::to_string(o.hidden.size()) + " hidden layer(s) (--hidden)");
  } catch (const CLI::CallForHelp&) {
    o.help = true;
    return o;
  } catch (const CLI::ParseError& e) {
    throw std::invalid_argument(e.what());
  }
  if (!o.lr_given && o.optimizer == optimizer_kind::adam) o.lr = 0.001f;
  return o;
}

}  // namespace fmnist
