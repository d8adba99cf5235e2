// Guide 5: the JSON report, and a plot of accuracy against the budget used.
//
//   guide_json_report [OUT_DIR]               train inside wall=2s, write OUT_DIR/report.json, plot it
//   guide_json_report --read REPORT [OUT_DIR] only read and plot a report written before
//
// Part 1 trains and writes report.json with frugal::write_json_report; at every epoch's end it
// reports two metrics to the controller, the validation accuracy and the fraction of the budget
// used, which the report keeps. Part 2 reads the file back with nlohmann_json, as a separate
// tool would, prints the run's totals, writes accuracy.csv and accuracy.gp (for gnuplot) and
// draws the curve as text. Walkthrough: README.md here.
#include "../model.hpp"

#include <frugal/durable_file.hpp>
#include <frugal/frugal.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

// Part 1: a run like guide 1's (an epoch = 25 steps and an evaluation), and its report.
void train(const fs::path& report_file) {
  const guide::data data = guide::load_fashion_mnist(10000, 1000, 0);
  guide::mlp model(64);
  frugal::budget run{"train", frugal::limits::parse("wall=2s")};
  frugal::budget& eval = run.child("eval");
  frugal::controller ctl{run, frugal::controller_options{}.steps_per_epoch(25)};
  const frugal::linear_decay lr{0.1, run};
  Eigen::Index next = 0;
  {
    frugal::scope whole{run, "training"};
    while (!ctl.should_stop()) {
      bool stopped = false;
      for (int s = 0; s < 25; ++s) {
        const Eigen::Index n = std::min<Eigen::Index>(64, data.train.size() - next);
        double loss = 0;
        {
          frugal::scope step{run, "step"};
          loss = model.backward(data.train, next, n);
          model.update(lr());
        }
        next = (next + n) % data.train.size();
        const frugal::decision d = ctl.end_step(frugal::step{}.loss(loss).samples(static_cast<std::size_t>(n)));
        stopped = d.stops();
        if (d.ends_epoch()) break;
      }
      if (stopped) break;
      guide::scores val;
      {
        frugal::scope s{eval, "validation"};
        val = model.evaluate(data.val);
      }
      // Any metric may go in; the report keeps them all, epoch by epoch.
      (void)ctl.end_epoch(frugal::epoch{}.metric("val_acc", val.accuracy).metric("budget_used", run.fraction_used()));
    }
  }
  (void)ctl.end_run();
  // The budget tree and the controller's story, written whole or not at all.
  frugal::write_file_atomically(report_file, [&](std::ostream& out) { frugal::write_json_report(out, run, ctl); });
  std::printf("wrote %s\n\n", report_file.string().c_str());
}

// Part 2: read it back. Keys: report.hpp (the budget) and controller_report.hpp (the controller).
void plot(const fs::path& report_file, const fs::path& out_dir) {
  std::ifstream in(report_file);
  const nlohmann::json report = nlohmann::json::parse(in);  // throws on a file that is not JSON
  const nlohmann::json& budget = report.at("budget");
  const nlohmann::json& ctl = report.at("controller");

  // Used against limit, for every limited resource (null: unlimited; "units" holds user units).
  for (const auto& [name, limit] : budget.at("limits").items())
    if (name != "units" && !limit.is_null())
      std::printf("%s: %g used of %g %s\n", name.c_str(), budget.at("used").at(name).get<double>(),
                  limit.get<double>(), report.at("units_of_measure").at(name).get<std::string>().c_str());
  std::printf("stop: %s\n", ctl.at("stop").at("message").get<std::string>().c_str());
  for (const auto& stage : budget.at("stages"))
    std::printf("stage %-10s %6d calls %8.3f s\n", stage.at("name").get<std::string>().c_str(),
                stage.at("calls").get<int>(), stage.at("wall").get<double>());

  // The curve: one point per epoch that reported both metrics.
  std::vector<std::pair<double, double>> points;  // (budget used, accuracy)
  for (const auto& m : ctl.at("metrics")) {
    const nlohmann::json& v = m.at("values");
    if (v.contains("budget_used") && v.contains("val_acc") && !v["val_acc"].is_null())
      points.emplace_back(v["budget_used"].get<double>(), v["val_acc"].get<double>());
  }
  std::string csv = "budget_used,val_acc\n";
  for (const auto& [x, y] : points) csv += std::to_string(x) + "," + std::to_string(y) + "\n";
  frugal::write_file_atomically(out_dir / "accuracy.csv", csv);
  frugal::write_file_atomically(out_dir / "accuracy.gp",
                                "set terminal png size 800,500 noenhanced\nset output 'accuracy.png'\nset key bottom right\n"
                                "set datafile separator ','\nset xlabel 'budget used (%)'\nset ylabel 'accuracy'\n"
                                "plot 'accuracy.csv' skip 1 using ($1*100):2 with linespoints title 'val_acc'\n");
  std::printf("\nwrote accuracy.csv and accuracy.gp (cd %s && gnuplot accuracy.gp: accuracy.png)\n\n",
              out_dir.string().c_str());

  // The same as text: 10 rows from the lowest accuracy to the highest, 50 columns of budget.
  if (points.empty()) return;
  double low = points[0].second, high = low;
  for (const auto& p : points) low = std::min(low, p.second), high = std::max(high, p.second);
  std::vector<std::string> rows(10, std::string(51, ' '));
  for (const auto& [x, y] : points) {
    const int col = static_cast<int>(std::clamp(x, 0.0, 1.0) * 50);
    const int row = high > low ? static_cast<int>((high - y) / (high - low) * 9 + 0.5) : 0;
    rows[static_cast<std::size_t>(row)][static_cast<std::size_t>(col)] = '*';
  }
  for (std::size_t r = 0; r < rows.size(); ++r)
    std::printf("%6.4f |%s\n", high - (high - low) * static_cast<double>(r) / 9, rows[r].c_str());
  std::printf("       +%s\n        0 %%%42s100 %% of the budget\n", std::string(51, '-').c_str(), "");
}

int main(int argc, char** argv) {
  try {
    if (argc > 2 && std::strcmp(argv[1], "--read") == 0) {
      plot(argv[2], argc > 3 ? argv[3] : ".");
      return 0;
    }
    const fs::path out_dir = argc > 1 ? argv[1] : ".";
    train(out_dir / "report.json");
    plot(out_dir / "report.json", out_dir);
  } catch (const std::exception& e) {  // a file that cannot be written or read, a key missing
    std::fprintf(stderr, "guide_json_report: %s\n", e.what());
    return 1;
  }
}
