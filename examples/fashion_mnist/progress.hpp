// Progress on stderr: a live bar redrawn in place on a terminal (budget used per limited
// resource, batch, loss, accuracy, what remains), one plain line per epoch otherwise.
#pragma once

#include <frugal/units.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace fmnist {

struct progress_status {
  int epoch = 0;
  int epochs = 0;
  long step = 0;             // within the epoch
  long steps_per_epoch = 0;
  int batch = 0;
  float lr = 0;
  double loss = 0;           // running mean over the epoch so far
  double accuracy = 0;       // running training accuracy over the epoch so far
  std::vector<std::pair<std::string, double>> used;  // fraction used of each limited resource
  double seconds_left = -1;  // forecast; negative when unknown
  double epochs_left = -1;
};

struct epoch_scores {
  double val_loss = 0;
  double val_accuracy = 0;
  double test_accuracy = 0;  // NaN: not measured (the test set is evaluated at the run's end)
};

class progress_bar {
 public:
  explicit progress_bar(std::FILE* out) : out_(out), tty_(isatty(fileno(out)) == 1) {}

  [[nodiscard]] bool live() const noexcept { return tty_; }

  // Whether update() would redraw now: at most 10 times a second, on a terminal only. The
  // caller skips preparing a status (strings, allocations) that would not be shown.
  [[nodiscard]] bool due() const {
    return tty_ && std::chrono::steady_clock::now() - last_draw_ >= std::chrono::milliseconds(100);
  }

  // During an epoch: redraws the line when due().
  void update(const progress_status& s) {
    if (!due()) return;
    last_draw_ = std::chrono::steady_clock::now();
    const std::string line = "\r" + bar(s) + " " + common(s) + " " + forecast(s);
    std::fprintf(out_, "%s\x1b[K", line.c_str());
    std::fflush(out_);
  }

  // At an epoch's end: the epoch's line, kept (a terminal's live line is replaced by it).
  void epoch_done(const progress_status& s, const epoch_scores& e) {
    char scores[160];
    const int n = std::snprintf(scores, sizeof scores, "val loss %.4f  val acc %.4f", e.val_loss, e.val_accuracy);
    if (!std::isnan(e.test_accuracy) && n > 0 && static_cast<std::size_t>(n) < sizeof scores)
      std::snprintf(scores + n, sizeof scores - static_cast<std::size_t>(n), "  test acc %.4f", e.test_accuracy);
    const std::string line = "epoch " + std::to_string(s.epoch) + "  " + common(s) + "  " + scores + "  " + forecast(s);
    std::fprintf(out_, "%s%s\n", tty_ ? "\r\x1b[K" : "", line.c_str());
    std::fflush(out_);
    last_draw_ = {};
  }

  // Any other message, on its own line.
  void note(const std::string& text) {
    std::fprintf(out_, "%s%s\n", tty_ ? "\r\x1b[K" : "", text.c_str());
    std::fflush(out_);
  }

 private:
  static std::string percent(double f) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f %%", 100 * f);
    return b;
  }

  static std::string bar(const progress_status& s) {
    // The bar shows the epoch; the budget has its own figures beside it.
    const double f = s.steps_per_epoch > 0 ? static_cast<double>(s.step) / static_cast<double>(s.steps_per_epoch) : 0;
    constexpr int width = 20;
    const int full = std::clamp(static_cast<int>(std::lround(f * width)), 0, width);
    return "epoch " + std::to_string(s.epoch) + " [" + std::string(static_cast<std::size_t>(full), '#') +
           std::string(static_cast<std::size_t>(width - full), '.') + "]";
  }

  static std::string common(const progress_status& s) {
    std::string out;
    for (const auto& [name, f] : s.used) out += name + " " + percent(f) + "  ";
    char b[160];
    std::snprintf(b, sizeof b, "batch %d  lr %.4g  loss %.4f  acc %.4f", s.batch, static_cast<double>(s.lr), s.loss,
                  s.accuracy);
    return out + b;
  }

  static std::string forecast(const progress_status& s) {
    if (s.seconds_left < 0 && s.epochs_left < 0) return "";
    std::string out = "left:";
    if (s.seconds_left >= 0) out += " ~" + frugal::format_duration(s.seconds_left);
    if (s.epochs_left >= 0) {
      char b[32];
      std::snprintf(b, sizeof b, " ~%.1f epochs", s.epochs_left);
      out += b;
    }
    return out;
  }

  std::FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace fmnist
