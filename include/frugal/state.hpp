/// @file
/// The state of a run that survives its process: the budget tree's usage and the controller's
/// counters, models, rules, early stopping and stop, as plain structs; capture() and restore().
/// Dependency-free: <frugal/state_json.hpp> reads and writes them as a JSON document.
#pragma once

#include <frugal/budget.hpp>
#include <frugal/controller.hpp>
#include <frugal/controller_history.hpp>
#include <frugal/early_stopping.hpp>
#include <frugal/events.hpp>
#include <frugal/forecast.hpp>
#include <frugal/memory_model.hpp>
#include <frugal/units.hpp>
#include <frugal/version.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace frugal {

/// The version of the state document this frugal writes, and the newest it reads.
inline constexpr int state_version = 1;

/// A state refused: what() names where it came from (a file, or "run state" for one built in
/// memory), the field's path and the problem:
///   frugal: state file 'run/state.json': controller.steps: expected a non-negative integer, got "abc"
class state_error : public std::invalid_argument {
 public:
  /// A refusal of `field` (a path such as "controller.steps"; "" for the whole document) of the
  /// state from `source` ("" for one in memory), for `problem`.
  state_error(std::string source, std::string field, const std::string& problem)
      : std::invalid_argument(text(source, field, problem)), source_(std::move(source)), field_(std::move(field)) {}
  ///@{
  /// The file's name as given ("" for a state in memory) and the field's path ("" when the
  /// document as a whole is refused: not JSON, empty).
  [[nodiscard]] const std::string& source() const noexcept { return source_; }
  [[nodiscard]] const std::string& field() const noexcept { return field_; }
  ///@}

 private:
  static std::string text(const std::string& source, const std::string& field, const std::string& problem) {
    std::string out = source.empty() ? std::string("frugal: run state: ") : "frugal: state file '" + source + "': ";
    if (!field.empty()) out += field + ": ";
    return out + problem;
  }
  std::string source_;
  std::string field_;
};

// --- the state, as plain data. Field names are the document's keys (state_json.hpp). ---

/// forecast.hpp's cost_stats: its recent observations, so that forecasts continue exactly.
struct cost_stats_state {
  std::uint64_t count = 0;                        ///< observations ever added
  double last = 0;                                ///< the last one
  std::uint64_t outliers = 0;                     ///< excluded as outliers so far
  std::optional<std::uint64_t> outlier_counted;   ///< the number (from 0) of the one last counted
  std::vector<double> recent;                     ///< the last min(count, window), oldest first
};

/// forecast.hpp's cost_model: one cost_stats per batch size, with its recency.
struct cost_model_state {
  /// One batch size's statistics.
  struct size_entry {
    /// The batch size (0: unknown).
    std::size_t batch = 0;
    std::uint64_t last_used = 0;  ///< the model's tick when it was last observed
    /// Its cost statistics.
    cost_stats_state stats;
  };
  /// The model's recency counter, advanced by every observation.
  std::uint64_t tick = 0;
  /// The batch sizes remembered (at most cost_model::max_sizes).
  std::vector<size_entry> sizes;
};

/// memory_model.hpp's memory_model: the peaks measured per size.
struct memory_model_state {
  /// One size's peaks.
  struct size_entry {
    /// The size (samples, or a stage's chunk size).
    std::size_t size = 0;
    /// The model's tick when it was last recorded.
    std::uint64_t last_used = 0;
    std::vector<double> peaks;  ///< the last ones measured, oldest first
  };
  /// The model's recency counter.
  std::uint64_t tick = 0;
  /// The size of the last run added, recorded or not (memory_model::last_run()).
  std::size_t last_run = 0;
  /// The lowest heap level at which a run started, in bytes; none when never given.
  std::optional<double> base_hint;
  /// The sizes remembered (at most memory_model::max_sizes).
  std::vector<size_entry> sizes;
};

/// A resource the controller forecasts (the wall, the peak heap and every limited one).
struct resource_state {
  /// The resource or user unit.
  std::string name;
  std::optional<double> limit;  ///< when saved; none: unlimited. Thresholds carry over only under the same limit
  double last_cost = 0;         ///< the last step's cost (a consumable)
  double height = 0;            ///< a level at the last step
  double seen = 0;              ///< a level: the highest the steps reached
  bool crossed = false;         ///< a level above its limit at the last checkpoint
  /// The index of the next soft threshold to fire (approaching_event).
  std::size_t next_threshold = 0;
  /// Whether exhausted_event has fired for it.
  bool exhausted_fired = false;
  std::array<bool, 3> overrun{};  ///< by forecast_horizon: next_step, epoch_end, planned_work
  cost_model_state step;          ///< a step's cost over batch sizes
  memory_model_state memory;      ///< a level: a step's peak over batch sizes
  cost_stats_state epoch_end;     ///< the work after an epoch's last step
  /// Times: the epoch end's cost over the steps' cost per sample then.
  cost_stats_state end_in_step_rate;
};

/// A stage sized by controller::chunk_size(): its memory model per level.
struct sized_stage_state {
  /// The stage's name.
  std::string name;
  /// The size chunk_size() gave last.
  std::size_t last = 0;
  /// Chunks measured so far.
  std::uint64_t chunks = 0;
  /// (level, its model) per limited level.
  std::vector<std::pair<std::string, memory_model_state>> models;
};

/// A pruning or quantization rule: when it fired, whether it still fires, the measurement of its
/// last action's effect. Matched to the new process's rules by name.
struct compression_rule_state {
  /// The rule's name.
  std::string rule;
  std::optional<std::uint64_t> fired;  ///< the step it last fired at
  /// The rule no longer fires: its action did not lower what it watches.
  bool disabled = false;
  /// Its last action's effect is being measured.
  bool measuring = false;
  /// The step at which the effect is judged.
  std::uint64_t measure_until = 0;
  std::size_t record = 0;                       ///< its action's index in history.compressions
  std::vector<std::string> resources;           ///< the resources measured
  std::vector<std::vector<double>> per_sample;   ///< their costs per sample since the action
  int bits = 0;                                 ///< quantize: the width now (0 for prune rules)
};

/// An early_stopping's progress, matched to the new process's stoppers by metric: its patience
/// continues where it was.
struct early_stopping_state {
  /// The metric watched: matches the stopper.
  std::string metric;
  /// early_stopping::best().
  std::optional<double> best;
  /// early_stopping::best_epoch().
  std::optional<std::uint64_t> best_epoch;
  /// early_stopping::wait(): counted updates since the last improvement.
  std::size_t wait = 0;
  /// early_stopping::updates().
  std::uint64_t updates = 0;
  /// early_stopping::last().
  std::optional<double> last;
  /// early_stopping::stopped().
  bool stopped = false;
  /// early_stopping::verdict().
  early_stop_verdict verdict = early_stop_verdict::no_improvement;
};

/// Whether the controller had decided a stop, and why.
struct stop_state {
  /// A stop was decided.
  bool stopped = false;
  /// Its cause.
  frugal::stop_reason reason = frugal::stop_reason::none;
  /// Its reasons in words.
  std::string message;
};

/// The batch-size knob.
struct batch_state {
  std::size_t size = 0;  ///< 0: the controller did not manage the batch
  /// Gradient-accumulation steps per update.
  std::size_t accumulation = 1;
  /// Steps since the batch size last changed.
  std::uint64_t steps_since_change = 0;
  /// Batch-size changes so far.
  std::uint64_t changes = 0;
  std::size_t last = 0;      ///< the last step's batch
  std::size_t previous = 0;  ///< the one before
  /// The memory probe (controller::probe_memory) is under way.
  bool probing_memory = false;
};

/// A controller's progress: counters, the knob, the stop, the forecasts' history, the rules' state
/// and the history.
struct controller_state {
  /// controller::steps().
  std::uint64_t steps = 0;
  /// controller::epochs().
  std::uint64_t epochs = 0;
  /// controller::steps_in_epoch().
  std::uint64_t steps_in_epoch = 0;
  /// Samples processed in the run.
  std::uint64_t samples = 0;
  /// Samples processed in the current epoch.
  std::uint64_t samples_in_epoch = 0;
  /// False once a step's samples were unknown (then epoch sizes are not learnt from samples).
  bool samples_known = true;
  /// Steps of the first complete epoch (0 before one ended).
  std::uint64_t learned_steps_per_epoch = 0;
  /// Samples of the first complete epoch (0 before one ended, or unknown).
  std::uint64_t learned_epoch_samples = 0;
  /// The kind of the last checkpoint.
  checkpoint last_checkpoint = checkpoint::step;
  /// An end_epoch decision was made in the current epoch.
  bool epoch_ending = false;
  /// The batch-size knob.
  batch_state batch;
  /// The stop, if decided.
  stop_state stop;
  /// Every forecast resource.
  std::vector<resource_state> resources;
  /// Every stage sized by chunk_size().
  std::vector<sized_stage_state> stages;
  /// The pruning rules, in the options' order.
  std::vector<compression_rule_state> prune_rules;
  /// The quantization rules, in the options' order.
  std::vector<compression_rule_state> quantize_rules;
  /// The early stoppers, in the options' order.
  std::vector<early_stopping_state> early_stopping;
  controller_history history;  ///< in full: a resumed run's report tells the whole story
};

/// A budget and its children: the usage (inclusive, as used() reads it) and the stages. The
/// limits are recorded, for people and tools; restore() does not apply them.
struct budget_state {
  /// The budget's name (children are matched by it).
  std::string name;
  /// Its limits when saved (not applied by restore()).
  frugal::limits limits;
  /// Everything it had used, inclusive, in each resource's unit.
  usage used;
  /// Its stages.
  std::vector<stage_stats> stages;
  /// Its children.
  std::vector<budget_state> children;
};

/// The state of a run: its budget tree and its controller, as saved at a checkpoint and restored by
/// a later process.
struct run_state {
  /// The document's version (state_version when written).
  int version = state_version;
  std::string frugal_version = version_string;  ///< the writer's; for people
  /// When it was saved (system clock).
  std::chrono::system_clock::time_point saved_at{};
  std::chrono::duration<double> downtime{0};  ///< between processes, over the resumes before this save
  /// The budget tree.
  budget_state budget;
  /// The controller.
  controller_state controller;
};

namespace detail {

// Refuses a state no run could have left (state_error naming `source` and the field): every
// check restore() needs before it changes anything. from_json runs it on what it read.
class state_checker {
 public:
  explicit state_checker(std::string source) : source_(std::move(source)) {}

  void check(const run_state& s) const {
    if (s.version < 1 || s.version > state_version)
      fail("version", std::to_string(s.version) + " is not a version this frugal reads (1 to " +
                          std::to_string(state_version) + ")");
    if (!(std::isfinite(s.downtime.count()) && s.downtime.count() >= 0))
      fail("downtime", "expected a finite number >= 0, got " + units_impl::shortest(s.downtime.count()));
    check(s.budget, "budget");
    check(s.controller, "controller");
  }

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    throw state_error(source_, field, problem);
  }

 private:
  static std::string at(const std::string& path, std::size_t i) { return path + "[" + std::to_string(i) + "]"; }

  void amount(const std::string& path, double v) const {
    if (!(std::isfinite(v) && v >= 0)) fail(path, "expected a finite number >= 0, got " + units_impl::shortest(v));
  }
  void name(const std::string& path, const std::string& n) const {
    if (n.empty()) fail(path, "expected a non-empty name, got \"\"");
  }
  void unit(const std::string& path, const std::string& n) const {
    if (auto problem = units_impl::unit_name_problem(n)) fail(path, *problem);
  }

  void check(const budget_state& b, const std::string& path) const {
    name(path + ".name", b.name);
    for (resource r : all_resources) amount(path + ".used." + std::string(to_string(r)), b.used[r]);
    for (const auto& [n, v] : b.used.units) {
      unit(path + ".used.units", n);
      amount(path + ".used.units." + n, v);
    }
    for (std::size_t i = 0; i < b.stages.size(); ++i) {
      const stage_stats& s = b.stages[i];
      name(at(path + ".stages", i) + ".name", s.name);
      amount(at(path + ".stages", i) + ".wall", s.wall_seconds);
      if (s.peak_rise_bytes < 0) fail(at(path + ".stages", i) + ".peak_rise_bytes", "expected >= 0, got " + std::to_string(s.peak_rise_bytes));
      for (const auto& [n, v] : s.units) {
        unit(at(path + ".stages", i) + ".units", n);
        amount(at(path + ".stages", i) + ".units." + n, v);
      }
      for (std::size_t j = 0; j < i; ++j)
        if (b.stages[j].name == s.name) fail(at(path + ".stages", i) + ".name", "the stage '" + s.name + "' appears twice");
    }
    for (std::size_t i = 0; i < b.children.size(); ++i) {
      check(b.children[i], at(path + ".children", i));
      for (std::size_t j = 0; j < i; ++j)
        if (b.children[j].name == b.children[i].name)
          fail(at(path + ".children", i) + ".name", "the child '" + b.children[i].name + "' appears twice");
    }
  }

  void check(const cost_stats_state& s, const std::string& path) const {
    const std::uint64_t most = std::min<std::uint64_t>(s.count, forecast_options::max_window);
    if (s.recent.size() > most || (s.count > 0 && s.recent.empty()))
      fail(path + ".recent", "expected 1 to min(count, " + std::to_string(forecast_options::max_window) +
                                 ") = " + std::to_string(most) + " observations, got " + std::to_string(s.recent.size()));
    for (std::size_t i = 0; i < s.recent.size(); ++i) amount(at(path + ".recent", i), s.recent[i]);
    amount(path + ".last", s.last);
    if (s.outlier_counted && *s.outlier_counted >= s.count)
      fail(path + ".outlier_counted", "expected an observation's number below count (" + std::to_string(s.count) +
                                          "), got " + std::to_string(*s.outlier_counted));
  }

  void check(const cost_model_state& m, const std::string& path) const {
    if (m.sizes.size() > cost_model::max_sizes)
      fail(path + ".sizes", "expected at most " + std::to_string(cost_model::max_sizes) + " sizes, got " +
                                std::to_string(m.sizes.size()));
    for (std::size_t i = 0; i < m.sizes.size(); ++i) {
      const auto& e = m.sizes[i];
      if (e.last_used > m.tick)
        fail(at(path + ".sizes", i) + ".last_used", "expected at most tick (" + std::to_string(m.tick) + "), got " +
                                                        std::to_string(e.last_used));
      for (std::size_t j = 0; j < i; ++j)
        if (m.sizes[j].batch == e.batch)
          fail(at(path + ".sizes", i) + ".batch", "the batch size " + std::to_string(e.batch) + " appears twice");
      check(e.stats, at(path + ".sizes", i) + ".stats");
    }
  }

  void check(const memory_model_state& m, const std::string& path) const {
    if (m.sizes.size() > memory_model::max_sizes)
      fail(path + ".sizes", "expected at most " + std::to_string(memory_model::max_sizes) + " sizes, got " +
                                std::to_string(m.sizes.size()));
    if (m.base_hint) amount(path + ".base_hint", *m.base_hint);
    for (std::size_t i = 0; i < m.sizes.size(); ++i) {
      const auto& e = m.sizes[i];
      const std::string p = at(path + ".sizes", i);
      if (e.size == 0) fail(p + ".size", "expected a size > 0, got 0");
      if (e.last_used > m.tick)
        fail(p + ".last_used", "expected at most tick (" + std::to_string(m.tick) + "), got " + std::to_string(e.last_used));
      if (e.peaks.empty() || e.peaks.size() > memory_model::max_window)
        fail(p + ".peaks", "expected 1 to " + std::to_string(memory_model::max_window) + " peaks, got " +
                               std::to_string(e.peaks.size()));
      for (std::size_t k = 0; k < e.peaks.size(); ++k) amount(at(p + ".peaks", k), e.peaks[k]);
      for (std::size_t j = 0; j < i; ++j)
        if (m.sizes[j].size == e.size) fail(p + ".size", "the size " + std::to_string(e.size) + " appears twice");
    }
  }

  void check(const controller_state& c, const std::string& path) const {
    if (c.steps_in_epoch > c.steps)
      fail(path + ".steps_in_epoch", "expected at most steps (" + std::to_string(c.steps) + "), got " +
                                         std::to_string(c.steps_in_epoch));
    if (c.samples_in_epoch > c.samples)
      fail(path + ".samples_in_epoch", "expected at most samples (" + std::to_string(c.samples) + "), got " +
                                           std::to_string(c.samples_in_epoch));
    if (c.batch.accumulation == 0) fail(path + ".batch.accumulation", "expected an integer >= 1, got 0");
    if (c.stop.stopped == (c.stop.reason == frugal::stop_reason::none))
      fail(path + ".stop.reason", c.stop.stopped ? "expected a reason for a stop, got none" : "expected none while not stopped, got " +
                                                       std::string(to_string(c.stop.reason)));
    std::vector<std::string> resources;
    for (std::size_t i = 0; i < c.resources.size(); ++i) {
      const resource_state& r = c.resources[i];
      const std::string p = at(path + ".resources", i);
      name(p + ".name", r.name);
      if (std::find(resources.begin(), resources.end(), r.name) != resources.end())
        fail(p + ".name", "the resource '" + r.name + "' appears twice");
      resources.push_back(r.name);
      if (r.limit) amount(p + ".limit", *r.limit);
      amount(p + ".last_cost", r.last_cost);
      amount(p + ".height", r.height);
      amount(p + ".seen", r.seen);
      check(r.step, p + ".step");
      check(r.memory, p + ".memory");
      check(r.epoch_end, p + ".epoch_end");
      check(r.end_in_step_rate, p + ".end_in_step_rate");
    }
    for (std::size_t i = 0; i < c.stages.size(); ++i) {
      const std::string p = at(path + ".stages", i);
      name(p + ".name", c.stages[i].name);
      for (std::size_t k = 0; k < c.stages[i].models.size(); ++k) {
        name(at(p + ".models", k) + ".level", c.stages[i].models[k].first);
        check(c.stages[i].models[k].second, at(p + ".models", k));
      }
    }
    const auto rules = [&](const std::vector<compression_rule_state>& v, const std::string& where, bool quantize) {
      for (std::size_t i = 0; i < v.size(); ++i) {
        const compression_rule_state& r = v[i];
        const std::string p = at(path + "." + where, i);
        name(p + ".rule", r.rule);
        if (r.measuring && !r.fired) fail(p + ".measuring", "expected false for a rule that never fired, got true");
        if (r.fired && r.record >= c.history.compressions.size())
          fail(p + ".record", "expected an index in history.compressions (" + std::to_string(c.history.compressions.size()) +
                                  " records), got " + std::to_string(r.record));
        if (r.per_sample.size() != r.resources.size())
          fail(p + ".per_sample", "expected one list per resource (" + std::to_string(r.resources.size()) + "), got " +
                                      std::to_string(r.per_sample.size()));
        for (std::size_t k = 0; k < r.resources.size(); ++k) {
          if (std::find(resources.begin(), resources.end(), r.resources[k]) == resources.end())
            fail(at(p + ".resources", k), "expected a resource of controller.resources, got '" + r.resources[k] + "'");
          for (std::size_t n = 0; n < r.per_sample[k].size(); ++n) amount(at(at(p + ".per_sample", k), n), r.per_sample[k][n]);
        }
        if (quantize && (r.bits < 1 || r.bits > 64)) fail(p + ".bits", "expected a width in [1, 64], got " + std::to_string(r.bits));
      }
    };
    rules(c.prune_rules, "prune_rules", false);
    rules(c.quantize_rules, "quantize_rules", true);
    for (std::size_t i = 0; i < c.early_stopping.size(); ++i) {
      const early_stopping_state& e = c.early_stopping[i];
      const std::string p = at(path + ".early_stopping", i);
      name(p + ".metric", e.metric);
      if (e.best.has_value() != e.best_epoch.has_value())
        fail(p + ".best", "expected best and best_epoch both given or both null");
      if (e.best && !std::isfinite(*e.best)) fail(p + ".best", "expected a finite number, got " + units_impl::shortest(*e.best));
      if (e.wait > e.updates)
        fail(p + ".wait", "expected at most updates (" + std::to_string(e.updates) + "), got " + std::to_string(e.wait));
    }
    const controller_history& h = c.history;
    for (std::size_t i = 0; i < h.compressions.size(); ++i)
      if (h.compressions[i].kind != action::prune && h.compressions[i].kind != action::quantize)
        fail(at(path + ".history.compressions", i) + ".action",
             "expected prune or quantize, got " + std::string(to_string(h.compressions[i].kind)));
  }

  std::string source_;
};

// The controller's and the models' private state (they befriend this struct).
struct state_access {
  // --- cost_stats ---
  static cost_stats_state save(const cost_stats& c) {
    cost_stats_state s;
    s.count = c.count_;
    s.last = c.last_;
    s.outliers = c.outliers_;
    if (c.counted_seq_ != cost_stats::none) s.outlier_counted = c.counted_seq_;
    const std::uint64_t n = std::min<std::uint64_t>(c.count_, c.window_);
    for (std::uint64_t seq = c.count_ - n; seq < c.count_; ++seq) s.recent.push_back(c.ring_[static_cast<std::size_t>(seq % c.window_)]);
    return s;
  }
  // Into a cost_stats with this process's window. A window larger than the one saved keeps the
  // observations saved, numbered as if they were the first (the statistics then cover them alone).
  static void load(cost_stats& c, const cost_stats_state& s) {
    const std::size_t k = std::min<std::size_t>(s.recent.size(), c.window_);
    const std::uint64_t full = std::min<std::uint64_t>(s.count, c.window_);
    c.ring_ = {};
    c.count_ = s.count;
    c.counted_seq_ = s.outlier_counted.value_or(cost_stats::none);
    if (k < full) {
      const std::uint64_t shift = s.count - k;
      c.count_ = k;
      c.counted_seq_ = s.outlier_counted && *s.outlier_counted >= shift ? *s.outlier_counted - shift : cost_stats::none;
    }
    for (std::size_t i = 0; i < k; ++i)
      c.ring_[static_cast<std::size_t>((c.count_ - k + i) % c.window_)] = s.recent[s.recent.size() - k + i];
    c.last_ = s.last;
    c.outliers_ = s.outliers;
    c.high_ = c.mean_ = c.median_ = c.spread_ = 0;
    c.excluded_ = false;
    if (c.count_ > 0) c.update();
    // update() counts an outlier it sees for the first time; the saved count already has it.
    c.outliers_ = s.outliers;
  }

  // --- cost_model ---
  static cost_model_state save(const cost_model& m) {
    cost_model_state s;
    s.tick = m.tick_;
    for (std::size_t i = 0; i < m.size_; ++i)
      s.sizes.push_back(cost_model_state::size_entry{m.entries_[i].batch, m.entries_[i].last_used, save(m.entries_[i].stats)});
    return s;
  }
  static void load(cost_model& m, const cost_model_state& s) {
    m.clear();
    for (const auto& e : s.sizes) {
      cost_model::entry& slot = m.entries_[m.size_++];
      slot.batch = e.batch;
      slot.last_used = e.last_used;
      slot.stats = cost_stats(m.options_);
      load(slot.stats, e.stats);
    }
    m.tick_ = s.tick;
  }

  // --- memory_model ---
  static memory_model_state save(const memory_model& m) {
    memory_model_state s;
    s.tick = m.tick_;
    s.last_run = m.last_run_;
    s.base_hint = m.base_hint_;
    for (std::size_t i = 0; i < m.size_; ++i) {
      const memory_model::entry& e = m.entries_[i];
      memory_model_state::size_entry out{e.size, e.last_used, {}};
      // Oldest first: until the ring is full the peaks start at 0, then at the next slot.
      const std::size_t first = e.count < m.window_ ? 0 : e.next;
      for (std::size_t k = 0; k < e.count; ++k) out.peaks.push_back(e.peaks[(first + k) % m.window_]);
      s.sizes.push_back(std::move(out));
    }
    return s;
  }
  static void load(memory_model& m, const memory_model_state& s) {
    m.clear();
    for (const auto& e : s.sizes) {
      memory_model::entry& slot = m.entries_[m.size_++];
      slot.size = e.size;
      slot.last_used = e.last_used;
      const std::size_t k = std::min(e.peaks.size(), m.window_);
      for (std::size_t i = 0; i < k; ++i) slot.peaks[i] = e.peaks[e.peaks.size() - k + i];
      slot.count = k;
      slot.next = k % m.window_;
    }
    m.tick_ = s.tick;
    m.last_run_ = s.last_run;
    m.base_hint_ = s.base_hint;
  }

  // --- early_stopping ---
  static early_stopping_state save(const early_stopping& e) {
    return early_stopping_state{e.metric_, e.best(), e.best_epoch_, e.wait_, e.updates_, e.last_, e.stopped_, e.verdict_};
  }
  static void load(early_stopping& e, const early_stopping_state& s) {
    e.best_ = s.best.value_or(0);
    e.best_epoch_ = s.best_epoch;
    e.wait_ = s.wait;
    e.updates_ = s.updates;
    e.last_ = s.last;
    e.stopped_ = s.stopped;
    e.verdict_ = s.verdict;
  }

  // --- controller ---
  static controller_state save(const controller& c) {
    controller_state s;
    s.steps = c.steps_;
    s.epochs = c.epochs_;
    s.steps_in_epoch = c.steps_in_epoch_;
    s.samples = c.samples_total_;
    s.samples_in_epoch = c.samples_in_epoch_;
    s.samples_known = c.samples_known_;
    s.learned_steps_per_epoch = c.learned_steps_per_epoch_;
    s.learned_epoch_samples = c.learned_epoch_samples_;
    s.last_checkpoint = c.last_checkpoint_;
    s.epoch_ending = c.epoch_ending_;
    s.batch = batch_state{c.batch_, c.accumulation_, c.steps_since_batch_change_, c.batch_changes_,
                          c.last_batch_, c.previous_batch_, c.memory_probing_};
    // The stop decided: a request or flag not yet decided belongs to this process.
    if (c.stopped()) {
      s.stop.stopped = true;
      s.stop.reason = c.stop_reason_.load(std::memory_order_acquire);
      std::lock_guard<std::mutex> lock(c.stop_mutex_);
      s.stop.message = c.stop_message_;
    }
    for (const controller::tracked& t : c.tracked_) {
      resource_state r;
      r.name = t.name;
      if (std::isfinite(t.limit)) r.limit = t.limit;
      r.last_cost = t.last_cost;
      r.height = t.height;
      r.seen = t.seen;
      r.crossed = t.crossed;
      r.next_threshold = t.next_threshold;
      r.exhausted_fired = t.exhausted_fired;
      r.overrun = t.overrun;
      r.step = save(t.step);
      r.memory = save(t.memory);
      r.epoch_end = save(t.epoch_end);
      r.end_in_step_rate = save(t.end_in_step_rate);
      s.resources.push_back(std::move(r));
    }
    for (const controller::sized_stage& st : c.stages_) {
      sized_stage_state out{st.name, st.last, st.chunks, {}};
      for (const auto& [level, m] : st.models) out.models.emplace_back(level, save(m));
      s.stages.push_back(std::move(out));
    }
    for (std::size_t r = 0; r < c.prune_state_.size(); ++r)
      s.prune_rules.push_back(save(c, c.prune_state_[r], c.options_.prune_rules_[r].name(), 0));
    for (std::size_t r = 0; r < c.quantize_state_.size(); ++r)
      s.quantize_rules.push_back(save(c, c.quantize_state_[r], c.options_.quantize_rules_[r].name(), c.quantize_bits_[r]));
    for (const early_stopping& e : c.options_.early_stopping_) s.early_stopping.push_back(save(e));
    s.history = c.history_;
    return s;
  }

  // Whether a controller has done nothing yet that a restore would overwrite.
  static void check_fresh(const controller& c, const budget& b) {
    if (&c.watched() != &b)
      throw std::invalid_argument("frugal::restore: the controller watches budget '" + c.watched().path() +
                                  "', not '" + b.path() + "'");
    if (c.in_checkpoint_) throw std::logic_error("frugal::restore: called from inside a checkpoint");
    if (c.steps_ != 0 || c.epochs_ != 0 || !c.history_.metrics.empty() || c.open_chunk_ || !c.stages_.empty())
      throw std::logic_error("frugal::restore: the controller has already run (" + std::to_string(c.steps_) +
                             " steps, " + std::to_string(c.epochs_) +
                             " epochs): restore into a new one, before its first step");
  }

  // Into a controller check_fresh() passed; the budget already carries the usage. The new
  // options and limits rule: resources, rules and stoppers are matched by name, and what the new
  // configuration lacks is left out.
  static void load(controller& c, const controller_state& s) {
    c.steps_ = s.steps;
    c.epochs_ = s.epochs;
    c.steps_in_epoch_ = s.steps_in_epoch;
    c.samples_total_ = s.samples;
    c.samples_in_epoch_ = s.samples_in_epoch;
    c.samples_known_ = s.samples_known;
    c.learned_steps_per_epoch_ = s.learned_steps_per_epoch;
    c.learned_epoch_samples_ = s.learned_epoch_samples;
    c.last_checkpoint_ = s.last_checkpoint;
    c.epoch_ending_ = s.epoch_ending;
    c.last_batch_ = s.batch.last;
    c.previous_batch_ = s.batch.previous;
    c.history_ = s.history;
    if (c.manages_batch() && s.batch.size > 0) {
      // Within this process's batch limits; the accumulation follows its effective batch.
      c.batch_ = std::clamp(s.batch.size, c.options_.batch_min_, c.options_.batch_max_);
      c.accumulation_ = c.accumulation_for(c.batch_);
      c.steps_since_batch_change_ = s.batch.steps_since_change;
      c.batch_changes_ = s.batch.changes;
      c.memory_probing_ = s.batch.probing_memory;
    }

    for (controller::tracked& t : c.tracked_) {
      const resource_state* r = nullptr;
      for (const resource_state& saved : s.resources)
        if (saved.name == t.name) r = &saved;
      if (!r) continue;
      t.last_cost = r->last_cost;
      t.height = r->height;
      t.seen = r->seen;
      t.overrun = r->overrun;
      load(t.step, r->step);
      load(t.memory, r->memory);
      load(t.epoch_end, r->epoch_end);
      load(t.end_in_step_rate, r->end_in_step_rate);
      // Events about a limit carry over only under the same limit (as reload_limits()).
      if (r->limit.value_or(budget::unlimited) == t.limit) {
        t.next_threshold = std::min(r->next_threshold, t.thresholds.size());
        t.exhausted_fired = r->exhausted_fired;
        t.crossed = r->crossed;
      }
    }

    c.stages_.clear();
    for (const sized_stage_state& st : s.stages) {
      controller::sized_stage out{st.name, {}, st.last, st.chunks};
      for (const auto& [level, m] : st.models) load(out.model_for(level), m);
      c.stages_.push_back(std::move(out));
    }

    std::vector<bool> used(s.prune_rules.size(), false);
    for (std::size_t r = 0; r < c.prune_state_.size(); ++r)
      if (const auto* saved = match(s.prune_rules, used, c.options_.prune_rules_[r].name()))
        load(c, c.prune_state_[r], *saved);
    used.assign(s.quantize_rules.size(), false);
    for (std::size_t r = 0; r < c.quantize_state_.size(); ++r)
      if (const auto* saved = match(s.quantize_rules, used, c.options_.quantize_rules_[r].name())) {
        load(c, c.quantize_state_[r], *saved);
        c.quantize_bits_[r] = saved->bits;
      }
    std::vector<bool> es_used(s.early_stopping.size(), false);
    for (early_stopping& e : c.options_.early_stopping_)
      for (std::size_t i = 0; i < s.early_stopping.size(); ++i)
        if (!es_used[i] && s.early_stopping[i].metric == e.metric()) {
          es_used[i] = true;
          load(e, s.early_stopping[i]);
          break;
        }

    // The figures now: the budget carries the earlier usage.
    c.read_now();
    for (auto& t : c.tracked_) t.used = t.level ? std::max(t.now, t.seen) : t.now;
    c.update_fraction();

    // The stop. The run's own verdicts (early stopping, divergence, a non-finite value) hold.
    // A stop the budget caused holds unless this process's limits fit the next step again (as
    // reload_limits() judges). A stop from outside -- a signal, a deadline, a request: why the
    // process ended, which is why it is resumed -- does not: the run goes on. The history says which.
    c.stopped_.store(false, std::memory_order_release);
    c.stop_reason_.store(frugal::stop_reason::none, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(c.stop_mutex_);
      c.stop_message_.clear();
    }
    if (s.stop.stopped) {
      const frugal::stop_reason why = s.stop.reason;
      std::string lifted;
      switch (why) {
        case frugal::stop_reason::early_stopping:
        case frugal::stop_reason::diverged:
        case frugal::stop_reason::non_finite: c.set_stopped(why, s.stop.message); break;
        case frugal::stop_reason::budget_exhausted:
        case frugal::stop_reason::forecast:
          if (c.fits_again())
            lifted = "stop lifted on resume: the limits are now " + c.run_->limits().to_string() + " (was: " + s.stop.message + ")";
          else
            c.set_stopped(why, s.stop.message);
          break;
        default:
          lifted = "stop lifted on resume: the earlier process stopped from outside the run (was: " + s.stop.message + ")";
          break;
      }
      if (!lifted.empty())
        c.history_.add(decision_record{c.steps_, c.epochs_, "resume", "stop_lifted", frugal::stop_reason::none, lifted});
    }
    c.stop_if_spent("resume");
    c.end_window();
  }

 private:
  static compression_rule_state save(const controller& c, const controller::rule_state& st, const std::string& rule, int bits) {
    compression_rule_state s;
    s.rule = rule;
    if (st.fired != controller::no_step) s.fired = st.fired;
    s.disabled = st.disabled;
    s.measuring = st.measuring;
    s.measure_until = st.measure_until;
    s.record = st.record;
    for (std::size_t k = 0; k < st.resources.size(); ++k) {
      s.resources.push_back(st.resources[k] < c.tracked_.size() ? c.tracked_[st.resources[k]].name : std::string("?"));
      s.per_sample.push_back(k < st.per_sample.size() ? st.per_sample[k] : std::vector<double>{});
    }
    s.bits = bits;
    return s;
  }

  static const compression_rule_state* match(const std::vector<compression_rule_state>& saved, std::vector<bool>& used,
                                             const std::string& rule) {
    for (std::size_t i = 0; i < saved.size(); ++i)
      if (!used[i] && saved[i].rule == rule) {
        used[i] = true;
        return &saved[i];
      }
    return nullptr;
  }

  static void load(const controller& c, controller::rule_state& st, const compression_rule_state& s) {
    st.fired = s.fired.value_or(controller::no_step);
    st.disabled = s.disabled;
    st.measuring = s.measuring;
    st.measure_until = s.measure_until;
    st.record = s.record;
    st.resources.clear();
    st.per_sample.clear();
    for (std::size_t k = 0; k < s.resources.size(); ++k)
      for (std::size_t i = 0; i < c.tracked_.size(); ++i)
        if (c.tracked_[i].name == s.resources[k]) {
          st.resources.push_back(i);
          st.per_sample.push_back(s.per_sample[k]);
          break;
        }
  }
};

inline budget_state capture_budget(const budget& b) {
  budget_state s;
  s.name = b.name();
  s.limits = b.limits();
  s.used = b.snapshot();
  s.stages = b.stages();
  for (const budget* child : b.children()) s.children.push_back(capture_budget(*child));
  return s;
}

inline carried_usage to_carried(const budget_state& s) {
  carried_usage c{s.name, s.used, s.stages, {}};
  for (const budget_state& child : s.children) c.children.push_back(to_carried(child));
  return c;
}

}  // namespace detail

/// Refuses a state no run could have left (a state_error naming the field); restore() calls it.
inline void check(const run_state& s) { detail::state_checker({}).check(s); }

/// The state of a run now: the budget tree (usage, stages, limits as recorded) and the controller
/// watching it, stamped with the wall-clock time. Take it at a checkpoint -- after end_epoch or
/// the stop, with no step's scope open -- so that it describes whole steps.
[[nodiscard]] inline run_state capture(const budget& run, const controller& ctl) {
  if (&ctl.watched() != &run)
    throw std::invalid_argument("frugal::capture: the controller watches budget '" + ctl.watched().path() + "', not '" +
                                run.path() + "'");
  run_state s;
  s.saved_at = std::chrono::system_clock::now();
  s.downtime = run.downtime();
  s.budget = detail::capture_budget(run);
  s.controller = detail::state_access::save(ctl);
  return s;
}

/// Continues a run in a new process: `run` carries the saved usage (budget::carry: every reading
/// continues from it), `ctl` (made on `run` in this process, with its options) takes the saved
/// counters, models, rules, early stopping and stop. Call it after making both, before the first
/// step and before any scope on `run` opens.
///
///   - Limits are this process's: the document records the earlier ones, and a resume under
///     different limits is allowed (the thresholds' events then start over).
///   - The time between the processes -- now minus saved_at on the system clock, 0 if the clock
///     went back -- is not charged: it adds to budget::downtime().
///   - The saved stop: see state_access::load (the run's own verdicts hold, a budget's stop is
///     judged again under the limits now, a stop from outside -- a signal -- is lifted).
///
/// Throws before changing anything: state_error for a state check() refuses, std::invalid_argument
/// when `ctl` does not watch `run` or the root's name differs from the state's, std::logic_error
/// when `run` already ran or was restored, or `ctl` already ran.
inline void restore(budget& run, controller& ctl, const run_state& s) {
  check(s);
  if (s.budget.name != run.name())
    throw std::invalid_argument("frugal::restore: the state is of budget '" + s.budget.name + "', not '" + run.name() + "'");
  detail::state_access::check_fresh(ctl, run);
  if (run.resumed()) throw std::logic_error("frugal::restore: budget '" + run.path() + "' was already restored");
  const auto gap = std::chrono::duration<double>(std::chrono::system_clock::now() - s.saved_at);
  const std::chrono::duration<double> downtime = s.downtime + std::max(gap, std::chrono::duration<double>::zero());
  run.carry(detail::to_carried(s.budget), downtime);  // its own checks: nothing has changed if it throws
  detail::state_access::load(ctl, s.controller);
}

}  // namespace frugal
