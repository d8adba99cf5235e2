// Command line of the Fashion-MNIST example: every option, its default, its check. A bad value
// throws std::invalid_argument naming the option and the value (main exits with status 2).
#pragma once

#include "idx.hpp"
#include "mlp.hpp"
#include "policy.hpp"

#include <frugal/units.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace fmnist {

inline constexpr const char* default_budget = "wall=20s";

struct options {
  bool help = false;
  frugal::limits budget = frugal::limits::parse(default_budget);
  std::string budget_text = default_budget;
  int epochs = 100;
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
  int threads = 0;  // 0: one per hardware thread
  std::size_t trace_events = 1'000'000;  // 0: no trace.json
  bool trace_events_given = false;       // --trace-events on the command line
  std::string checkpoint_dir;            // "": no checkpoints
  bool resume = false;
};

[[nodiscard]] inline std::string help_text(std::string_view program) {
  std::string h;
  h += "usage: ";
  h += program;
  h += R"( [options]

Trains an MLP on Fashion-MNIST inside a compute budget, then reports what it cost.

  --budget LIMITS   what the run may use (default "wall=20s"): comma-separated key=value,
                    keys wall, cpu (durations: 1h30m, 20s, 500ms), flops, allocations
                    (counts: 2.5e12), alloc_bytes, peak_bytes (sizes: 512MiB, 2GB), or any
                    user unit such as samples=1e6. "" means no limit (the epochs cap ends).
                    frugal::controller stops training before a limit would be crossed:
                    the next step and the final evaluation must still fit. Under a
                    peak_bytes limit it shrinks the batch, and gradient accumulation keeps
                    --batch samples per update.
  --epochs N        at most N passes over the training set (default 100)
  --batch N         samples per optimisation step (default 128)
  --lr X            initial learning rate (default 0.1 for sgd, 0.001 for adam)
  --schedule NAME   learning rate over the run: budget-linear (default; decays to zero at the
                    budget's end), constant, or step (x0.1 at 50 % and 75 % of the budget)
  --optimizer NAME  sgd (with momentum, default) or adam
  --momentum X      SGD momentum in [0, 1) (default 0.9)
  --hidden LIST     hidden layer sizes (default 256,128: a 784-256-128-10 network)
  --patience N      stop when the validation loss has not improved for N epochs
                    (default 10; 0 disables early stopping)
  --seed N          seeds the weights and the shuffling (default 1)
  --threads N       worker threads; each batch is split in N shards (default: one per core)
  --data DIR        the *-ubyte.gz files (default /usr/share/datasets/fashion-mnist, from
                    Debian's package dataset-fashion-mnist)
  --out DIR         where the files go (default fashion_mnist_out): report.json (the budget
                    tree and its stages), epochs.csv (one row per evaluation), stages.csv,
                    trace.json; examples/fashion_mnist/plot.sh DIR plots epochs.csv
  --checkpoint DIR  save the run at each epoch's end and at the stop, in DIR: state.json (the
                    budget used and the controller's state, frugal's state document) and
                    model-<step>.bin (weights, optimizer, data order, where the epoch stopped)
  --resume          with --checkpoint: go on from DIR's checkpoint when it has one (else start
                    anew), inside the same total budget: the time the job was down is not
                    charged. The same command line works for the first run and every restart
                    (a scheduler's requeue); --hidden, --optimizer and --data must not change.
  --trace-events N  record at most N scopes in trace.json (Chrome trace format: open it in
                    https://ui.perfetto.dev or chrome://tracing); 0: no trace (default 1000000;
                    0 under a peak_bytes or rss_bytes limit: a trace grows the heap ~72 B a
                    scope, which no batch size controls)
  --help            this text

Progress goes to stderr (a live bar on a terminal, plain lines otherwise); the report and a
last line "test accuracy: 0.XXXX" go to stdout. Exit status: 0 done (a budget's stop
included), 1 data, output or checkpoint error or out of memory (the message names what could
not be allocated), 2 bad command line; after a clean stop on a signal, 128 + its number (143
for SIGTERM, 130 for SIGINT, 138 for SIGUSR1): a scheduler sees the job was interrupted.
)";
  return h;
}

namespace detail {

[[noreturn]] inline void bad_value(std::string_view option, std::string_view value, std::string_view why) {
  throw std::invalid_argument(std::string(option) + ": invalid value '" + std::string(value) + "': " +
                              std::string(why));
}

template <class Int>
[[nodiscard]] Int parse_int(std::string_view option, std::string_view text, Int lo, Int hi) {
  Int v{};
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc::result_out_of_range) bad_value(option, text, "out of range");
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) bad_value(option, text, "not an integer");
  if (v < lo || v > hi) bad_value(option, text, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

[[nodiscard]] inline float parse_real(std::string_view option, std::string_view text, double lo, double hi,
                                      bool lo_inclusive, bool hi_inclusive) {
  double v = 0;
  try {
    v = frugal::parse_count(text, option);  // strict: no inf, nan, hex, sign or trailing text
  } catch (const std::invalid_argument&) {
    bad_value(option, text, "not a non-negative number");
  }
  const bool low_ok = lo_inclusive ? v >= lo : v > lo;
  const bool high_ok = hi_inclusive ? v <= hi : v < hi;
  if (!low_ok || !high_ok)
    bad_value(option, text, std::string("must be in ") + (lo_inclusive ? "[" : "(") +
                                frugal::detail::units_impl::shortest(lo) + ", " +
                                frugal::detail::units_impl::shortest(hi) + (hi_inclusive ? "]" : ")"));
  return static_cast<float>(v);
}

[[nodiscard]] inline std::vector<int> parse_layers(std::string_view option, std::string_view text) {
  std::vector<int> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string_view item = text.substr(start, comma == std::string_view::npos ? text.size() - start : comma - start);
    if (item.empty()) bad_value(option, text, "expected comma-separated layer sizes such as 256,128");
    out.push_back(parse_int<int>(option, item, 1, 65536));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (out.size() > 8) bad_value(option, text, "at most 8 hidden layers");
  return out;
}

}  // namespace detail

// argv[1..argc) -> options. "--key value" and "--key=value" both work.
[[nodiscard]] inline options parse_options(int argc, const char* const* argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      o.help = true;
      continue;
    }
    if (arg == "--resume") {
      o.resume = true;
      continue;
    }
    if (arg.substr(0, 2) != "--") throw std::invalid_argument("unexpected argument '" + std::string(arg) + "'");
    std::string_view key = arg;
    std::string_view value;
    bool has_value = false;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      key = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    static constexpr std::string_view known[] = {"--budget", "--epochs", "--batch",    "--lr",      "--schedule",
                                                 "--optimizer", "--momentum", "--hidden", "--patience", "--seed",
                                                 "--threads", "--data",  "--out", "--trace-events", "--checkpoint"};
    bool is_known = false;
    for (std::string_view k : known) is_known = is_known || k == key;
    if (!is_known) throw std::invalid_argument("unknown option '" + std::string(key) + "' (see --help)");
    if (!has_value) {
      // No option takes a value that starts with "--": that is the next option.
      if (i + 1 >= argc || std::string_view(argv[i + 1]).substr(0, 2) == "--")
        throw std::invalid_argument(std::string(key) + ": missing value");
      value = argv[++i];
    }
    if (key == "--budget") {
      try {
        o.budget = frugal::limits::parse(value);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument("--budget: invalid value '" + std::string(value) + "': " + e.what());
      }
      o.budget_text = std::string(value);
    } else if (key == "--epochs") {
      o.epochs = detail::parse_int<int>(key, value, 1, 1'000'000);
    } else if (key == "--batch") {
      o.batch = detail::parse_int<int>(key, value, 1, 55'000);
    } else if (key == "--lr") {
      o.lr = detail::parse_real(key, value, 0, 10, false, true);
      o.lr_given = true;
    } else if (key == "--schedule") {
      o.lr_schedule = parse_schedule(value);
    } else if (key == "--optimizer") {
      if (value == "sgd")
        o.optimizer = optimizer_kind::sgd;
      else if (value == "adam")
        o.optimizer = optimizer_kind::adam;
      else
        detail::bad_value(key, value, "use sgd or adam");
    } else if (key == "--momentum") {
      o.momentum = detail::parse_real(key, value, 0, 1, true, false);
    } else if (key == "--hidden") {
      o.hidden = detail::parse_layers(key, value);
    } else if (key == "--patience") {
      o.patience = detail::parse_int<int>(key, value, 0, 1'000'000);
    } else if (key == "--seed") {
      o.seed = detail::parse_int<std::uint64_t>(key, value, 0, std::numeric_limits<std::uint64_t>::max());
    } else if (key == "--threads") {
      o.threads = detail::parse_int<int>(key, value, 1, 256);
    } else if (key == "--data") {
      if (value.empty()) detail::bad_value(key, value, "empty path");
      o.data_dir = std::string(value);
    } else if (key == "--trace-events") {
      o.trace_events = detail::parse_int<std::size_t>(key, value, 0, std::size_t{1} << 30);
      o.trace_events_given = true;
    } else if (key == "--out") {
      if (value.empty()) detail::bad_value(key, value, "empty path");
      o.out_dir = std::string(value);
    } else if (key == "--checkpoint") {
      if (value.empty()) detail::bad_value(key, value, "empty path");
      o.checkpoint_dir = std::string(value);
    }
  }
  if (o.resume && o.checkpoint_dir.empty())
    throw std::invalid_argument("--resume: needs --checkpoint DIR (where the run to go on from is saved)");
  if (!o.lr_given && o.optimizer == optimizer_kind::adam) o.lr = 0.001f;
  if (o.threads == 0) o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return o;
}

}  // namespace fmnist
