// search: tunes the Fashion-MNIST MLP of the main job (learning rate, batch size, hidden width,
// momentum) with Hyperband, successive halving or random search inside one frugal budget, each
// trial a child budget; writes the search's report and the best configuration's model.
#include "../fashion_mnist/idx.hpp"
#include "../fashion_mnist/mlp.hpp"
#include "../fashion_mnist/trainer.hpp"

#include <frugal/durable_file.hpp>
#include <frugal/frugal.hpp>
#include <frugal/report.hpp>
#include <frugal/search.hpp>
#include <frugal/search_report.hpp>
#include <frugal/search_tbb.hpp>

#include <oneapi/tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct options {
  std::string data_dir = fmnist::default_data_dir;
  std::string out_dir = "search_out";
  std::string budget_text = "samples=300000";
  frugal::limits budget;
  std::string method = "hyperband";  // hyperband | sh | random | grid
  std::size_t eta = 3;
  std::size_t rungs = 0;             // 0: from the space's size
  double min_resource = 0;           // 0: none
  double grid_samples = 110000;      // grid: samples per configuration (2 epochs)
  int space = 81;                    // 81 (lr x batch x width x momentum) or 27 (momentum 0.9)
  std::size_t validation = 5000;     // held-out images each rung is ranked on
  std::uint64_t seed = 1;
  int threads = 1;                   // shards per step (oneTBB)
  std::size_t concurrency = 1;       // trials at once (oneTBB)
  bool help = false;
};

const char* help_text =
    "usage: search [options]\n"
    "  --data DIR          Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)\n"
    "  --out DIR           report.json, report.txt, best_model.bin (default search_out)\n"
    "  --budget LIMITS     the parent budget, e.g. samples=300000 or wall=20s (default samples=300000)\n"
    "  --method M          hyperband | sh | random | grid (default hyperband)\n"
    "  --eta N             reduction factor (default 3)\n"
    "  --rungs K           rungs of the most exploratory bracket (default: from the space)\n"
    "  --min-resource X    the least a trial is given, in the budget's resource\n"
    "  --grid-samples N    grid: samples per configuration, no budget beyond that (default 110000)\n"
    "  --space 81|27       81: lr x batch x width x momentum; 27: momentum fixed at 0.9 (default 81)\n"
    "  --validation N      validation images per evaluation (default 5000)\n"
    "  --seed N            (default 1)\n"
    "  --threads N         oneTBB threads (default 1)\n"
    "  --concurrency N     trials at once on oneTBB (default 1)\n";

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](const std::string& v) {
      std::size_t used = 0;
      const double d = std::stod(v, &used);
      if (used != v.size()) throw std::invalid_argument(a + ": not a number: '" + v + "'");
      return d;
    };
    if (a == "--help" || a == "-h") o.help = true;
    else if (a == "--data") o.data_dir = next();
    else if (a == "--out") o.out_dir = next();
    else if (a == "--budget") o.budget_text = next();
    else if (a == "--method") o.method = next();
    else if (a == "--eta") o.eta = static_cast<std::size_t>(number(next()));
    else if (a == "--rungs") o.rungs = static_cast<std::size_t>(number(next()));
    else if (a == "--min-resource") o.min_resource = number(next());
    else if (a == "--grid-samples") o.grid_samples = number(next());
    else if (a == "--space") o.space = static_cast<int>(number(next()));
    else if (a == "--validation") o.validation = static_cast<std::size_t>(number(next()));
    else if (a == "--seed") o.seed = static_cast<std::uint64_t>(number(next()));
    else if (a == "--threads") o.threads = static_cast<int>(number(next()));
    else if (a == "--concurrency") o.concurrency = static_cast<std::size_t>(number(next()));
    else throw std::invalid_argument("unknown option '" + a + "'");
  }
  if (o.method != "hyperband" && o.method != "sh" && o.method != "random" && o.method != "grid")
    throw std::invalid_argument("--method must be hyperband, sh, random or grid, got '" + o.method + "'");
  if (o.space != 81 && o.space != 27) throw std::invalid_argument("--space must be 81 or 27, got " + std::to_string(o.space));
  if (o.threads < 1) throw std::invalid_argument("--threads must be >= 1");
  if (o.concurrency < 1) throw std::invalid_argument("--concurrency must be >= 1");
  if (o.method == "grid") {
    // The grid trains every configuration for --grid-samples: one rung of successive halving
    // over the whole space, its budget exactly that.
    if (!(o.grid_samples > 0)) throw std::invalid_argument("--grid-samples must be > 0");
    o.budget_text = "samples=" + std::to_string(static_cast<long long>(o.grid_samples) * o.space);
  }
  o.budget = frugal::limits::parse(o.budget_text);
  return o;
}

frugal::search_space make_space(int size) {
  std::vector<std::pair<std::string, std::vector<double>>> axes{
      {"lr", {0.01, 0.05, 0.2}},
      {"batch", {32, 128, 512}},
      {"width", {64, 128, 256}},
  };
  if (size == 81) axes.push_back({"momentum", {0.5, 0.9, 0.95}});
  return frugal::search_space::grid(axes);
}

// What a trial keeps between rungs: its model, optimizer, data order and place in it.
struct trial_state {
  trial_state(const frugal::configuration& c, std::size_t train_n, std::uint64_t seed, int threads)
      : model(fmnist::layer_sizes({static_cast<int>(c["width"]), static_cast<int>(c["width"]) / 2}), seed),
        opt(fmnist::optimizer_kind::sgd, model, static_cast<float>(c.get("momentum").value_or(0.9))),
        trainer(model, opt, threads),
        order(train_n),
        rng(seed * 0x9E3779B97F4A7C15ull + 1) {
    std::iota(order.begin(), order.end(), 0u);
    std::shuffle(order.begin(), order.end(), rng);
  }
  fmnist::mlp model;
  fmnist::optimizer opt;
  fmnist::trainer trainer;
  std::vector<std::uint32_t> order;
  std::mt19937_64 rng;
  std::size_t at = 0;        // next sample of the order
  double trained = 0;        // samples trained on
  fmnist::evaluation last;   // the last validation
};

// The model's weights: "FMLP", layer count, sizes, then every weight and bias (float, host order).
void save_model(const std::filesystem::path& path, const fmnist::mlp& model) {
  frugal::write_file_atomically(path, [&](std::ostream& out) {
    out.write("FMLP", 4);
    const auto n = static_cast<std::uint32_t>(model.sizes().size());
    out.write(reinterpret_cast<const char*>(&n), sizeof n);
    for (int s : model.sizes()) {
      const auto v = static_cast<std::uint32_t>(s);
      out.write(reinterpret_cast<const char*>(&v), sizeof v);
    }
    const fmnist::parameters& p = model.params();
    for (std::size_t l = 0; l < p.w.size(); ++l) {
      out.write(reinterpret_cast<const char*>(p.w[l].data()), static_cast<std::streamsize>(p.w[l].size() * sizeof(float)));
      out.write(reinterpret_cast<const char*>(p.b[l].data()), static_cast<std::streamsize>(p.b[l].size() * sizeof(float)));
    }
  });
}

int run(const options& opt) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(opt.data_dir, ec)) {
    std::printf("SKIPPED: Fashion-MNIST not installed (%s)\n", opt.data_dir.c_str());
    return 0;
  }
  fs::create_directories(opt.out_dir, ec);
  frugal::check_writable_directory(opt.out_dir);
  const fmnist::dataset data = fmnist::load_fashion_mnist(opt.data_dir);
  // The last images of the training set are held out: each rung ranks its trials on them. The
  // test set is touched once, by the best model after the search.
  const std::size_t total = data.train_images.count;
  const std::size_t val_n = std::min(opt.validation, total / 10);
  const std::size_t train_n = total - 5000;  // as the main job: the last 5000 are never trained on
  std::vector<std::uint32_t> val_index(val_n), test_index(data.test_images.count);
  std::iota(val_index.begin(), val_index.end(), static_cast<std::uint32_t>(train_n));
  std::iota(test_index.begin(), test_index.end(), 0u);

  tbb::global_control threads(tbb::global_control::max_allowed_parallelism,
                              static_cast<std::size_t>(opt.threads) * opt.concurrency);
  frugal::budget run{"tune", opt.budget};
  frugal::search_options so;
  so.eta(opt.eta).metric("val_accuracy", frugal::metric_mode::max).seed(opt.seed).concurrency(opt.concurrency);
  if (opt.method == "hyperband") so.method(frugal::search_method::hyperband);
  if (opt.method == "sh") so.method(frugal::search_method::successive_halving);
  if (opt.method == "random") so.method(frugal::search_method::random);
  if (opt.method == "grid") so.method(frugal::search_method::successive_halving).rungs(1);
  if (opt.rungs > 0) so.rungs(opt.rungs);
  if (opt.min_resource > 0) so.min_resource(opt.min_resource);
  if (opt.budget.get("samples")) so.resource("samples");
  frugal::search search{run, make_space(opt.space), so};
  const bool by_samples = search.resource() == "samples";
  const frugal::unit_id samples = frugal::unit("samples");

  std::fprintf(stderr, "search: %s over %zu configurations inside \"%s\": %zu trials planned, unit %s %s\n",
               opt.method.c_str(), make_space(opt.space).size(), opt.budget_text.c_str(), search.plan().trials(),
               frugal::format_count(search.plan().unit).c_str(), search.resource().c_str());

  // A trial's rung: steps until its controller stops it (before its budget's limit), then one
  // validation, reported through end_epoch. A promoted trial continues its model and data order.
  const auto trial_fn = [&](frugal::trial& t) {
    trial_state& st = t.state<trial_state>(t.config(), train_n, opt.seed + t.id(), opt.threads);
    frugal::controller& ctl = t.controller();
    const auto batch = static_cast<std::size_t>(t.config()["batch"]);
    const auto lr = static_cast<float>(t.config()["lr"]);
    while (!ctl.should_stop()) {
      std::size_t n = std::min(batch, train_n - st.at);
      // Never a step past the rung's samples: the last one is cut to what is left.
      if (by_samples) n = std::min<std::size_t>(n, static_cast<std::size_t>(t.budget().remaining("samples")));
      if (n == 0) break;
      fmnist::batch_result r;
      {
        frugal::scope s{t.budget(), "step"};
        r = st.trainer.step(data, st.order.data() + st.at, static_cast<Eigen::Index>(n), lr, &t.budget());
        frugal::add_units(samples, static_cast<double>(n));
      }
      st.at += n;
      st.trained += static_cast<double>(n);
      if (st.at == train_n) {
        std::shuffle(st.order.begin(), st.order.end(), st.rng);
        st.at = 0;
      }
      if (ctl.end_step(frugal::step{}.loss(r.loss_sum / static_cast<double>(n)).samples(n)).stops()) break;
    }
    {
      frugal::scope s{t.budget(), "validation"};
      st.last = st.trainer.evaluate(data.train_images, data.train_labels, val_index);
    }
    (void)ctl.end_epoch(frugal::epoch{}.metric("val_accuracy", st.last.accuracy).metric("val_loss", st.last.loss));
    std::fprintf(stderr, "  trial %3zu rung %zu  %-40s  %8.0f samples  val_accuracy %.4f\n", t.id(), t.rung(),
                 t.config().to_string().c_str(), st.trained, st.last.accuracy);
  };

  const auto start = std::chrono::steady_clock::now();
  const frugal::search_result& result =
      opt.concurrency > 1 ? frugal::run_parallel(search, trial_fn) : search.run(trial_fn);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // The best configuration's model: tested once, and saved (after the search, outside its budget).
  double test_accuracy = -1;
  if (const trial_state* best = search.best_state<trial_state>()) {
    fmnist::mlp model = best->model;
    fmnist::optimizer unused(fmnist::optimizer_kind::sgd, model, 0.9f);
    fmnist::trainer tester(model, unused, opt.threads);
    test_accuracy = tester.evaluate(data.test_images, data.test_labels, test_index).accuracy;
    save_model(fs::path(opt.out_dir) / "best_model.bin", best->model);
  }

  frugal::write_file_atomically(fs::path(opt.out_dir) / "report.json",
                                [&](std::ostream& o) { frugal::write_json_report(o, run, result); });
  frugal::write_file_atomically(fs::path(opt.out_dir) / "report.txt", [&](std::ostream& o) {
    frugal::print_report(o, result);
    o << '\n';
    frugal::print_report(o, run);
  });
  frugal::print_report(std::cout, result);
  // One line for scripts (measure.sh): what the search found and what it cost.
  const frugal::trial_record* best = result.best_trial();
  std::printf("RESULT method=%s budget=%s resource=%s used=%.10g limit=%.10g inside=%d completed=%d trials=%zu "
              "best_val=%.4f test=%.4f best=\"%s\" wall_s=%.2f flops=%.4g\n",
              opt.method.c_str(), opt.budget_text.c_str(), result.resource.c_str(), result.parent_used,
              result.parent_limit, result.parent_used <= result.parent_limit ? 1 : 0, result.completed ? 1 : 0,
              result.trials.size(), best && best->metric() ? *best->metric() : -1.0, test_accuracy,
              best ? best->config.to_string().c_str() : "", seconds, run.used(frugal::resource::flops));
  std::cout.flush();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  try {
    opt = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "search: error: %s\n(run with --help for the options)\n", e.what());
    return 2;
  }
  if (opt.help) {
    std::fputs(help_text, stdout);
    return 0;
  }
  try {
    return run(opt);
  } catch (const fmnist::data_error& e) {
    std::fprintf(stderr, "search: %s\n", e.what());
    return 1;
  } catch (const frugal::io_error& e) {
    std::fprintf(stderr, "search: --out: %s\n", e.what());
    return 1;
  }
}
