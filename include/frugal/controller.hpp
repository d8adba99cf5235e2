/// @file
/// The controller: watches one budget at the training loop's checkpoints, forecasts every limited
/// resource, and decides -- before a limit is crossed -- to shrink the batch, end the epoch, stop,
/// prune or quantize; callbacks see every event and may veto or amend each decision.
#pragma once

#include <frugal/allocation.hpp>
#include <frugal/budget.hpp>
#include <frugal/controller_history.hpp>
#include <frugal/controller_options.hpp>
#include <frugal/decision.hpp>
#include <frugal/early_stopping.hpp>
#include <frugal/events.hpp>
#include <frugal/forecast.hpp>
#include <frugal/memory_model.hpp>
#include <frugal/report.hpp>
#include <frugal/units.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace frugal {
namespace detail {
struct state_access;  // state.hpp: saves and restores the state of a run
}  // namespace detail

/// Watches one budget. Call end_step after every step and end_epoch after every epoch, from the
/// training loop's thread; should_stop() and request_stop() may be called from any thread.
///
/// Consumables and levels. Wall, cpu, flops, allocations, alloc_bytes and user units are spent:
/// the controller stops before the next step (or epoch end) would cross their limits, and
/// fraction_used() follows them alone. peak_bytes is a level, how high the heap stands: a step
/// over its limit is a crossing (level_crossed_event), answered by the batch-size knob, and the
/// run stops only when even the smallest batch is forecast over it.
///
/// The stop rule and its bound. After each step the controller forecasts the next step's cost
/// of every limited resource as H = the largest cost of the last `window` steps at that batch
/// size, leaving out a single value more than twice every other one once later steps have not
/// repeated it (forecast.hpp: a warm-up step, a one-off stall), and stops when
/// used + H * (1 + h) > limit, h the resource's headroom: the user's margin() if given, else
/// the measured spread of its costs (largest / median - 1) while the history is shorter than
/// the window (always for epoch ends), 0 once the window is full (H is then a high quantile).
/// So a step starts only when its forecast fits, and the only ways past a limit are a step
/// costing more than its forecast -- the overshoot is then less than that one step -- or a
/// callback vetoing the stop. Costs that do not vary (FLOPs, samples) are met exactly, and
/// 1 s steps under a 30 s limit stop after step 30 (29 when the rounding of seconds puts 29 + 1
/// a hair above 30), never 31. The price is the budget's tail: less than H * (1 + h) of it is
/// left unused. An epoch's end-of-epoch work is forecast the same way (end_epoch_if_needed), with
/// the run's end work on top (controller_options::run_end_work).
///
/// Stops. A stop is decided once (stop_event fires once; later checkpoints repeat it with
/// decision::repeats_stop()); it holds until the run ends unless a callback vetoes it at the
/// checkpoint, or -- for a stop the budget caused -- reload_limits() finds that the new limits
/// fit the next step again. request_stop() holds whatever any hook does. A budget already spent
/// when the controller is made (a zero limit, a wall limit used up by an earlier phase) stops
/// the run before its first step.
class controller {
 public:
  /// Watches `run` (which must outlive it) under `options`; throws std::invalid_argument for
  /// inconsistent options (a batch size outside batch_limits, ...). Stops at once when the budget
  /// is already spent.
  explicit controller(budget& run, controller_options options = {})
      : run_(&run), options_(std::move(options)) {
    validate();
    batch_ = options_.batch_size_;
    if (batch_ > 0) {
      if (options_.batch_max_ == 0) options_.batch_max_ = std::max(batch_, options_.batch_min_);
      if (options_.batch_min_ == 0) options_.batch_min_ = 1;
      if (options_.effective_batch_ == 0 && options_.accumulate_) options_.effective_batch_ = batch_;
      if (batch_ < options_.batch_min_ || batch_ > options_.batch_max_)
        fail("batch_size", "within batch_limits [" + std::to_string(options_.batch_min_) + ", " +
                               std::to_string(options_.batch_max_) + "]",
             std::to_string(batch_));
      accumulation_ = accumulation_for(batch_);
    }
    for (const auto& r : options_.quantize_rules_) quantize_bits_.push_back(r.from_bits_);
    prune_state_ = std::vector<rule_state>(options_.prune_rules_.size());
    quantize_state_ = std::vector<rule_state>(options_.quantize_rules_.size());
    build_tracked();
    rss_readable_ = detail::read_resident_set().has_value();
    read_now();
    for (auto& t : tracked_) t.used = t.now;
    update_fraction();
    stop_if_spent("start");
    stop_if_level_over("start");
    start_memory_probe();
    end_window();
  }

  controller(const controller&) = delete;
  controller& operator=(const controller&) = delete;

  // --- checkpoints ---

  /// The checkpoint after every step: records the step's costs (and loss, samples, heap), forecasts
  /// the next step and returns what to do (continue, stop, a new batch size, ...). Call from the
  /// training loop's thread.
  [[nodiscard]] decision end_step(const step& s = {}) {
    const reentry guard(this, "end_step");
    const std::size_t batch = s.samples() ? *s.samples() : batch_;
    epoch_end_open_ = false;
    read_now();
    ++steps_;
    ++steps_in_epoch_;
    ++steps_since_batch_change_;
    samples_total_ += batch;
    samples_in_epoch_ += batch;
    if (batch == 0) samples_known_ = false;
    for (auto& t : tracked_) {
      if (!t.level) {
        t.last_cost = t.now - t.used;
        t.step.add(batch, t.last_cost);
      } else {
        // The level the step reached (reported, or measured between checkpoints), into the
        // memory model at this batch size; else the budget's (the highest since it was made).
        const double budget_level = t.now;
        const std::optional<double> height = level_of_step(t, s);
        if (height) {
          t.memory.add(batch, *height, level_at_window_start(t, s));
          t.seen = std::max(t.seen, *height);
        }
        t.now = std::max(t.now, t.seen);
        t.height = height ? *height : budget_level;
      }
    }
    measure_effects(batch);
    for (auto& t : tracked_) t.used = t.now;
    update_fraction();
    callbacks_.notify(event_kind::step_end, step_end_event{steps_, epochs_, s, batch}, steps_);
    fire_thresholds();
    decision d = decide_step(s, batch);
    // The step is over whether or not its decision is taken (an agreement may throw, see
    // agree_with): its bookkeeping completes either way.
    const auto finish = [&] {
      previous_batch_ = batch;
      end_window();
    };
    try {
      commit(d, checkpoint::step);
    } catch (...) {
      finish();
      throw;
    }
    finish();
    return d;
  }

  /// Throws std::invalid_argument, before anything changes, when the first epoch does not report
  /// a metric that early stopping watches (a misspelt name would otherwise never be checked).
  [[nodiscard]] decision end_epoch(const epoch& e = {}) {
    const reentry guard(this, "end_epoch");
    if (epochs_ == 0) check_watched_metrics(e);
    read_now();
    for (auto& t : tracked_) {
      if (!t.level) {
        const double cost = t.now - t.used;
        t.epoch_end.add(cost);
        // A time also in units of the steps' current cost per sample: an evaluation takes
        // longer when the machine is busier, and the steps measure how busy it is -- once
        // their rate has settled (a full window at this batch): the first few steps of a run
        // (page faults, threads starting, a memory probe's sizes) are slower than the machine
        // is, and would make every later evaluation look cheap.
        const double rate = step_rate(t, next_batch());
        const cost_stats* steps = t.step.at(next_batch());
        t.end_rate = 0;
        if (is_time(t) && rate > 0 && steps && steps->count() >= steps->window()) {
          t.end_in_step_rate.add(cost / rate);
          t.end_rate = rate;
        }
      } else {
        t.now = std::max(t.now, t.seen);
      }
      t.used = t.now;
    }
    update_fraction();
    const bool ended_early = epoch_ending_;
    if (!ended_early && steps_in_epoch_ > 0) {
      learned_steps_per_epoch_ = steps_in_epoch_;
      if (samples_known_) learned_epoch_samples_ = samples_in_epoch_;
    }
    if (!e.metrics().empty()) history_.metrics.push_back(metric_record{epochs_, e.metrics()});
    callbacks_.notify(event_kind::epoch_end, epoch_end_event{epochs_, steps_in_epoch_, e, ended_early}, steps_);
    fire_thresholds();
    decision d = decide_epoch(e);
    // Likewise: the epoch is over, and counted, whether or not its decision is taken.
    const auto finish = [&] {
      ++epochs_;
      steps_in_epoch_ = 0;
      samples_in_epoch_ = 0;
      samples_known_ = true;
      epoch_ending_ = false;
      epoch_end_open_ = true;
      end_window();
    };
    try {
      commit(d, checkpoint::epoch);
    } catch (...) {
      finish();
      throw;
    }
    finish();
    return d;
  }

  /// Work after end_epoch() that belongs to the epoch's end -- saving a checkpoint, writing logs --
  /// is charged to it: what the run used since end_epoch() is added to that epoch end's measured
  /// cost, so later forecasts of an epoch's end (the room kept for the final evaluation) include
  /// it, and the next step's cost does not (a 20 ms save would otherwise be the largest recent
  /// step, and the forecast of every step for a window). Call it after that work, before the
  /// next step; end_run() may come between. Elsewhere it throws std::logic_error.
  void charge_to_epoch_end() {
    const reentry guard(this, "charge_to_epoch_end");
    if (!epoch_end_open_)
      throw std::logic_error(
          "frugal::controller::charge_to_epoch_end: no epoch has ended since the last step "
          "(call it after end_epoch(), before the next end_step())");
    read_now();
    for (auto& t : tracked_) {
      if (!t.level) {
        const double extra = t.now - t.used;
        t.epoch_end.add_to_last(extra);
        if (t.end_rate > 0) t.end_in_step_rate.add_to_last(extra / t.end_rate);
      } else {
        t.now = std::max(t.now, t.seen);
      }
      t.used = t.now;
    }
    update_fraction();
    end_window();
  }

  /// After the loop, from its thread: a stop that came between checkpoints (a request from
  /// another thread, a cancellation) becomes the run's stop here, so stop_event still fires once
  /// and the history has it. Nothing happens when the run already stopped at a checkpoint, or
  /// did not stop (it ran its planned work). Returns why the run stopped (none if it did not).
  frugal::stop_reason end_run() {
    const reentry guard(this, "end_run");
    if (stopped() || !should_stop()) return stop_reason();
    const frugal::stop_reason why = stop_reason();
    const std::string message = stop_message();
    set_stopped(why, message);
    history_.add(decision_record{steps_, epochs_, "end", "stop", why, message});
    callbacks_.notify(event_kind::stopped, stop_event{steps_, epochs_, last_checkpoint_, why, message}, steps_);
    return why;
  }

  // --- the loop condition and the final report ---

  /// Whether the loop should end: a stop was decided, requested or a watched flag is set. Any
  /// thread.
  [[nodiscard]] bool should_stop() const noexcept {
    return stopped() || stop_requested_.load(std::memory_order_acquire) || (!flags_.empty() && (cancel_flag_set() || flag_set(false)));
  }
  /// Why the run stopped or is stopping; stop_reason::none while running.
  [[nodiscard]] frugal::stop_reason stop_reason() const noexcept {
    if (stopped()) return stop_reason_.load(std::memory_order_acquire);
    if (cancel_flag_set()) return cancel_reason();
    return requested_reason();
  }
  /// The stop's reason in words ("" while running).
  [[nodiscard]] std::string stop_message() const {
    if (cancel_flag_set() && !stopped()) return cancel_message();
    std::lock_guard<std::mutex> lock(stop_mutex_);
    if (stopped()) return stop_message_;
    return requested_message_locked();
  }

  /// Stops the run, from any thread or hook: should_stop() at once, and the next checkpoint
  /// decides stop (user). A request holds until the run ends: no later checkpoint clears it and
  /// no callback can veto it. Repeated requests keep the first message.
  void request_stop(std::string message) { request_stop(std::move(message), frugal::stop_reason::user); }
  /// The same with its cause: another process's stop passed on (<frugal/mpi.hpp>), a signal
  /// seen elsewhere. Throws std::invalid_argument for stop_reason::none.
  void request_stop(std::string message, frugal::stop_reason cause) {
    if (cause == frugal::stop_reason::none) fail("request_stop cause", "a reason other than none", "none");
    std::lock_guard<std::mutex> lock(stop_mutex_);
    if (stop_requested_.load(std::memory_order_relaxed)) return;
    requested_message_ = "stop (" + std::string(frugal::to_string(cause)) +
                         "): " + (message.empty() ? std::string("stop requested") : message);
    requested_cause_ = cause;
    stop_requested_.store(true, std::memory_order_release);
  }

  /// While `flag` is false nothing happens; once it is true, should_stop() is true and every
  /// checkpoint decides `cancelled` (with `why`). The deadline watchdog's stop_flag() is one.
  /// Several flags may be bound; binding a flag again replaces its reason and words. `describe`
  /// (optional) says what set the flag, for the decision's reason and stop_message(). The flag
  /// must outlive the controller.
  controller& cancel_on(const std::atomic<bool>& flag, frugal::stop_reason why = frugal::stop_reason::deadline,
                        std::function<std::string()> describe = {}) {
    return watch_flag(flag, why, std::move(describe), true, "cancel_on");
  }

  /// The same for a flag that asks for a stop rather than cancelling work in flight: once it is
  /// true, should_stop() is true and the next checkpoint decides stop (with `why`), which no
  /// callback can veto -- a request_stop() that a signal handler can make (setting a lock-free
  /// atomic is async-signal-safe; see <frugal/signals.hpp>).
  controller& stop_on(const std::atomic<bool>& flag, frugal::stop_reason why, std::function<std::string()> describe = {}) {
    return watch_flag(flag, why, std::move(describe), false, "stop_on");
  }

  // --- decisions shared with other processes (<frugal/mpi.hpp>) ---

  /// Gives `agree` the last word on every checkpoint's decision, for processes that must take
  /// the same one (an MPI job's ranks: a rank that stops alone leaves the others waiting in the
  /// next collective). At each end_step and end_epoch, after the rules, the callbacks and any
  /// stop request have had their say, `agree` receives the decision as a vote (with the
  /// checkpoint) and leaves in it the one to take; the controller then takes that one -- its
  /// stop, epoch end, batch size, prune and quantize, the rules' actions included -- as if it
  /// had decided it: the history, stop_event and the loop see it. A stop takes only an epoch's
  /// end with it (no prune, quantize or batch change); shrink or grow follow the batch size
  /// agreed. The agreement may drop this process's stop -- a request_stop() or stop flag then
  /// stays pending (should_stop() is true) and is voted again at the next checkpoint: how an MPI
  /// job's ranks wait for their next exchange. If `agree` throws, or leaves a vote the
  /// controller cannot take -- a batch size outside its limits, a rule index it does not have, a
  /// fraction or bit width out of range, a stop without a cause: std::invalid_argument naming
  /// the field -- the checkpoint throws with no decision taken (no stop, batch change, rule
  /// action or history record); the checkpoint itself stays counted (the step and its costs,
  /// the epoch and its metrics, as early stopping saw them). Empty: decisions are this
  /// process's alone again.
  controller& agree_with(std::function<void(decision_vote&, checkpoint)> agree) {
    agreement_ = std::move(agree);
    return *this;
  }
  /// Decisions made at a checkpoint hold for the next `steps` steps (an agreement that runs
  /// every `steps` steps, <frugal/mpi.hpp>): a step's stop rule then forecasts that many steps
  /// -- the largest recent cost for the first, the mean for the rest -- and an epoch ends early
  /// when they and its end would not fit. 1 (the default): the next step alone. Throws
  /// std::invalid_argument for 0.
  void set_decision_horizon(std::size_t steps) {
    if (steps == 0) fail("decision_horizon", "at least 1 step", "0");
    horizon_ = steps;
  }
  /// The steps a decision holds for (set_decision_horizon).
  [[nodiscard]] std::size_t decision_horizon() const noexcept { return horizon_; }

  // --- the batch-size knob (0 when the controller does not manage it) ---

  /// The batch size the next step should use (samples per step); 0 without the batch knob.
  [[nodiscard]] std::size_t batch_size() const noexcept { return batch_; }
  /// Steps whose gradients are accumulated per update, keeping effective_batch() samples per
  /// update.
  [[nodiscard]] std::size_t accumulation_steps() const noexcept { return accumulation_; }
  /// Samples per update: batch_size() * accumulation_steps().
  [[nodiscard]] std::size_t effective_batch() const noexcept { return batch_ * accumulation_; }
  /// The smallest batch the knob may choose (batch_limits).
  [[nodiscard]] std::size_t min_batch_size() const noexcept { return options_.batch_min_; }
  /// The largest batch the knob may choose (batch_limits).
  [[nodiscard]] std::size_t max_batch_size() const noexcept { return options_.batch_max_; }
  /// Whether the controller manages the batch size (options gave one).
  [[nodiscard]] bool manages_batch() const noexcept { return batch_ > 0; }

  // --- callbacks ---

  /// Registers a callback: a struct (or lambda) whose operator() overloads are its hooks, one per
  /// event type it wants (see frugal::is_callback_v). Callbacks run in registration order. A hook
  /// may add or remove callbacks (itself included): see callback_list for when that takes effect.
  template <class F>
  controller& add_callback(std::string name, F&& f) {
    callbacks_.add(std::move(name), std::forward<F>(f));
    return *this;
  }
  /// Removes the callback added under `name`; returns whether there was one.
  bool remove_callback(std::string_view name) { return callbacks_.remove(name); }
  /// Callbacks (and rule actions, batch rules) that threw, with their names; the first 256.
  [[nodiscard]] const std::vector<callback_error>& callback_errors() const noexcept { return callbacks_.errors(); }
  /// How many callbacks threw in all, including those past the first 256 that callback_errors()
  /// keeps.
  [[nodiscard]] std::uint64_t callback_error_count() const noexcept { return callbacks_.error_count(); }

  // --- memory: probing, and stages sized by the same model ---

  ///@{
  /// Measures what a step's batch adds to the peak heap before the first step, without training:
  /// `probe(n)` must do the work of a step of n samples that decides its memory (forward and
  /// backward) and leave the model unchanged (no update). It runs at the smallest batch, then at
  /// the largest size the measurements so far allow (memory_model.hpp: a bound until two sizes
  /// 2x apart give a line), until the size chosen has itself been measured within the limits --
  /// a line through small sizes can miss what larger ones allocate (a library's scratch that
  /// grows with the size up to a cap) -- at most max_probes runs. The first step starts at that
  /// size. When even the smallest batch peaks over a level's limit, the run stops (forecast)
  /// before its first step. The probe's costs (time, FLOPs) are charged to the budget as any
  /// work is, but to no step's forecast. Does nothing without the batch knob, a limited level the
  /// controller measures (peak_bytes with the allocation hooks, rss_bytes with /proc), or once
  /// steps have run. Returns the batch size.
  static constexpr int max_probes = 6;
  std::size_t probe_memory(const std::function<void(std::size_t)>& probe) {
    const reentry guard(this, "probe_memory");
    if (!probe) fail("probe_memory", "a callable", "an empty function");
    if (!manages_batch() || !measures_a_limited_level() || stopped() || steps_ > 0) return batch_;
    memory_probing_ = false;  // the probe below replaces the first steps' probe
    std::size_t n = options_.batch_min_;
    std::size_t fits = 0;  // the largest size measured within every limit
    std::string words, models;
    for (int round = 0; round < max_probes; ++round) {
      const heap_watch watch;
      const std::vector<double> starts = level_starts();
      probe(n);
      bool recorded = true;
      for (std::size_t i = 0; i < tracked_.size(); ++i) {
        tracked& t = tracked_[i];
        const auto [start, peak] = stretch_of(t, watch, starts[i]);
        if (peak < 0) continue;
        recorded = t.memory.add(n, peak, start) && recorded;
        t.seen = std::max(t.seen, peak);
        t.height = peak;
        words += (words.empty() ? "batch " : ", batch ") + std::to_string(n) + ": " + t.name + " " + format(t, peak);
      }
      if (!recorded) continue;  // smaller than the probe before: it may have held that one's buffers
      std::string why;
      update_resolution();
      const memory_limits mem = memory_caps(n, why, true);
      models = mem.words;
      if (mem.cap >= n) fits = std::max(fits, n);
      if (mem.cap == 0 && n == options_.batch_min_) {
        const std::string message = "stop (forecast): memory probe: " + words + ": " + mem.words +
                                    ": not even the smallest batch fits; no step ran";
        set_stopped(frugal::stop_reason::forecast, message);
        history_.add(decision_record{steps_, epochs_, "probe", "stop", frugal::stop_reason::forecast, message});
        callbacks_.notify(event_kind::stopped,
                          stop_event{steps_, epochs_, last_checkpoint_, frugal::stop_reason::forecast, message}, steps_);
        break;
      }
      const std::size_t next = std::max(options_.batch_min_, round_to_effective_divisor(mem.cap));
      if (next == n) break;  // measured, and within every limit
      n = next;
    }
    if (!stopped()) set_batch(std::max(fits, options_.batch_min_), "memory probe: " + words + "; " + models);
    // The probe was no step: the first step's costs start here.
    read_now();
    for (auto& t : tracked_) t.used = t.level ? std::max(t.now, t.seen) : t.now;
    update_fraction();
    end_window();
    return batch_;
  }
  ///@}

  /// Sizes a stage other than the step whose peak heap grows with a size the loop picks -- an
  /// evaluation's chunk of images -- by the same memory model as the batch, fitted to that
  /// stage's own chunks: chunk_size() gives the next chunk's size in [min, max] and starts
  /// measuring it; end_chunk() ends the measurement. The first chunk runs at `min`, the second
  /// at the bound the first gives, later ones at the largest size the line fits under every
  /// limited level. Without such a level (or without the hooks) it is `max` and nothing is
  /// measured. One chunk at a time; the stage's name is the loop's (e.g. "evaluation").
  [[nodiscard]] std::size_t chunk_size(std::string_view stage, std::size_t max, std::size_t min = 1) {
    if (stage.empty()) fail("chunk_size stage", "a name", "\"\"");
    if (min == 0) fail("chunk_size min", "> 0", "0");
    if (max < min) fail("chunk_size max", ">= min (" + std::to_string(min) + ")", std::to_string(max));
    if (open_chunk_)
      throw std::logic_error("frugal::controller::chunk_size: the chunk of stage '" + stages_[*open_chunk_].name +
                             "' was not ended (end_chunk)");
    std::size_t index = stages_.size();
    for (std::size_t i = 0; i < stages_.size(); ++i)
      if (stages_[i].name == stage) index = i;
    if (index == stages_.size()) stages_.push_back(sized_stage{std::string(stage), {}, 0, 0});
    sized_stage& st = stages_[index];
    std::size_t n = max;
    bool measured = false;
    for (const auto& t : tracked_) {
      if (!t.level || !std::isfinite(t.limit) || !measures_level(t)) continue;
      measured = true;
      const memory_model* m = st.model(t.name);
      if (!m || m->empty()) {
        n = min;
        continue;
      }
      update_resolution();
      const std::size_t fits = size_within(*m, t.limit - level_resolution(t), options_.margin_.value_or(m->spread()),
                                           st.last, min, max);
      n = std::min(n, std::max(fits, min));
    }
    st.last = n;
    ++st.chunks;
    if (!measured) return n;
    open_chunk_ = index;
    chunk_starts_ = level_starts();
    chunk_watch_.reset();
    return n;
  }
  /// Ends the chunk chunk_size() started: `size` is the chunk's real size (a last chunk may be
  /// smaller than the size given).
  void end_chunk(std::string_view stage, std::size_t size) {
    if (!open_chunk_) return;  // nothing measured (no limited level): nothing to record
    sized_stage& st = stages_[*open_chunk_];
    if (st.name != stage)
      throw std::logic_error("frugal::controller::end_chunk: the open chunk is of stage '" + st.name + "', not '" +
                             std::string(stage) + "'");
    open_chunk_.reset();
    if (size == 0) return;
    for (std::size_t i = 0; i < tracked_.size() && i < chunk_starts_.size(); ++i) {
      const tracked& t = tracked_[i];
      if (!std::isfinite(t.limit)) continue;
      const auto [start, peak] = stretch_of(t, chunk_watch_, chunk_starts_[i]);
      if (peak >= 0) st.model_for(t.name).add(size, peak, start);
    }
  }

  /// A level's memory model of the step (peak_bytes: the heap's level at each batch size); null
  /// for a resource that is not a tracked level.
  [[nodiscard]] const frugal::memory_model* level_model(std::string_view level) const {
    const tracked* t = find(level);
    return t && t->level ? &t->memory : nullptr;
  }
  /// A sized stage's memory model of a level (null before its first measured chunk).
  [[nodiscard]] const frugal::memory_model* stage_model(std::string_view stage, std::string_view level) const {
    for (const auto& st : stages_)
      if (st.name == stage) return st.model(level);
    return nullptr;
  }
  /// Whether the first steps are still probing memory (start_memory_probe).
  [[nodiscard]] bool probing_memory() const noexcept { return memory_probing_; }
  /// The stages chunk_size() has sized, in the order first seen, with the size it gave last.
  [[nodiscard]] std::vector<std::pair<std::string, std::size_t>> sized_stages() const {
    std::vector<std::pair<std::string, std::size_t>> out;
    for (const auto& st : stages_) out.emplace_back(st.name, st.last);
    return out;
  }
  /// What a level forecast adds for the measurement's resolution (peak_bytes: threads x
  /// FRUGAL_HEAP_FOLD_BYTES at the last checkpoint; 0 for others or without a limit).
  [[nodiscard]] double level_resolution(std::string_view level) const {
    const tracked* t = find(level);
    return t && t->level ? level_resolution(*t) : 0;
  }

  // --- forecasts and state ---

  ///@{
  /// The next step's forecast cost (forecast.hpp's high(), headroom not included) of a tracked
  /// resource: the wall, the peak heap and every limited one. At the knob's batch size unless given.
  [[nodiscard]] std::optional<double> forecast_step(resource r) const { return forecast_step(r, next_batch()); }
  [[nodiscard]] std::optional<double> forecast_step(resource r, std::size_t batch) const {
    return forecast_step(frugal::to_string(r), batch);
  }
  [[nodiscard]] std::optional<double> forecast_step(std::string_view name) const {
    return forecast_step(name, next_batch());
  }
  [[nodiscard]] std::optional<double> forecast_step(std::string_view name, std::size_t batch) const {
    const tracked* t = find(name);
    if (!t) return std::nullopt;
    return t->level ? t->memory.peak(batch) : t->step.high(batch);
  }
  ///@}
  /// The peak heap a step at this batch size is expected to reach, from the memory model without
  /// headroom (0 before any step or probe measured one).
  [[nodiscard]] double forecast_peak(std::size_t batch) const { return find("peak_bytes")->memory.peak(batch); }
  /// The forecast cost of the work between an epoch's last step and its end (evaluation).
  [[nodiscard]] std::optional<double> forecast_epoch_end(resource r) const {
    const tracked* t = find(frugal::to_string(r));
    if (!t || t->level) return std::nullopt;
    return end_high(*t, next_batch());
  }
  /// The forecast cost of the work the run does once, at its end (controller_options::
  /// run_end_work epoch ends of forecast_epoch_end); 0 without any.
  [[nodiscard]] std::optional<double> forecast_run_end(resource r) const {
    const tracked* t = find(frugal::to_string(r));
    if (!t || t->level) return std::nullopt;
    return end_high(*t, next_batch()) * options_.run_end_work_;
  }
  ///@{
  /// The headroom the controller adds to a resource's next-step forecast now (see the class
  /// comment): the margin, or the measured spread; nullopt for a resource it does not track.
  [[nodiscard]] std::optional<double> headroom(resource r) const { return headroom(frugal::to_string(r)); }
  [[nodiscard]] std::optional<double> headroom(std::string_view name) const {
    const tracked* t = find(name);
    if (!t) return std::nullopt;
    return t->level ? level_headroom(*t) : step_scale(*t, next_batch()) - 1;
  }
  ///@}
  /// The headroom added to the epoch-end forecast of a cumulative resource.
  [[nodiscard]] std::optional<double> epoch_end_headroom(resource r) const {
    const tracked* t = find(frugal::to_string(r));
    if (!t || t->level) return std::nullopt;
    return end_scale(*t, next_batch()) - 1;
  }
  /// The per-step cost model of a tracked resource (null if not tracked).
  [[nodiscard]] const cost_model* step_model(std::string_view name) const {
    const tracked* t = find(name);
    return t ? &t->step : nullptr;
  }
  /// step_model(name) for a builtin resource.
  [[nodiscard]] const cost_model* step_model(resource r) const { return step_model(frugal::to_string(r)); }
  /// The resources the controller forecasts: the wall, the peak heap and every limited one.
  [[nodiscard]] std::vector<std::string> tracked_resources() const {
    std::vector<std::string> out;
    for (const auto& t : tracked_) out.push_back(t.name);
    return out;
  }
  /// The largest fraction used over the limited consumables, as of the last checkpoint (levels
  /// are heights, not spending: see crossed_levels()).
  [[nodiscard]] double fraction_used() const noexcept { return fraction_used_; }
  /// The limited levels standing above their limit at the last checkpoint.
  [[nodiscard]] std::vector<std::string> crossed_levels() const {
    std::vector<std::string> out;
    for (const auto& t : tracked_)
      if (t.level && t.crossed) out.push_back(t.name);
    return out;
  }
  /// Steps recorded by end_step, over the run.
  [[nodiscard]] std::uint64_t steps() const noexcept { return steps_; }
  /// Epochs recorded by end_epoch.
  [[nodiscard]] std::uint64_t epochs() const noexcept { return epochs_; }
  /// Steps recorded since the last end_epoch.
  [[nodiscard]] std::uint64_t steps_in_epoch() const noexcept { return steps_in_epoch_; }
  /// The early-stopping rules from the options, with their state.
  [[nodiscard]] const std::vector<early_stopping>& early_stoppers() const noexcept { return options_.early_stopping_; }
  /// The budget the controller watches.
  [[nodiscard]] const budget& watched() const noexcept { return *run_; }
  /// The fixed margin, if the options set one (otherwise headroom is measured per resource).
  [[nodiscard]] std::optional<double> margin() const noexcept { return options_.margin_; }
  /// Every decision other than continue, the batch sizes, compression actions and their
  /// measured effects, the metrics: the controller's story, for the report.
  [[nodiscard]] const controller_history& history() const noexcept { return history_; }
  ///@{
  /// Whether a pruning / quantization rule still fires: false once its action was measured not
  /// to lower what it watches.
  [[nodiscard]] bool prune_rule_active(std::size_t index) const { return !prune_state_.at(index).disabled; }
  [[nodiscard]] bool quantize_rule_active(std::size_t index) const { return !quantize_state_.at(index).disabled; }
  ///@}

  /// Re-reads the budget's limits and price (after budget::set_limits or budget::set_price: the
  /// controller reads both when built, and a price on wall or CPU hours makes cost run with
  /// time in its forecasts of epoch ends); cost models of resources still
  /// tracked are kept. A stop the budget caused (exhausted, forecast) is lifted when, under the
  /// new limits, nothing is exhausted and the next step fits (and, after an epoch's end, the next
  /// epoch's first step and end); a budget the new limits find spent stops the run now.
  void reload_limits() {
    check_measurable(run_->limits());
    std::vector<tracked> old = std::move(tracked_);
    build_tracked();
    for (auto& t : tracked_)
      for (auto& o : old)
        if (o.name == t.name) {
          const double limit = t.limit;
          std::vector<double> thresholds = std::move(t.thresholds);
          t = std::move(o);
          if (t.limit != limit) {
            t.next_threshold = 0;
            t.exhausted_fired = false;
            t.crossed = false;
          }
          t.limit = limit;
          t.thresholds = std::move(thresholds);
        }
    read_now();
    for (auto& t : tracked_) t.used = t.level ? std::max(t.now, t.seen) : t.now;
    update_fraction();
    const frugal::stop_reason why = stop_reason_.load(std::memory_order_relaxed);
    if (stopped() && (why == frugal::stop_reason::budget_exhausted || why == frugal::stop_reason::forecast) &&
        requested_reason() == frugal::stop_reason::none && !cancel_flag_set() && fits_again()) {
      stopped_.store(false, std::memory_order_release);
      stop_reason_.store(frugal::stop_reason::none, std::memory_order_release);
      std::string was;
      {
        std::lock_guard<std::mutex> lock(stop_mutex_);
        was = std::move(stop_message_);
        stop_message_.clear();
      }
      history_.add(decision_record{steps_, epochs_, "limits", "stop_lifted", frugal::stop_reason::none,
                                   "stop lifted: the limits are now " + run_->limits().to_string() + " (was: " + was + ")"});
    }
    stop_if_spent("limits");
  }

  /// Steps, epochs, batch, the stop, and per resource: used, limit, the step forecasts.
  void print_summary(std::ostream& out) const {
    out << "controller of budget " << run_->path() << ": " << steps_ << " steps, " << epochs_ << " epochs";
    if (manages_batch())
      out << ", batch " << batch_ << " x " << accumulation_ << " accumulation (" << batch_changes_ << " changes)";
    out << '\n';
    out << "  stop: " << frugal::to_string(stop_reason());
    const std::string msg = stop_message();
    if (!msg.empty()) out << ": " << msg;
    out << '\n';
    std::vector<std::vector<std::string>> rows{
        {"resource", "kind", "used", "limit", "step mean", "step forecast", "headroom", "epoch end"}};
    const std::size_t b = next_batch();
    for (const auto& t : tracked_) {
      if (t.level) {
        if (!std::isfinite(t.limit) && t.memory.empty() && t.used == 0) continue;  // an unmeasured level
        rows.push_back({t.name, "level", format(t, t.used), std::isfinite(t.limit) ? format(t, t.limit) : "-",
                        t.memory.empty() ? "-" : format(t, t.memory.peak(b)),
                        t.memory.empty() ? "-" : format(t, level_forecast(t, b)), detail::percent(level_headroom(t)), "-"});
        continue;
      }
      rows.push_back({t.name, "consumable", format(t, t.used), std::isfinite(t.limit) ? format(t, t.limit) : "-",
                      t.step.empty() ? "-" : format(t, t.step.mean(b)), t.step.empty() ? "-" : format(t, t.step.high(b)),
                      detail::percent(step_scale(t, b) - 1), !t.epoch_end.empty() ? format(t, end_high(t, b)) : "-"});
    }
    for (const auto& t : tracked_)
      if (t.level && !t.memory.empty())
        out << "  " << t.name << " model: base " << format(t, t.memory.base()) << " + " << format(t, t.memory.rise_per_unit())
            << " per sample (" << t.memory.sizes() << (t.memory.sizes() == 1 ? " size" : " sizes") << " measured)\n";
    detail::print_table(out, rows, "  ");
    if (callbacks_.error_count() > 0) out << "  callback errors: " << callbacks_.error_count() << '\n';
  }

 private:
  friend struct detail::state_access;
  static constexpr std::uint64_t no_step = std::numeric_limits<std::uint64_t>::max();

  /// A stage sized by chunk_size(): its memory model per limited level.
  struct sized_stage {
    std::string name;
    std::vector<std::pair<std::string, frugal::memory_model>> models;
    std::size_t last = 0;     ///< the size chunk_size() gave last
    std::uint64_t chunks = 0;
    [[nodiscard]] const frugal::memory_model* model(std::string_view level) const noexcept {
      for (const auto& [n, m] : models)
        if (n == level) return &m;
      return nullptr;
    }
    frugal::memory_model& model_for(const std::string& level) {
      for (auto& [n, m] : models)
        if (n == level) return m;
      models.emplace_back(level, frugal::memory_model{});
      return models.back().second;
    }
  };

  /// One forecast resource: the wall and the peak heap (always) and every limited one.
  struct tracked {
    std::string name;
    std::optional<resource> builtin;  ///< nullopt: a user unit
    double limit = budget::unlimited;
    bool level = false;               ///< peak_bytes: a height under a ceiling, not a sum
    double now = 0;                   ///< read at this checkpoint (a level: the highest seen)
    double used = 0;                  ///< at the last checkpoint
    double last_cost = 0;             ///< the last step's cost (consumables)
    double height = 0;                ///< a level at the last step: its peak, else the highest seen
    double seen = 0;                  ///< a level: the highest the steps reached
    double window_start = 0;          ///< a level read by the controller: its value at the last checkpoint
    bool crossed = false;             ///< a level above its limit at the last checkpoint
    cost_model step;                  ///< consumables: a step's cost over batch sizes
    memory_model memory;              ///< levels: a step's peak over batch sizes
    cost_stats epoch_end;             ///< what the work after an epoch's last step cost
    cost_stats end_in_step_rate;      ///< times: the same over the steps' cost per sample then
    double end_rate = 0;              ///< that rate at the last epoch end (0: not recorded there)
    std::vector<double> thresholds;
    std::size_t next_threshold = 0;
    bool exhausted_fired = false;
    std::array<bool, 3> overrun{};
  };

  /// A pruning or quantization rule's state: when it last fired, and the measurement of that
  /// action's effect, taken over the steps of its cooldown.
  struct rule_state {
    std::uint64_t fired = no_step;
    bool disabled = false;
    bool measuring = false;
    std::uint64_t measure_until = 0;           ///< the step at which the effect is judged
    std::size_t record = 0;                     ///< index in history_.compressions
    std::vector<std::size_t> resources;         ///< indices in tracked_
    std::vector<std::vector<double>> per_sample;  ///< costs per sample after the action
  };

  struct reentry {
    reentry(controller* c, const char* what) : ctl(c) {
      if (ctl->in_checkpoint_)
        throw std::logic_error(std::string("frugal::controller::") + what +
                               ": called from inside a checkpoint (a callback or rule must not call it)");
      ctl->in_checkpoint_ = true;
    }
    ~reentry() { ctl->in_checkpoint_ = false; }
    reentry(const reentry&) = delete;
    reentry& operator=(const reentry&) = delete;
    controller* ctl;
  };

  [[noreturn]] static void fail(const std::string& field, const std::string& rule, const std::string& got) {
    throw std::invalid_argument("frugal::controller: " + field + " must be " + rule + ", got " + got);
  }

  void validate() const {
    const auto& o = options_;
    const bool knob = o.batch_size_ > 0;
    if (!knob) {
      if (o.batch_min_ > 0) fail("batch_limits", "given with batch_size", "no batch_size");
      if (o.effective_batch_ > 0) fail("effective_batch", "given with batch_size", "no batch_size");
      if (o.max_step_time_ > 0) fail("max_step_time", "given with batch_size (it shrinks the batch)", "no batch_size");
      if (o.batch_rule_) fail("batch_rule", "given with batch_size", "no batch_size");
    }
    if (!o.accumulate_ && o.effective_batch_ > 0)
      fail("effective_batch", "left out with gradient_accumulation(false)", std::to_string(o.effective_batch_));
    if ((!o.prune_rules_.empty() || !o.quantize_rules_.empty()) && o.plan_ == controller_options::plan_kind::none)
      fail("prune/quantize rules", "given a plan (planned_epochs, planned_steps or planned_samples)", "no plan");
    const frugal::limits l = run_->limits();
    for (const auto& [name, fractions] : o.thresholds_) {
      (void)fractions;
      if (!l.get(std::string_view(name)))
        fail("thresholds(" + name + ")", "for a resource the budget '" + run_->path() + "' limits", "'" + name + "'");
    }
    auto check_watched = [&](const std::vector<std::string>& watched, const std::string& rule) {
      for (const auto& w : watched) {
        const auto r = resource_from_name(w);
        if (r && is_level(*r)) fail(rule + " watch", "a consumable (not the level " + w + ")", w);
        if (!l.get(std::string_view(w)))
          fail(rule + " watch", "a resource the budget '" + run_->path() + "' limits", "'" + w + "'");
      }
    };
    for (const auto& r : o.prune_rules_) check_watched(r.watched(), r.name());
    for (const auto& r : o.quantize_rules_) check_watched(r.watched(), r.name());
    check_measurable(l);
  }

  /// A limit nothing measures would never bind: a cost without a price, energy without a
  /// readable counter. Refused, naming why, rather than watched as a silent zero.
  void check_measurable(const frugal::limits& l) const {
    if (l.has(resource::cost) && !run_->measures_cost())
      fail("the cost limit of budget '" + run_->path() + "'", "priced (budget::set_price, e.g. instance_hour=3.06USD)",
           "no price");
    if (l.has(resource::energy) && !run_->measures_energy())
      fail("the energy limit of budget '" + run_->path() + "'", "measurable by a RAPL counter",
           "none: " + run_->energy_unavailable());
  }

  void build_tracked() {
    const frugal::limits l = run_->limits();
    tracked_.clear();
    const frugal::price p = run_->price();
    cost_by_time_ = p.instance_hour() > 0 || p.core_hour() > 0;
    for (resource r : all_resources) {
      const auto lim = l.get(r);
      // The wall and the peak heap are cheap to read (no lock): forecast even when unlimited.
      if (!lim && r != resource::wall && r != resource::peak_bytes) continue;
      tracked t = make_tracked(std::string(frugal::to_string(r)));
      t.builtin = r;
      t.limit = lim.value_or(budget::unlimited);
      t.level = is_level(r);
      tracked_.push_back(std::move(t));
    }
    for (const auto& [unit, lim] : l.unit_limits()) {
      tracked t = make_tracked(unit);
      t.limit = lim;
      tracked_.push_back(std::move(t));
    }
  }

  [[nodiscard]] tracked make_tracked(std::string name) const {
    tracked t;
    t.step = cost_model(options_.forecast_);
    t.epoch_end = cost_stats(options_.forecast_);
    t.end_in_step_rate = cost_stats(options_.forecast_);
    t.thresholds = options_.default_thresholds_;
    for (const auto& [n, f] : options_.thresholds_)
      if (n == name) t.thresholds = f;
    t.name = std::move(name);
    return t;
  }

  /// Reads every tracked resource, one used() each: the wall and the peak are lock-free, an
  /// additive resource takes the budget's mutex for a short walk (~10 ns here), which is cheaper
  /// than one snapshot() (~80 ns: it reads the CPU clock and allocates its unit list).
  void read_now() {
    for (auto& t : tracked_) t.now = t.builtin ? run_->used(*t.builtin) : run_->used(std::string_view(t.name));
  }

  /// Consumables only: a level's height is not budget spent.
  void update_fraction() noexcept {
    double f = 0;
    for (const auto& t : tracked_)
      if (!t.level && std::isfinite(t.limit)) f = std::max(f, t.limit > 0 ? t.used / t.limit : 1.0);
    fraction_used_ = f;
  }

  [[nodiscard]] const tracked* find(std::string_view name) const noexcept {
    for (const auto& t : tracked_)
      if (t.name == name) return &t;
    return nullptr;
  }
  [[nodiscard]] tracked* find(std::string_view name) noexcept {
    for (auto& t : tracked_)
      if (t.name == name) return &t;
    return nullptr;
  }

  /// A tracked amount in words; money carries its currency (format_amount()).
  [[nodiscard]] std::string format(const tracked& t, double v) const {
    return t.builtin ? format_amount(*run_, *t.builtin, v) : format_count(v);
  }

  [[nodiscard]] bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }
  /// A flag bound with cancel_on (cancels) or stop_on (stops at the next checkpoint).
  struct watched_flag {
    const std::atomic<bool>* flag;
    frugal::stop_reason why;
    std::function<std::string()> describe;
    bool cancels;
  };

  controller& watch_flag(const std::atomic<bool>& flag, frugal::stop_reason why, std::function<std::string()> describe,
                         bool cancels, const char* field) {
    if (why == frugal::stop_reason::none) fail(field, "a reason other than none", "none");
    for (auto& w : flags_)
      if (w.flag == &flag) {
        w = watched_flag{&flag, why, std::move(describe), cancels};
        return *this;
      }
    flags_.push_back(watched_flag{&flag, why, std::move(describe), cancels});
    return *this;
  }
  /// The first bound flag that is set, of the kind asked for (null if none).
  [[nodiscard]] const watched_flag* flag_set(bool cancels) const noexcept {
    for (const auto& w : flags_)
      if (w.cancels == cancels && w.flag->load(std::memory_order_acquire)) return &w;
    return nullptr;
  }
  [[nodiscard]] bool cancel_flag_set() const noexcept { return flag_set(true) != nullptr; }
  [[nodiscard]] frugal::stop_reason cancel_reason() const noexcept {
    const watched_flag* w = flag_set(true);
    return w ? w->why : frugal::stop_reason::none;
  }
  [[nodiscard]] static std::string flag_message(const watched_flag& w) {
    if (w.describe) {
      try {
        std::string text = w.describe();
        if (!text.empty()) return text;
      } catch (...) {
        // Words about a stop must not stop it: fall back to the plain ones.
      }
    }
    if (w.why == frugal::stop_reason::deadline)
      return "the deadline watchdog fired at the wall limit; parallel work in flight was cancelled";
    return std::string(w.cancels ? "the cancel flag" : "the stop flag") + " was set (" +
           std::string(frugal::to_string(w.why)) + ")";
  }
  [[nodiscard]] std::string cancel_message() const {
    const watched_flag* w = flag_set(true);
    return w ? flag_message(*w) : std::string();
  }
  /// A stop asked for, not yet decided: request_stop() (user) first, then a stop_on flag.
  [[nodiscard]] frugal::stop_reason requested_reason() const noexcept {
    if (stop_requested_.load(std::memory_order_acquire)) return requested_cause_;
    const watched_flag* w = flags_.empty() ? nullptr : flag_set(false);
    return w ? w->why : frugal::stop_reason::none;
  }
  /// Its words; stop_mutex_ held.
  [[nodiscard]] std::string requested_message_locked() const {
    if (stop_requested_.load(std::memory_order_acquire)) return requested_message_;
    const watched_flag* w = flags_.empty() ? nullptr : flag_set(false);
    return w ? "stop (" + std::string(frugal::to_string(w->why)) + "): " + flag_message(*w) : std::string();
  }

  /// The batch size the next step will run with, as far as forecasts are concerned: the knob,
  /// or (unmanaged) the larger of the last two steps' batches, so a short last batch of an
  /// epoch does not make the next full one look cheap.
  [[nodiscard]] std::size_t next_batch() const noexcept {
    if (batch_ > 0) return batch_;
    return std::max(last_batch_, previous_batch_);
  }

  [[nodiscard]] std::size_t accumulation_for(std::size_t batch) const noexcept {
    const std::size_t e = options_.effective_batch_;
    if (!options_.accumulate_ || batch == 0 || e <= batch) return 1;
    return (e + batch - 1) / batch;
  }

  /// The batch closest below `candidate` whose accumulation keeps the effective batch exact
  /// when it can: accumulation a = ceil(E / candidate), batch = ceil(E / a) <= candidate.
  [[nodiscard]] std::size_t round_for_effective(std::size_t candidate) const noexcept {
    const std::size_t e = options_.effective_batch_;
    if (!options_.accumulate_ || candidate >= e) return candidate;
    const std::size_t a = (e + candidate - 1) / candidate;
    const std::size_t b = (e + a - 1) / a;
    return b >= options_.batch_min_ ? b : candidate;
  }

  /// A size to grow to: with accumulation, only one that keeps the effective batch exact (E / a
  /// for a divisor a of E), and no further than E itself -- a grow is optional, unlike a shrink,
  /// so it never changes how many samples an update sees.
  [[nodiscard]] std::size_t round_to_effective_divisor(std::size_t candidate) const noexcept {
    const std::size_t e = options_.effective_batch_;
    if (!options_.accumulate_ || candidate == 0 || e == 0) return candidate;
    std::size_t a = (e + candidate - 1) / candidate;
    while (e % a != 0) ++a;
    return e / a;
  }

  // --- epoch ends ---

  /// Time, and what is spent at a rate over time: energy, and money priced by the hour.
  [[nodiscard]] bool is_time(const tracked& t) const noexcept {
    if (!t.builtin) return false;
    switch (*t.builtin) {
      case resource::wall:
      case resource::cpu:
      case resource::energy: return true;
      case resource::cost: return cost_by_time_;
      case resource::flops:
      case resource::allocations:
      case resource::alloc_bytes:
      case resource::peak_bytes:
      case resource::rss_bytes: break;
    }
    return false;
  }
  /// The steps' typical cost per sample at batch b now (per step when the batch is unknown).
  [[nodiscard]] static double step_rate(const tracked& t, std::size_t b) noexcept {
    return t.step.median(b) / static_cast<double>(std::max<std::size_t>(b, 1));
  }
  /// An epoch end's forecast: for a time, its cost relative to the steps' rate when it was
  /// measured, times their rate now -- on a machine whose load changes, the steps just before
  /// an evaluation say more about its duration than the evaluations of a quieter past (a 515 ms
  /// forecast took 780 ms when the steps had slowed from 16 to 29 ms); otherwise, as measured.
  [[nodiscard]] const cost_stats& end_stats(const tracked& t) const noexcept {
    return is_time(t) && !t.end_in_step_rate.empty() ? t.end_in_step_rate : t.epoch_end;
  }
  using statistic = double (cost_stats::*)() const noexcept;
  [[nodiscard]] double end_estimate(const tracked& t, std::size_t fb, statistic stat) const noexcept {
    const double rate = step_rate(t, fb);
    if (is_time(t) && !t.end_in_step_rate.empty() && rate > 0) return (t.end_in_step_rate.*stat)() * rate;
    return (t.epoch_end.*stat)();
  }
  [[nodiscard]] double end_high(const tracked& t, std::size_t fb) const noexcept {
    return end_estimate(t, fb, &cost_stats::high);
  }
  [[nodiscard]] double end_mean(const tracked& t, std::size_t fb) const noexcept {
    return end_estimate(t, fb, &cost_stats::mean);
  }
  /// The room kept after the steps: an epoch's end and the run's end work (run_end_work epoch
  /// ends), forecast together with the epoch end's headroom -- the run may end after any epoch.
  [[nodiscard]] double end_reserve(const tracked& t, std::size_t fb) const noexcept {
    return end_high(t, fb) * end_scale(t, fb) * (1 + options_.run_end_work_);
  }
  /// What end_reserve covers, in words: "the epoch's end" or "the epoch's end and the run's end".
  [[nodiscard]] const char* end_reserve_words() const noexcept {
    return options_.run_end_work_ > 0 ? "the epoch's end and the run's end" : "the epoch's end";
  }

  // --- headroom ---

  /// What a resource's next-step forecast is multiplied by: 1 + the margin, or 1 + the spread of
  /// its step costs while their history is shorter than the window (the largest of a full window
  /// is already a high quantile; that of three steps is not).
  [[nodiscard]] double step_scale(const tracked& t, std::size_t fb) const noexcept {
    if (options_.margin_) return 1 + *options_.margin_;
    const cost_stats* own = t.step.at(fb);
    if (own && own->count() >= own->window()) return 1;
    return 1 + t.step.spread(fb);
  }
  /// The same for the epoch-end forecast, whose history (one per epoch) is always short: the
  /// larger of the epoch ends' own spread and that of the steps -- the machine's load shows in
  /// the steps first. An epoch end lasting k steps varies like a sum of k steps, by 1 / sqrt(k)
  /// of one step's spread: a 0.3 ms step stalled 10 ms by the scheduler (spread 30) says little
  /// about a 1 s evaluation (sqrt(3300) = 57: 0.5 of it).
  [[nodiscard]] double end_scale(const tracked& t, std::size_t fb) const noexcept {
    if (options_.margin_) return 1 + *options_.margin_;
    const double step = t.step.median(fb);
    const double end = end_high(t, fb);
    const double k = step > 0 && end > step ? end / step : 1;
    return 1 + std::max(t.step.spread(fb) / std::sqrt(k), end_stats(t).spread());
  }
  [[nodiscard]] std::string headroom_text(double scale) const {
    if (!(scale > 1)) return "";
    return " (+" + detail::units_impl::sig3((scale - 1) * 100) + " % " + (options_.margin_ ? "margin" : "headroom") + ")";
  }

  // --- memory: the levels' models ---

  /// The headroom of a level's forecast: the margin, or its model's measured spread; it scales
  /// what the batch controls, not the base (memory_model.hpp).
  [[nodiscard]] double level_headroom(const tracked& t) const noexcept {
    return options_.margin_ ? *options_.margin_ : t.memory.spread();
  }
  /// The model's forecast plus what the measurement cannot see: a level is known only to its
  /// resolution (heap_resolution_bytes(): threads x FRUGAL_HEAP_FOLD_BYTES for the heap).
  [[nodiscard]] double level_forecast(const tracked& t, std::size_t n) const noexcept {
    return t.memory.forecast(n, level_headroom(t)) + level_resolution(t);
  }
  [[nodiscard]] double level_resolution(const tracked& t) const noexcept {
    return t.builtin == resource::peak_bytes ? heap_resolution_ : 0;
  }
  /// Re-reads the heap's resolution (the threads may have changed).
  void update_resolution() noexcept {
    bool limited = false;
    for (const auto& t : tracked_) limited = limited || (t.level && std::isfinite(t.limit));
    heap_resolution_ = limited && window_.available() ? static_cast<double>(heap_resolution_bytes()) : 0;
  }
  /// "61.2 MiB at batch 512 (base 57.0 MiB + 8.19 KiB per sample, +3 % headroom)"; with one
  /// size measured, "(as measured)" at that size, "(bound from batch 16: ...)" above it.
  [[nodiscard]] std::string level_forecast_text(const tracked& t, std::size_t n) const {
    const double h = level_headroom(t);
    const std::string headroom =
        h > 0 ? " +" + detail::units_impl::sig3(h * 100) + " % " + (options_.margin_ ? "margin" : "headroom") : "";
    const std::string line = "base " + format(t, t.memory.base()) + " + " + format(t, t.memory.rise_per_unit()) + " per sample";
    std::string how;
    if (t.memory.fitted())
      how = line + (headroom.empty() ? "" : "," + headroom);
    else if (n == t.memory.smallest_size())
      how = "as measured" + (headroom.empty() ? "" : "," + headroom);
    else
      how = "bound from batch " + std::to_string(t.memory.smallest_size()) + ": " + line +
            (headroom.empty() ? "" : "," + headroom);
    const double res = level_resolution(t);
    if (res > 0) how += ", + " + format(t, res) + " resolution";
    return format(t, level_forecast(t, n)) + " at batch " + std::to_string(n) + " (" + how + ")";
  }

  /// Whether some limited level is one the controller measures itself (the memory model's
  /// precondition: probing needs measurements).
  [[nodiscard]] bool measures_a_limited_level() const noexcept {
    for (const auto& t : tracked_)
      if (t.level && std::isfinite(t.limit) && measures_level(t)) return true;
    return false;
  }
  /// Whether the controller measures a level itself: the heap with the allocation hooks, the
  /// resident set where /proc is readable (read at checkpoints only: a system call).
  [[nodiscard]] bool measures_level(const tracked& t) const noexcept {
    if (t.builtin == resource::peak_bytes) return window_.available();
    if (t.builtin == resource::rss_bytes) return rss_readable_;
    return false;
  }
  /// A level's value now, where the controller can read it.
  [[nodiscard]] std::optional<double> level_now(const tracked& t) const noexcept {
    if (t.builtin == resource::peak_bytes && window_.available()) return static_cast<double>(heap_live_bytes());
    if (t.builtin == resource::rss_bytes && rss_readable_)
      if (const auto rss = detail::read_resident_set()) return static_cast<double>(*rss);
    return std::nullopt;
  }
  /// The level a step reached: the heap's peak (reported by the loop, else measured since the
  /// last checkpoint); the resident set as it stands at the checkpoint (glibc keeps what a step
  /// freed, so it is close to the step's high; it is read here, never per allocation).
  [[nodiscard]] std::optional<double> level_of_step(const tracked& t, const step& s) const noexcept {
    if (t.builtin == resource::peak_bytes) {
      if (const auto p = s.peak_bytes()) return *p;
      if (window_.available()) return static_cast<double>(window_.peak_bytes());
      return std::nullopt;
    }
    if (std::isfinite(t.limit)) return level_now(t);
    return std::nullopt;
  }
  /// The level when the step started (the memory model's base hint).
  [[nodiscard]] std::optional<double> level_at_window_start(const tracked& t, const step& s) const noexcept {
    if (t.builtin == resource::peak_bytes) {
      if (const auto b = s.start_bytes()) return *b;
      if (window_.available()) return static_cast<double>(window_.start_bytes());
      return std::nullopt;
    }
    if (measures_level(t)) return t.window_start;
    return std::nullopt;
  }
  /// Every measured level now, in tracked_'s order (-1 where not measured): where a stretch of
  /// work (a probe, a chunk) starts.
  [[nodiscard]] std::vector<double> level_starts() const {
    std::vector<double> out(tracked_.size(), -1);
    for (std::size_t i = 0; i < tracked_.size(); ++i)
      if (tracked_[i].level && tracked_[i].builtin != resource::peak_bytes && measures_level(tracked_[i]))
        if (const auto v = level_now(tracked_[i])) out[i] = *v;
    return out;
  }
  /// Where a level started and how high it went over a stretch: the heap from its watch, the
  /// resident set as read before and after. {-1, -1} for a level not measured.
  [[nodiscard]] std::pair<double, double> stretch_of(const tracked& t, const heap_watch& watch, double start) const {
    if (!t.level || !measures_level(t)) return {-1, -1};
    if (t.builtin == resource::peak_bytes)
      return {static_cast<double>(watch.start_bytes()), static_cast<double>(watch.peak_bytes())};
    const auto now = level_now(t);
    if (!now || start < 0) return {-1, -1};
    return {start, std::max(start, *now)};
  }

  /// A checkpoint ends: the next step's measurement starts here.
  void end_window() noexcept {
    update_resolution();
    for (auto& t : tracked_)
      if (t.level && t.builtin != resource::peak_bytes && std::isfinite(t.limit))
        if (const auto v = level_now(t)) t.window_start = *v;
    window_.reset();
  }

  struct memory_limits {
    bool modeled = false;       ///< some limited level has a model
    bool all_fitted = true;     ///< every such model has two sizes or more
    std::size_t cap = 0;        ///< the largest batch within every limit (0: not even the minimum)
    std::size_t grow_cap = 0;   ///< the same within grow_headroom of the room above each base
    std::string words;          ///< the models, in words
  };
  /// What the limited levels' models allow, in [batch_min, batch_max]; `why` gets the reason
  /// when the current batch `cur` is over one of them.
  /// With `words`, the models in words too (for a note; a checkpoint that changes nothing
  /// allocates no strings).
  [[nodiscard]] memory_limits memory_caps(std::size_t cur, std::string& why, bool words = false) const {
    memory_limits m;
    m.cap = m.grow_cap = options_.batch_max_;
    for (const auto& t : tracked_) {
      if (!t.level || !std::isfinite(t.limit) || t.memory.empty()) continue;
      m.modeled = true;
      m.all_fitted = m.all_fitted && t.memory.fitted();
      const double h = level_headroom(t);
      const std::size_t measured = t.memory.smallest_size();
      const double limit = t.limit - level_resolution(t);
      const std::size_t cap = size_within(t.memory, limit, h, cur, options_.batch_min_, options_.batch_max_);
      const double base = t.memory.base();
      const double grow_limit = base + options_.grow_headroom_ * std::max(0.0, limit - base);
      m.cap = std::min(m.cap, cap);
      m.grow_cap = std::min(m.grow_cap, size_within(t.memory, grow_limit, h, cur, options_.batch_min_, options_.batch_max_));
      if (words) {
        if (!m.words.empty()) m.words += "; ";
        const std::size_t shown = cap > 0 && (t.memory.fitted() || cap >= measured) ? cap : std::min(cur, measured);
      m.words += t.name + " forecast " + level_forecast_text(t, shown) + (cap > 0 ? " within" : " over") + " limit " +
                 format(t, t.limit);
      }
      if (cur <= cap) continue;
      if (!why.empty()) why += "; ";
      why += t.height > t.limit ? t.name + ": the step reached " + format(t, t.height) + ", over limit " +
                                      format(t, t.limit) + " (forecast " + level_forecast_text(t, cur) + ")"
                                : t.name + ": next step forecast " + level_forecast_text(t, cur) + " over limit " +
                                      format(t, t.limit);
    }
    return m;
  }

  /// How far a bound (no line yet) may grow a size in one move: a base hint taken too high (the
  /// stage's buffers already held when it started) would make the bound say anything fits.
  static constexpr std::size_t bound_growth = 16;

  /// The largest size in [lo, hi] a memory model forecasts within `limit` (headroom h), `cur`
  /// the size now; 0 when not even lo fits. Without a line, the model bounds sizes from above:
  /// over the limit at a measured size, a smaller one is tried by the shrink factor and
  /// measured; one below the sizes measured is measured before anything is concluded; and a
  /// bound grows a size bound_growth times at most.
  [[nodiscard]] std::size_t size_within(const frugal::memory_model& m, double limit, double h, std::size_t cur,
                                        std::size_t lo, std::size_t hi) const noexcept {
    std::size_t cap = m.largest_within(limit, h, lo, hi);
    if (m.fitted()) return cap;
    if (cap == 0) {
      if (m.measured(cur) && cur > lo)
        return std::max(lo, static_cast<std::size_t>(std::floor(static_cast<double>(cur) * options_.shrink_factor_)));
      if (cur < m.smallest_size()) return cur;
      return 0;
    }
    const std::size_t largest = m.largest_size();
    if (largest > 0 && cap / bound_growth >= largest && cap > largest * bound_growth) cap = largest * bound_growth;
    return cap;
  }

  /// A limited level the heap already stands over, before a step: no batch can fit under it.
  void stop_if_level_over(const char* at) {
    if (stopped()) return;
    std::string clauses;
    for (const auto& t : tracked_) {
      if (!t.level || !std::isfinite(t.limit)) continue;
      const auto now = level_now(t);
      if (!now || !(*now > t.limit)) continue;
      if (!clauses.empty()) clauses += "; ";
      clauses += t.name + ": the level already stands at " + format(t, *now) + ", over limit " + format(t, t.limit) +
                 ", before any step: no batch size can fit";
    }
    if (clauses.empty()) return;
    const std::string message = "stop (forecast): " + clauses;
    set_stopped(frugal::stop_reason::forecast, message);
    history_.add(decision_record{steps_, epochs_, at, "stop", frugal::stop_reason::forecast, message});
    callbacks_.notify(event_kind::stopped,
                      stop_event{steps_, epochs_, last_checkpoint_, frugal::stop_reason::forecast, message}, steps_);
  }

  /// With the batch knob and a limited level the controller measures, the first step runs at the
  /// smallest batch: what it peaks at bounds every larger size (memory_model.hpp), the batch
  /// grows to that bound, then to the size the line through the two fits. So no step is sized
  /// on a guess; probe_memory() does the same before the first step, without training.
  void start_memory_probe() {
    if (stopped() || !manages_batch() || batch_ <= options_.batch_min_ || steps_ > 0) return;
    if (!measures_a_limited_level()) return;
    memory_probing_ = true;
    set_batch(options_.batch_min_, "memory probe: the first step runs at the smallest batch (" +
                                       std::to_string(options_.batch_min_) +
                                       ") to measure the peak a batch adds; the batch then grows to the largest size "
                                       "the memory model fits");
  }

  /// Sets the knob between checkpoints (the probe), with its record.
  void set_batch(std::size_t to, const std::string& why) {
    if (to == batch_) return;
    history_.batch_changes.push_back(batch_change_record{steps_, batch_, to, accumulation_for(to), why});
    history_.add(decision_record{steps_, epochs_, steps_ == 0 ? "start" : "probe",
                                 to < batch_ ? "shrink_batch" : "grow_batch", frugal::stop_reason::none,
                                 std::string(to < batch_ ? "shrink" : "grow") + " batch " + std::to_string(batch_) +
                                     " -> " + std::to_string(to) + " (accumulation " +
                                     std::to_string(accumulation_for(to)) + "): " + why});
    batch_ = to;
    accumulation_ = accumulation_for(to);
    steps_since_batch_change_ = 0;
    ++batch_changes_;
  }

  // --- events ---

  void fire_thresholds() {
    for (auto& t : tracked_) {
      if (!std::isfinite(t.limit)) continue;
      const double frac = t.limit > 0 ? t.used / t.limit : 1.0;
      while (t.next_threshold < t.thresholds.size() && frac >= t.thresholds[t.next_threshold]) {
        const double threshold = t.thresholds[t.next_threshold++];
        callbacks_.notify(event_kind::approaching, approaching_event{t.name, t.used, t.limit, threshold}, steps_);
      }
      if (t.level) {
        // A crossing is a state that starts and ends, not a budget spent.
        const bool over = t.height > t.limit;
        if (over && !t.crossed)
          callbacks_.notify(event_kind::level_crossed, level_crossed_event{t.name, t.height, t.limit}, steps_);
        t.crossed = over;
        continue;
      }
      if (!t.exhausted_fired && t.used >= t.limit) {
        t.exhausted_fired = true;
        callbacks_.notify(event_kind::exhausted, exhausted_event{t.name, t.used, t.limit}, steps_);
      }
    }
  }

  /// Edge-triggered: the event fires when the overrun starts, not at every checkpoint it lasts.
  void overrun(tracked& t, forecast_horizon h, bool over, double forecast) {
    bool& state = t.overrun[static_cast<std::size_t>(h)];
    if (over && !state)
      callbacks_.notify(event_kind::forecast_overrun, forecast_overrun_event{t.name, h, t.used, forecast, t.limit},
                        steps_);
    state = over;
  }

  // --- deciding ---

  [[nodiscard]] decision base_decision() const {
    decision d;
    d.from_batch_ = batch_;
    d.batch_ = batch_;
    d.accumulation_ = accumulation_;
    if (cancel_flag_set()) {
      d.set(action::cancelled);
      d.cause_ = cancel_reason();
      d.note("cancelled (" + std::string(frugal::to_string(d.cause_)) + "): " + cancel_message());
    } else if (stopped()) {
      // A stop stands until a callback vetoes it: later checkpoints repeat it, and say so.
      d.set(action::stop);
      d.repeats_stop_ = true;
      d.cause_ = stop_reason_.load(std::memory_order_relaxed);
      std::lock_guard<std::mutex> lock(stop_mutex_);
      d.note(stop_message_);
    } else if (const frugal::stop_reason why = requested_reason(); why != frugal::stop_reason::none) {
      d.set(action::stop);
      d.cause_ = why;
      std::lock_guard<std::mutex> lock(stop_mutex_);
      d.note(requested_message_locked());
    }
    return d;
  }

  /// The consumables whose use has reached their limit, in words ("" when none).
  [[nodiscard]] std::string exhausted_clauses() const {
    std::string clauses;
    for (const auto& t : tracked_) {
      if (t.level || !(t.used >= t.limit)) continue;
      if (!clauses.empty()) clauses += "; ";
      clauses += t.name + ": " + format(t, t.used) + " used of " + format(t, t.limit) + " (limit reached)";
    }
    return clauses;
  }

  void stop_if_exhausted(decision& d) const {
    const std::string clauses = exhausted_clauses();
    if (!clauses.empty()) d.stop(clauses, frugal::stop_reason::budget_exhausted);
  }

  /// A budget spent between checkpoints (before the first step, or by new limits) stops the run
  /// now: no step may start on it. No checkpoint runs, so no callback can veto it.
  void stop_if_spent(const char* at) {
    if (stopped()) return;
    const std::string clauses = exhausted_clauses();
    if (clauses.empty()) return;
    const std::string message = "stop (budget_exhausted): " + clauses;
    set_stopped(frugal::stop_reason::budget_exhausted, message);
    history_.add(decision_record{steps_, epochs_, at, "stop", frugal::stop_reason::budget_exhausted, message});
    callbacks_.notify(event_kind::stopped,
                      stop_event{steps_, epochs_, last_checkpoint_, frugal::stop_reason::budget_exhausted, message},
                      steps_);
  }

  void set_stopped(frugal::stop_reason why, const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(stop_mutex_);
      stop_message_ = message;
    }
    stop_reason_.store(why, std::memory_order_release);
    stopped_.store(true, std::memory_order_release);
  }

  /// Whether, under the limits just loaded, a stop the budget caused no longer holds, by the
  /// rules of the checkpoint that stopped: nothing is exhausted; after an epoch's end, the next
  /// epoch's first step and end fit (decide_epoch); after a step, the next step fits and so does
  /// the epoch's end that is still to come (decide_step, end_epoch_if_needed) -- with the same
  /// forecasts and headroom as a checkpoint.
  [[nodiscard]] bool fits_again() const {
    if (!exhausted_clauses().empty()) return false;
    const std::size_t fb = next_batch();
    for (const auto& t : tracked_) {
      if (!std::isfinite(t.limit)) continue;
      if (t.level) {
        if (!t.memory.empty() && level_forecast(t, fb) > t.limit) return false;
        continue;
      }
      if (t.step.empty()) continue;
      const double step = t.step.high(fb) * step_scale(t, fb);
      const bool end_known = epochs_ > 0 && !t.epoch_end.empty();
      const double end = end_known ? end_reserve(t, fb) : 0;
      if (last_checkpoint_ == checkpoint::epoch) {
        if (t.used + step + end > t.limit) return false;
      } else if (t.used + step > t.limit || t.used + end > t.limit) {
        return false;
      }
    }
    return true;
  }

  decision decide_step(const step& s, std::size_t batch) {
    decision d = base_decision();
    if (!d.stops() && options_.check_finite_loss_ && s.loss() && !std::isfinite(*s.loss()))
      d.stop("loss is " + std::string(std::isnan(*s.loss()) ? "nan" : "inf") + " at step " + std::to_string(steps_),
             frugal::stop_reason::non_finite);
    if (!d.stops()) stop_if_exhausted(d);

    last_batch_ = batch;
    std::size_t fb = next_batch();
    std::string batch_note;
    if (!d.stops() && manages_batch()) fb = choose_batch(batch_note);

    // Stop before the next step if its forecast would cross a limit.
    std::string clauses;
    for (auto& t : tracked_) {
      if (!std::isfinite(t.limit) || (t.level ? t.memory.empty() : t.step.empty())) continue;
      const double f = t.level ? level_forecast(t, fb) : ahead(t, fb, horizon_);
      // A level's model judges a size below the one it measured only once it has a line.
      const bool over = t.level ? f > t.limit && (t.memory.fitted() || fb >= t.memory.smallest_size())
                                : t.used + f > t.limit;
      overrun(t, forecast_horizon::next_step, over, f);
      if (!over || d.stops()) continue;
      if (!clauses.empty()) clauses += "; ";
      clauses += !t.level ? t.name + ": " + format(t, t.used) + " used of " + format(t, t.limit) + ", " +
                                next_steps_words(horizon_) + " forecast " + format(t, f) + headroom_text(step_scale(t, fb))
                          : t.name + ": next step forecast " + level_forecast_text(t, fb) + " over limit " +
                                format(t, t.limit) +
                                (manages_batch() && fb <= options_.batch_min_ ? " (batch at its minimum)" : "");
    }
    if (!clauses.empty() && !d.stops()) d.stop(clauses, frugal::stop_reason::forecast);
    if (!d.stops() && manages_batch() && fb != batch_) {
      d.batch_size(fb);
      d.note(batch_note);
    }

    if (!d.stops()) end_epoch_if_needed(d, fb);
    if (!d.stops()) apply_compression_rules(d, fb);
    return d;
  }

  /// A misspelt metric would never be checked: the first epoch must report every watched one.
  void check_watched_metrics(const epoch& e) const {
    for (const auto& es : options_.early_stopping_) {
      if (e.metric(es.metric())) continue;
      std::string reported;
      for (const auto& [name, value] : e.metrics()) reported += (reported.empty() ? "" : ", ") + name;
      throw std::invalid_argument("frugal::controller::end_epoch: early_stopping watches the metric '" + es.metric() +
                                  "', which the first epoch does not report (it reports: " +
                                  (reported.empty() ? std::string("nothing") : reported) + ")");
    }
  }

  decision decide_epoch(const epoch& e) {
    decision d = base_decision();
    const std::uint64_t index = epochs_;
    std::string clauses;
    frugal::stop_reason cause = frugal::stop_reason::none;
    for (auto& es : options_.early_stopping_) {
      const auto v = e.metric(es.metric());
      if (!v) continue;
      const std::optional<double> best_before = es.best();
      const std::optional<std::uint64_t> epoch_before = es.best_epoch();
      const early_stop_verdict verdict = es.update(*v, index);
      if (es.best_epoch() != epoch_before || es.best() != best_before)
        callbacks_.notify(event_kind::best_metric,
                          best_metric_event{es.metric(), *es.best(), *es.best_epoch(), best_before, epoch_before}, steps_);
      if (!frugal::stops(verdict)) continue;
      if (!clauses.empty()) clauses += "; ";
      clauses += es.message();
      if (cause == frugal::stop_reason::none)
        cause = verdict == early_stop_verdict::stop_diverged     ? frugal::stop_reason::diverged
                : verdict == early_stop_verdict::stop_non_finite ? frugal::stop_reason::non_finite
                                                                 : frugal::stop_reason::early_stopping;
    }
    if (!d.stops() && !clauses.empty()) d.stop(clauses, cause);
    if (!d.stops()) stop_if_exhausted(d);
    if (d.stops()) return d;

    // A new epoch must fit at least one step and its end-of-epoch work (and the run's end work).
    const std::size_t fb = next_batch();
    clauses.clear();
    for (auto& t : tracked_) {
      if (t.level || !std::isfinite(t.limit) || t.step.empty()) continue;
      const double f = ahead(t, fb, horizon_) + end_reserve(t, fb);
      const bool over = t.used + f > t.limit;
      overrun(t, forecast_horizon::epoch_end, over, f);
      if (!over) continue;
      if (!clauses.empty()) clauses += "; ";
      clauses += t.name + ": " + format(t, t.used) + " used of " + format(t, t.limit) + ", " + steps_words(horizon_) +
                 (options_.run_end_work_ > 0 ? ", an epoch end and the run's end forecast " : " and an epoch end forecast ") +
                 format(t, f) + headroom_text(end_scale(t, fb));
    }
    if (!clauses.empty()) d.stop(clauses, frugal::stop_reason::forecast);
    return d;
  }

  /// Steps left in this epoch, if the epoch's size is known (given or learnt).
  [[nodiscard]] std::optional<std::uint64_t> steps_left_in_epoch(std::size_t fb) const noexcept {
    const std::size_t samples = options_.epoch_samples_ ? options_.epoch_samples_ : learned_epoch_samples_;
    if (samples > 0 && fb > 0 && samples_known_) {
      if (samples_in_epoch_ >= samples) return 0;
      return (samples - samples_in_epoch_ + fb - 1) / fb;
    }
    const std::uint64_t steps = options_.steps_per_epoch_ ? options_.steps_per_epoch_ : learned_steps_per_epoch_;
    if (steps > 0) return steps > steps_in_epoch_ ? steps - steps_in_epoch_ : 0;
    return std::nullopt;
  }

  [[nodiscard]] std::optional<std::uint64_t> steps_per_epoch(std::size_t fb) const noexcept {
    const std::size_t samples = options_.epoch_samples_ ? options_.epoch_samples_ : learned_epoch_samples_;
    if (samples > 0 && fb > 0) return (samples + fb - 1) / fb;
    const std::uint64_t steps = options_.steps_per_epoch_ ? options_.steps_per_epoch_ : learned_steps_per_epoch_;
    if (steps > 0) return steps;
    return std::nullopt;
  }

  /// "one step" or "N steps", for the words of a forecast over the decision horizon.
  [[nodiscard]] static std::string steps_words(std::uint64_t n) {
    return n == 1 ? std::string("one step") : std::to_string(n) + " steps";
  }
  /// "next step" or "next N steps".
  [[nodiscard]] static std::string next_steps_words(std::uint64_t n) {
    return n == 1 ? std::string("next step") : "next " + std::to_string(n) + " steps";
  }

  /// The forecast cost of the next `steps` steps at batch fb: the largest recent cost (with
  /// its headroom) for the first, the mean for the rest.
  [[nodiscard]] double ahead(const tracked& t, std::size_t fb, std::uint64_t steps) const noexcept {
    const double first = t.step.high(fb) * step_scale(t, fb);
    return steps <= 1 ? first : first + static_cast<double>(steps - 1) * t.step.mean(fb);
  }

  /// End the epoch now when the rest of it cannot fit and the next step plus the epoch's end
  /// (its evaluation, checkpoint) would not fit either: the latest moment that leaves room for
  /// the end-of-epoch work. Stop instead when even the epoch's end alone no longer fits (its
  /// forecast rose with the machine's load): that work would cross the limit, so the loop must
  /// not start it. Needs one finished epoch to know what that work costs. With run_end_work, the
  /// run's end work is kept with the epoch's end: a stop here leaves room for it alone.
  void end_epoch_if_needed(decision& d, std::size_t fb) {
    if (epochs_ == 0) return;
    const auto left = steps_left_in_epoch(fb);
    const bool ends_now = left && *left == 0;
    // The steps until the next decision (the rest of the epoch when fewer).
    const std::uint64_t next_steps = left ? std::max<std::uint64_t>(1, std::min<std::uint64_t>(*left, horizon_)) : horizon_;
    std::string end_clauses, stop_clauses;
    for (auto& t : tracked_) {
      if (t.level || !std::isfinite(t.limit) || t.step.empty() || t.epoch_end.empty()) continue;
      const double next = ahead(t, fb, next_steps);
      const double end = end_reserve(t, fb);
      if (t.used + end > t.limit) {
        overrun(t, forecast_horizon::epoch_end, true, end);
        if (!stop_clauses.empty()) stop_clauses += "; ";
        stop_clauses += t.name + ": " + format(t, t.used) + " used of " + format(t, t.limit) + "; " +
                        end_reserve_words() + " (" + format(t, end) + ")" + headroom_text(end_scale(t, fb)) +
                        " would not fit";
        continue;
      }
      if (ends_now) continue;
      const double rest = left ? ahead(t, fb, *left) : next;
      const bool over = t.used + next + end > t.limit && t.used + rest + end > t.limit;
      overrun(t, forecast_horizon::epoch_end, over, next + end);
      if (!over) continue;
      if (!end_clauses.empty()) end_clauses += "; ";
      end_clauses += t.name + ": " + format(t, t.used) + " used of " + format(t, t.limit) + "; the " +
                     next_steps_words(next_steps) + " (" + format(t, next) + ") and " + end_reserve_words() + " (" + format(t, end) + ")" +
                     headroom_text(end_scale(t, fb)) +
                     " would not fit" + (left ? ", " + std::to_string(*left) + " steps of the epoch left" : "");
    }
    if (!stop_clauses.empty())
      d.stop(stop_clauses, frugal::stop_reason::forecast);
    else if (!end_clauses.empty())
      d.end_epoch(end_clauses);
  }

  /// The batch size for the next step: the default rule (or the user's), with its reason in
  /// `note`. A level forecast still over its limit at the size chosen stops the run (decide_step).
  ///
  /// Memory: every limited level's memory model gives the largest size forecast within its
  /// limit (memory_cap); a batch above it shrinks to it. While the memory probe runs (the first
  /// steps, see start_memory_probe) the batch grows at once to the largest size the model allows;
  /// later, after grow_after steps, only to a size within grow_headroom of the room above the
  /// model's base (what the batch does not control).
  std::size_t choose_batch(std::string& note) {
    const std::size_t cur = batch_;
    const std::size_t min = options_.batch_min_;
    const std::size_t max = options_.batch_max_;
    tracked* wall = find("wall");
    const double time_cap = options_.max_step_time_;
    const bool time_model = time_cap > 0 && wall && !wall->step.empty();
    const double wall_scale = time_model ? step_scale(*wall, cur) : 1;

    std::string why;
    const memory_limits mem = memory_caps(cur, why);
    const bool level_over = mem.modeled && cur > mem.cap;
    bool time_over = false;
    if (time_model) {
      const double f = wall->step.high(cur) * wall_scale;
      if (f > time_cap) {
        time_over = true;
        if (!why.empty()) why += "; ";
        why += "step time forecast " + format_duration(f) + headroom_text(wall_scale) + " at batch " +
               std::to_string(cur) + " over max_step_time " + format_duration(time_cap);
      }
    }

    std::size_t proposed = cur;
    if ((level_over || time_over) && cur > min) {
      // The size the forecasts say fits: the memory models answer at once (they bound what they
      // have not measured); the time model once it has two sizes to fit a line through, until
      // then the shrink factor.
      std::size_t fit = cur - 1;
      bool fitted = false;
      if (level_over) {
        fit = std::min(fit, std::max(mem.cap, min));
        fitted = true;
      }
      if (time_over && wall->step.has_fit()) {
        fit = std::min(fit, wall->step.largest_batch_within(time_cap / wall_scale, cur - 1));
        fitted = true;
      }
      std::size_t candidate = fit;
      if (!fitted) {
        // By the factor, again while even the proportional forecast (optimistic when shrinking)
        // says the smaller batch does not fit.
        candidate = cur;
        do {
          candidate = static_cast<std::size_t>(std::floor(static_cast<double>(candidate) * options_.shrink_factor_));
        } while (candidate > min && wall->step.high(candidate) * wall_scale > time_cap);
      }
      candidate = std::min(std::max(candidate, min), cur - 1);
      proposed = round_for_effective(candidate);
    } else if (!level_over && !time_over && cur < max &&
               (memory_probing_ ||
                (options_.grow_after_ > 0 && steps_since_batch_change_ >= options_.grow_after_))) {
      // The largest size the models say fits: while probing, within the limits; later within
      // grow_headroom of them (of the room above the base, for memory). A time model is a line
      // through two sizes (with one, a proportional forecast, which overestimates a larger
      // size's cost). With no model to ask, one step of the factor.
      const double headroom = options_.grow_headroom_;
      std::size_t candidate = max;
      if (mem.modeled) candidate = std::min(candidate, memory_probing_ ? mem.cap : mem.grow_cap);
      if (time_model) candidate = std::min(candidate, wall->step.largest_batch_within(headroom * time_cap / wall_scale, max));
      if (!mem.modeled && !time_model)
        candidate = std::min(max, std::max(cur + 1, static_cast<std::size_t>(
                                                        std::ceil(static_cast<double>(cur) / options_.shrink_factor_))));
      candidate = round_to_effective_divisor(candidate);
      if (candidate > cur) {
        proposed = candidate;
        std::string unused;
        why = memory_probing_ ? "memory probe: " + memory_caps(cur, unused, true).words
                              : "room: forecasts at batch " + std::to_string(candidate) + " within " +
                                    detail::units_impl::sig3(headroom * 100) + " % of the limits" +
                                    (mem.modeled ? " (of the room above the memory base)" : "");
      }
    }
    // The probe ends once every limited level has a model through two sizes, or the batch
    // stays where it is (it is at the largest size the models allow).
    if (memory_probing_ && (proposed == cur || mem.all_fitted)) memory_probing_ = false;

    if (options_.batch_rule_) {
      std::size_t wanted = proposed;
      try {
        wanted = options_.batch_rule_(batch_request{cur, min, max, options_.effective_batch_, proposed, *this});
        if (wanted < min || wanted > max)
          throw std::invalid_argument("batch rule returned " + std::to_string(wanted) + ", outside [" +
                                      std::to_string(min) + ", " + std::to_string(max) + "]");
        if (wanted != proposed) why = "batch rule";
        proposed = wanted;
      } catch (const std::exception& ex) {
        callbacks_.record("batch_rule", event_kind::decision, ex.what(), steps_);
      } catch (...) {
        callbacks_.record("batch_rule", event_kind::decision, "unknown exception", steps_);
      }
    }

    if (proposed != cur)
      note = std::string(proposed < cur ? "shrink" : "grow") + " batch " + std::to_string(cur) + " -> " +
             std::to_string(proposed) + " (accumulation " + std::to_string(accumulation_for(proposed)) + "): " + why;
    return proposed;
  }

  /// Planned work left, in steps at batch fb and epoch ends, into `out`; false (out untouched)
  /// without a plan or before the epoch's size is known (planned_epochs).
  struct work_left {
    double steps;
    double epoch_ends;
  };
  [[nodiscard]] bool planned_work_left(std::size_t fb, work_left& out) const noexcept {
    const double n = static_cast<double>(options_.plan_amount_);
    switch (options_.plan_) {
      case controller_options::plan_kind::none: return false;
      case controller_options::plan_kind::steps:
        out = work_left{std::max(0.0, n - static_cast<double>(steps_)), 0};
        return true;
      case controller_options::plan_kind::samples:
        if (fb == 0) return false;
        out = work_left{std::ceil(std::max(0.0, n - static_cast<double>(samples_total_)) / static_cast<double>(fb)), 0};
        return true;
      case controller_options::plan_kind::epochs: {
        const auto per_epoch = steps_per_epoch(fb);
        const auto left = steps_left_in_epoch(fb);
        if (!per_epoch || !left) return false;
        const double epochs_after = std::max(0.0, n - static_cast<double>(epochs_) - 1);
        out = work_left{static_cast<double>(*left) + epochs_after * static_cast<double>(*per_epoch),
                        std::max(0.0, n - static_cast<double>(epochs_))};
        return true;
      }
    }
    return false;
  }

  [[nodiscard]] static bool watches(const std::vector<std::string>& watched, const tracked& t) {
    if (t.level) return false;
    if (watched.empty())
      return t.builtin && (*t.builtin == resource::wall || *t.builtin == resource::cpu || *t.builtin == resource::flops ||
                           *t.builtin == resource::cost || *t.builtin == resource::energy);
    return std::find(watched.begin(), watched.end(), t.name) != watched.end();
  }

  /// Whether a rule may judge now: past the run's warm-up, its cooldown over, not disabled (its
  /// last action's effect lowered something), and no compression's effect still being measured
  /// (any rule's): until it is, the forecast still holds the costs from before that action, and
  /// a second rule would remove the same shortfall again.
  [[nodiscard]] bool rule_ready(const rule_state& st, std::size_t warmup, std::size_t cooldown) const noexcept {
    if (st.disabled || steps_ < warmup) return false;
    for (const std::vector<rule_state>* states : {&prune_state_, &quantize_state_})
      for (const rule_state& other : *states)
        if (other.measuring) return false;
    return st.fired == no_step || steps_ - st.fired >= cooldown;
  }

  /// Fires pruning / quantization rules when the planned work's forecast cost exceeds what is
  /// left: shortfall = 1 - remaining / forecast, the fraction of the cost to remove.
  void apply_compression_rules(decision& d, std::size_t fb) {
    work_left planned{};
    if (!planned_work_left(fb, planned)) return;
    const work_left* const work = &planned;
    // Every limited resource's planned-work overrun is an event, rules or not.
    std::vector<double> shortfall(tracked_.size(), 0.0);
    std::vector<double> need(tracked_.size(), 0.0);
    for (std::size_t i = 0; i < tracked_.size(); ++i) {
      tracked& t = tracked_[i];
      if (t.level || !std::isfinite(t.limit) || t.step.empty()) continue;
      need[i] = work->steps * t.step.mean(fb) + (work->epoch_ends + options_.run_end_work_) * end_mean(t, fb);
      const double left = std::max(0.0, t.limit - t.used);
      const bool over = need[i] > left;
      overrun(t, forecast_horizon::planned_work, over, need[i]);
      if (over) shortfall[i] = 1 - left / need[i];
    }
    // The largest shortfall of the watched resources, in words, and which resource it is.
    auto worst = [&](const std::vector<std::string>& watched, std::string& clause, std::size_t* which = nullptr) {
      double w = 0;
      for (std::size_t i = 0; i < tracked_.size(); ++i) {
        if (!watches(watched, tracked_[i]) || shortfall[i] <= w) continue;
        w = shortfall[i];
        if (which) *which = i;
        const tracked& t = tracked_[i];
        clause = t.name + ": planned work left forecast " + format(t, need[i]) + ", " +
                 format(t, std::max(0.0, t.limit - t.used)) + " left (" + detail::units_impl::sig3(w * 100) +
                 " % short)";
      }
      return w;
    };
    for (std::size_t r = 0; r < options_.prune_rules_.size(); ++r) {
      const prune_rule& rule = options_.prune_rules_[r];
      if (!rule_ready(prune_state_[r], rule.warmup_steps(), rule.cooldown_steps())) continue;
      std::string clause;
      const double w = worst(rule.watched(), clause);
      if (w < rule.min_shortfall() || d.has(action::prune)) continue;
      d.prune(std::min(w, rule.max_fraction()), clause + " [" + rule.name() + "]");
      pending_prune_rule_ = r;
    }
    for (std::size_t r = 0; r < options_.quantize_rules_.size(); ++r) {
      const quantize_rule& rule = options_.quantize_rules_[r];
      if (!rule_ready(quantize_state_[r], rule.warmup_steps(), rule.cooldown_steps())) continue;
      std::string clause;
      std::size_t at = 0;
      const double w = worst(rule.watched(), clause, &at);
      // One compression per checkpoint: the other's effect is not in the forecast yet.
      if (w < rule.min_shortfall() || d.has(action::quantize) || d.has(action::prune)) continue;
      const tracked& t = tracked_[at];
      // The part of the planned cost the action lowers: all of it, or the steps' alone when it
      // leaves the evaluations as they were -- a step 0.54 as costly saves 46 % of the steps,
      // less of a plan that also holds evaluations.
      const double share = rule.scales_epoch_ends() || !(need[at] > 0)
                               ? 1.0
                               : std::min(1.0, work->steps * t.step.mean(fb) / need[at]);
      const int current = quantize_bits_[r];
      const double cost_now = rule.expected_cost(current);
      // What each narrower width is expected to remove, asked once per checkpoint (the loop's
      // expected_cost function may compute it), and the largest of them.
      double saving[frugal::quantize_rule::max_bits + 1] = {};  // by width
      double most = 0;
      for (int b : rule.widths())
        if (b < current) {
          saving[b] = share * (1.0 - rule.expected_cost(b) / cost_now);
          most = std::max(most, saving[b]);
        }
      int bits = 0;
      double best = 0;  // the largest saving expected so far
      for (int b : rule.widths()) {  // widest first
        if (b >= current || saving[b] <= best) continue;  // not narrower, or saves nothing more than a wider one
        bits = b;
        best = saving[b];
        if (best >= w) break;
      }
      if (bits == 0) continue;  // no narrower width is expected to save anything
      // Deferred: not yet while the plan's epoch ends have no measured cost (the forecast lacks
      // them: how late is late enough is not known), nor while the largest saving would leave
      // more than min_shortfall to spare.
      if (rule.deferred() && ((work->epoch_ends + options_.run_end_work_ > 0 && t.epoch_end.empty()) ||
                              w < most - rule.min_shortfall()))
        continue;
      d.quantize(bits, clause + " [" + rule.name() + "]");
      pending_quantize_rule_ = r;
    }
  }

  /// Callbacks amend the decision, then it becomes the controller's state.
  void commit(decision& d, checkpoint where) {
    const std::uint64_t epoch_index = epochs_;
    last_checkpoint_ = where;
    const bool was_stopped = stopped();
    callbacks_.amend(d, where, steps_, epoch_index, [this](const decision& before, decision& after, const std::string& name) {
      if (after.batch_ != after.from_batch_ && manages_batch() &&
          (after.batch_ < options_.batch_min_ || after.batch_ > options_.batch_max_))
        throw std::invalid_argument("batch size " + std::to_string(after.batch_) + " is outside [" +
                                    std::to_string(options_.batch_min_) + ", " + std::to_string(options_.batch_max_) + "]");
      if (after != before) after.note("amended by '" + name + "'");
    });
    // A request (from a hook during this checkpoint, another thread, or before) holds: it is
    // added after the callbacks, so no veto drops it.
    if (const frugal::stop_reason why = requested_reason(); !d.stops() && why != frugal::stop_reason::none) {
      std::lock_guard<std::mutex> lock(stop_mutex_);
      d.set(action::stop);
      d.cause_ = why;
      d.note(requested_message_locked());
    }
    if (agreement_) take_agreed(d, where);
    if (d.stops()) {
      // A stop takes no batch change with it.
      d.clear(action::shrink_batch);
      d.clear(action::grow_batch);
      d.batch_ = batch_;
    }
    if (d.batch_ != batch_ && manages_batch()) {
      history_.batch_changes.push_back(
          batch_change_record{steps_, batch_, d.batch_, accumulation_for(d.batch_), d.reason_});
      batch_ = d.batch_;
      accumulation_ = accumulation_for(batch_);
      steps_since_batch_change_ = 0;
      ++batch_changes_;
    }
    d.batch_ = batch_;
    d.accumulation_ = accumulation_;
    d.repeats_stop_ = d.stops() && was_stopped;
    if (d.stops() && !was_stopped) {
      set_stopped(d.cause_, d.reason_);
    } else if (!d.stops() && was_stopped) {
      // Vetoed by a callback: the run goes on, and a later stop is a new event.
      stopped_.store(false, std::memory_order_release);
      stop_reason_.store(frugal::stop_reason::none, std::memory_order_release);
      std::lock_guard<std::mutex> lock(stop_mutex_);
      stop_message_.clear();
    }
    if (d.repeats_stop_)
      ++history_.repeated_stops;
    else if (!d.is_continue())
      history_.add(decision_record{steps_, epoch_index, where == checkpoint::step ? "step" : "epoch", actions_text(d),
                                   d.cause_, d.reason_});
    if (d.has(action::end_epoch)) epoch_ending_ = true;
    run_rule_actions(d);
    if (d.stops() && !was_stopped)
      callbacks_.notify(event_kind::stopped, stop_event{steps_, epoch_index, where, d.cause_, d.reason_}, steps_);
  }

  /// Hands `d` to the agreement (agree_with) and makes it the agreed one; throws, before
  /// anything changed, when the agreed vote is one this controller cannot take.
  void take_agreed(decision& d, checkpoint where) {
    decision_vote vote;
    vote.actions = d.actions_;
    vote.cause = d.cause_;
    vote.batch_size = d.batch_;
    vote.prune_fraction = d.prune_fraction_;
    vote.quantize_bits = d.quantize_bits_;
    vote.prune_rule = d.has(action::prune) && pending_prune_rule_ != no_rule ? pending_prune_rule_ : decision_vote::no_rule;
    vote.quantize_rule =
        d.has(action::quantize) && pending_quantize_rule_ != no_rule ? pending_quantize_rule_ : decision_vote::no_rule;
    vote.repeats_stop = d.repeats_stop_;
    vote.reason = d.reason_;
    agreement_(vote, where);
    const auto bad = [](const std::string& field, const std::string& value) {
      throw std::invalid_argument("frugal::controller: the agreed decision's " + field + " is " + value);
    };
    if (vote.stops() && vote.cause == frugal::stop_reason::none) bad("cause", "none for a stop");
    if (vote.has(action::prune) && !(vote.prune_fraction > 0 && vote.prune_fraction <= 1))
      bad("prune_fraction", detail::units_impl::shortest(vote.prune_fraction) + ", not in (0, 1]");
    if (vote.has(action::quantize) && (vote.quantize_bits < 1 || vote.quantize_bits > frugal::quantize_rule::max_bits))
      bad("quantize_bits",
          std::to_string(vote.quantize_bits) + ", not in [1, " + std::to_string(frugal::quantize_rule::max_bits) + "]");
    if (vote.prune_rule != decision_vote::no_rule && vote.prune_rule >= options_.prune_rules_.size())
      bad("prune_rule", std::to_string(vote.prune_rule) + " (the controller has " +
                            std::to_string(options_.prune_rules_.size()) + " prune rules)");
    if (vote.quantize_rule != decision_vote::no_rule && vote.quantize_rule >= options_.quantize_rules_.size())
      bad("quantize_rule", std::to_string(vote.quantize_rule) + " (the controller has " +
                               std::to_string(options_.quantize_rules_.size()) + " quantize rules)");
    if (manages_batch() && !vote.stops() && (vote.batch_size < options_.batch_min_ || vote.batch_size > options_.batch_max_))
      bad("batch_size", std::to_string(vote.batch_size) + ", outside batch_limits [" +
                            std::to_string(options_.batch_min_) + ", " + std::to_string(options_.batch_max_) + "]");
    // A stop takes nothing else with it but an epoch's end; the batch actions follow the batch
    // size agreed, whatever flags came with it.
    constexpr auto bit = [](action a) { return static_cast<std::uint8_t>(a); };
    if (vote.stops()) vote.actions &= static_cast<std::uint8_t>(bit(action::stop) | bit(action::cancelled) | bit(action::end_epoch));
    vote.actions &= static_cast<std::uint8_t>(~(bit(action::shrink_batch) | bit(action::grow_batch)));
    if (manages_batch() && !vote.stops() && vote.batch_size != batch_)
      vote.actions |= vote.batch_size < batch_ ? bit(action::shrink_batch) : bit(action::grow_batch);
    d.actions_ = vote.actions;
    d.cause_ = vote.stops() ? vote.cause : frugal::stop_reason::none;
    if (manages_batch()) d.batch_ = vote.stops() ? batch_ : vote.batch_size;
    d.prune_fraction_ = vote.has(action::prune) ? vote.prune_fraction : 0;
    d.quantize_bits_ = vote.has(action::quantize) ? vote.quantize_bits : 0;
    d.reason_ = std::move(vote.reason);
    pending_prune_rule_ = vote.has(action::prune) ? vote.prune_rule : no_rule;
    pending_quantize_rule_ = vote.has(action::quantize) ? vote.quantize_rule : no_rule;
  }

  void run_rule_actions(const decision& d) {
    if (pending_prune_rule_ != no_rule && d.has(action::prune)) {
      const prune_rule& rule = options_.prune_rules_[pending_prune_rule_];
      start_measuring(prune_state_[pending_prune_rule_], rule.watched(), rule.cooldown_steps(),
                      compression_record{steps_, epochs_, action::prune, rule.name(), d.prune_fraction(), 0, d.reason_, {}, {}});
      if (rule.action_) guarded(rule.name(), [&] { rule.action_(d.prune_fraction()); });
    }
    if (pending_quantize_rule_ != no_rule && d.has(action::quantize)) {
      const quantize_rule& rule = options_.quantize_rules_[pending_quantize_rule_];
      quantize_bits_[pending_quantize_rule_] = d.quantize_bits();
      start_measuring(quantize_state_[pending_quantize_rule_], rule.watched(), rule.cooldown_steps(),
                      compression_record{steps_, epochs_, action::quantize, rule.name(), 0, d.quantize_bits(), d.reason_, {}, {}});
      if (rule.action_) guarded(rule.name(), [&] { rule.action_(d.quantize_bits()); });
    }
    pending_prune_rule_ = no_rule;
    pending_quantize_rule_ = no_rule;
  }

  /// An action was taken: note each watched cost per sample before it (the median of the recent
  /// steps at the batch that ran them), then collect the steps of the rule's cooldown after it.
  void start_measuring(rule_state& st, const std::vector<std::string>& watched, std::size_t cooldown,
                       compression_record record) {
    st.fired = steps_;
    st.measuring = true;
    st.measure_until = steps_ + std::max<std::size_t>(1, cooldown);
    st.resources.clear();
    st.per_sample.clear();
    const std::size_t b = last_batch_;
    for (std::size_t i = 0; i < tracked_.size(); ++i) {
      const tracked& t = tracked_[i];
      if (!watches(watched, t) || !std::isfinite(t.limit) || t.step.empty()) continue;
      st.resources.push_back(i);
      st.per_sample.emplace_back();
      st.per_sample.back().reserve(std::min<std::size_t>(st.measure_until - steps_, 1024));
      record.effects.push_back(compression_record::effect{t.name, t.step.median(b) / static_cast<double>(std::max<std::size_t>(b, 1)), {}});
    }
    st.record = history_.compressions.size();
    history_.compressions.push_back(std::move(record));
  }

  void measure_effects(std::size_t batch) {
    for (std::size_t r = 0; r < prune_state_.size(); ++r) {
      const prune_rule& rule = options_.prune_rules_[r];
      measure_effect(prune_state_[r], batch, rule.name(), rule.scales_epoch_ends());
    }
    for (std::size_t r = 0; r < quantize_state_.size(); ++r) {
      const quantize_rule& rule = options_.quantize_rules_[r];
      measure_effect(quantize_state_[r], batch, rule.name(), rule.scales_epoch_ends());
    }
  }

  void measure_effect(rule_state& st, std::size_t batch, const std::string& rule, bool scale_epoch_ends) {
    if (!st.measuring) return;
    const double samples = static_cast<double>(std::max<std::size_t>(batch, 1));
    for (std::size_t k = 0; k < st.resources.size(); ++k)
      if (st.resources[k] < tracked_.size() && st.per_sample[k].size() < 1024)
        st.per_sample[k].push_back(tracked_[st.resources[k]].last_cost / samples);
    if (steps_ < st.measure_until) return;
    st.measuring = false;
    compression_record& rec = history_.compressions[st.record];
    bool lowered = false;
    std::string words;
    for (std::size_t k = 0; k < st.resources.size(); ++k) {
      std::vector<double>& v = st.per_sample[k];
      if (v.empty()) continue;
      // On pointers: the same std::nth_element as forecast.hpp's (one instantiation, not two).
      std::nth_element(v.data(), v.data() + v.size() / 2, v.data() + v.size());
      const double after = v[v.size() / 2];
      compression_record::effect& e = rec.effects[k];
      e.after = after;
      if (after < 0.99 * e.before) lowered = true;
      // The steps and epoch ends measured before the action cost what the model cost then: the
      // measured factor applies to them (an evaluation runs the same layers as a step, so it
      // scales as the step's cost per sample did). Without this the old, dearer costs stay the
      // forecast (their largest) for a whole window, and their drop reads as spread: a pruned
      // run kept +11 % headroom on FLOPs, planned with the old steps, and stopped ~5 steps
      // short. Times' epoch ends are also kept in step-rate units (end_in_step_rate), which
      // follow the scaled steps. A rule whose action leaves evaluations as they were
      // (scales_epoch_ends(false)) scales the steps alone.
      if (e.before > 0 && after > 0) {
        tracked& t = tracked_[st.resources[k]];
        t.step.scale_all_but_last(steps_ - rec.step_index, after / e.before);
        const std::uint64_t since = epochs_ - rec.epoch_index;  // epoch ends after the action
        if (scale_epoch_ends) {
          t.epoch_end.scale_before(t.epoch_end.count() >= since ? t.epoch_end.count() - since : 0, after / e.before);
        } else {  // a time's epoch ends in step-rate units would follow the cheaper steps: held back
          const std::size_t n = t.end_in_step_rate.count();
          t.end_in_step_rate.scale_before(n >= since ? n - since : 0, e.before / after);
        }
      }
      words += (words.empty() ? "" : ", ") + e.resource + " per sample " +
               (e.before > 0 ? detail::units_impl::sig3(after / e.before) + "x" : std::string("from 0"));
    }
    rec.lowered = lowered;
    if (lowered || rec.effects.empty()) return;
    st.disabled = true;
    const std::string what = rec.kind == action::prune ? "prune " + detail::units_impl::sig3(rec.fraction * 100) + " %"
                                                       : "quantize to " + std::to_string(rec.bits) + " bits";
    history_.add(decision_record{steps_, epochs_, "effect", "rule_disabled", frugal::stop_reason::none,
                                 what + " at step " + std::to_string(rec.step_index) + " did not lower what rule '" +
                                     rule + "' watches (" + words + "): the rule fires no more"});
  }

  template <class F>
  void guarded(const std::string& name, F&& f) {
    try {
      f();
    } catch (const std::exception& ex) {
      callbacks_.record(name, event_kind::decision, ex.what(), steps_);
    } catch (...) {
      callbacks_.record(name, event_kind::decision, "unknown exception", steps_);
    }
  }

  static constexpr std::size_t no_rule = std::numeric_limits<std::size_t>::max();

  budget* run_;
  controller_options options_;
  std::vector<tracked> tracked_;
  callback_list callbacks_;
  controller_history history_;

  std::uint64_t steps_ = 0;
  std::uint64_t epochs_ = 0;
  std::uint64_t steps_in_epoch_ = 0;
  std::uint64_t samples_total_ = 0;
  std::uint64_t samples_in_epoch_ = 0;
  bool samples_known_ = true;
  std::uint64_t learned_steps_per_epoch_ = 0;
  std::uint64_t learned_epoch_samples_ = 0;
  double fraction_used_ = 0;
  std::size_t last_batch_ = 0;
  std::size_t previous_batch_ = 0;
  checkpoint last_checkpoint_ = checkpoint::step;
  bool epoch_end_open_ = false;  ///< an epoch ended and no step since (charge_to_epoch_end)

  std::size_t batch_ = 0;
  std::size_t accumulation_ = 1;
  std::uint64_t steps_since_batch_change_ = 0;
  std::uint64_t batch_changes_ = 0;
  bool epoch_ending_ = false;

  /// The stop. Flags are atomic (should_stop() and request_stop() come from any thread); the
  /// words are under stop_mutex_.
  std::atomic<bool> stopped_{false};
  std::atomic<frugal::stop_reason> stop_reason_{frugal::stop_reason::none};
  std::atomic<bool> stop_requested_{false};
  mutable std::mutex stop_mutex_;
  std::string stop_message_;
  std::string requested_message_;
  frugal::stop_reason requested_cause_ = frugal::stop_reason::user;  ///< written before stop_requested_ (release)
  std::vector<watched_flag> flags_;
  bool in_checkpoint_ = false;

  /// Memory: the heap between checkpoints (a step's peak), the probe, the sized stages.
  heap_watch window_;
  bool rss_readable_ = false;   ///< /proc/self/statm could be read when the controller was made
  bool cost_by_time_ = false;  ///< the price charges wall or CPU hours: cost runs with time (is_time)
  double heap_resolution_ = 0;  ///< heap_resolution_bytes() at the last checkpoint
  bool memory_probing_ = false;
  std::vector<sized_stage> stages_;
  heap_watch chunk_watch_;
  std::optional<std::size_t> open_chunk_;  ///< index in stages_ of the chunk being measured
  std::vector<double> chunk_starts_;       ///< its levels when it started (level_starts)

  std::vector<int> quantize_bits_;
  std::vector<rule_state> prune_state_;
  std::vector<rule_state> quantize_state_;
  std::size_t pending_prune_rule_ = no_rule;
  std::size_t pending_quantize_rule_ = no_rule;
  std::function<void(decision_vote&, checkpoint)> agreement_;  ///< agree_with; empty: decisions are local
  std::size_t horizon_ = 1;  ///< set_decision_horizon: the steps a decision holds for
};

}  // namespace frugal
