// The controller's invariants over many seeded random scenarios on the manual clock (nothing
// sleeps). Each scenario draws, from its seed alone (integer nanoseconds, a std::mt19937 and no
// std distribution, so a seed means the same run everywhere): a step's wall cost and its jitter,
// a warm-up outlier, a step that gets slower for good, FLOPs and samples per step, which of wall,
// FLOPs and samples are limited (so the run stops after about 20-200 steps), epochs with an
// evaluation of random cost, a plan with a pruning rule whose action makes steps cheaper, a
// synthetic peak_bytes level with the batch knob, and a stop request from a hook or a thread.
// The loop is the README's: check should_stop() before every step, break out of the epoch on
// d.ends_epoch(), evaluate, end_epoch. After a stop it evaluates only in some scenarios, and
// only while nothing is used up (an evaluation the controller did not allow is the loop's
// business); a stopped run then checks in once more (a closing end_step), which must repeat the
// stop -- except for a racing thread's request that landed after the loop's last checkpoint,
// which no checkpoint had decided yet.
//
// Invariants, checked for every scenario (a failure prints the seed and the scenario):
//  1. no step starts with a limited consumable at or over its limit, and after the run each is
//     past its limit by less than the cost of the last unit of work that ran;
//  2. FLOPs and samples (exact per batch size here) never go past their limits at all;
//  3. a stop request (from a step_end, forecast_overrun or decision hook, or another thread) is
//     never lost: should_stop() from then on, the checkpoint stops (stop_reason::user unless a
//     stop was in force), and no further step runs;
//  4. a stop is one event: stop_event fires once, the first stopping decision is the only one
//     that is not repeats_stop(), every later checkpoint repeats it;
//  5. schedules follow consumables only: linear_decay never rises, and fraction_used() (the
//     controller's and the budget's) is the largest used / limit over the limited consumables,
//     whatever the synthetic peak_bytes level does;
//  6. a warm-up outlier drives no prune when the plan fits at the steady cost.
//
// FRUGAL_SCENARIO_SEEDS=N runs N seeds per family (default 300); FRUGAL_SCENARIO_SEED=S replays
// one seed (the number a failure prints).
#include <frugal/controller.hpp>
#include <frugal/schedule.hpp>
#include <frugal/scope.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using ns = std::chrono::nanoseconds;

// Integer draws from a std::mt19937 without std distributions (their algorithms differ between
// standard libraries): the same seed is the same scenario on every platform.
class draw {
 public:
  explicit draw(unsigned seed) : g_(seed) {}
  // Uniform in [lo, hi] (a modulo bias of < 2^-40 for the spans used here).
  std::int64_t between(std::int64_t lo, std::int64_t hi) {
    const std::uint64_t high = g_();
    const std::uint64_t low = g_();
    const std::uint64_t x = (high << 32) | low;
    const std::uint64_t span = static_cast<std::uint64_t>(hi - lo) + 1;
    return lo + static_cast<std::int64_t>(x % span);
  }
  bool chance(int percent) { return between(0, 99) < percent; }
  template <class T>
  T pick(std::initializer_list<T> v) {
    return *(v.begin() + between(0, static_cast<std::int64_t>(v.size()) - 1));
  }

 private:
  std::mt19937 g_;
};

enum class request_source { none, step_end_hook, overrun_hook, decision_hook, joined_thread, racing_thread };

const char* name_of(request_source s) {
  switch (s) {
    case request_source::none: return "none";
    case request_source::step_end_hook: return "step_end hook";
    case request_source::overrun_hook: return "forecast_overrun hook";
    case request_source::decision_hook: return "decision hook";
    case request_source::joined_thread: return "thread (joined before end_step)";
    case request_source::racing_thread: return "thread (racing the loop)";
  }
  return "?";
}

struct scenario {
  unsigned seed = 0;
  const char* family = "";

  // A step's wall cost at batch n: base * (0.3 + 0.7 n / batch) (a fixed part and a per-sample
  // part), times 1 +- jitter, times warmup_k for the first step, slow_pm / 1000 from step
  // slow_from on, times what pruning left.
  std::int64_t base_ns = 0;
  int jitter_pm = 0;
  int warmup_k = 0;  // 0: no warm-up outlier
  std::uint64_t slow_from = 0;  // 0: never slower
  int slow_pm = 1000;
  std::uint64_t flops_per_sample = 0;  // 0: no FLOPs

  std::size_t batch = 1;  // samples per step (the knob's initial batch)
  bool report_samples = true;  // step{}.samples(n)
  bool knob = false;
  std::size_t batch_min = 0, batch_max = 0;
  bool peak = false;  // synthetic step peaks: mem_base + mem_per_sample * n
  double mem_base = 0, mem_per_sample = 0, peak_limit = 0;

  std::int64_t wall_limit_ns = 0;  // 0: unlimited
  double flops_limit = 0;
  double samples_limit = 0;
  int margin_pm = -1;  // -1: measured headroom

  std::size_t steps_per_epoch = 0;  // 0: no epochs; with the knob, epochs of steps_per_epoch * batch samples
  bool give_epoch_samples = false;
  std::int64_t eval_lo_ns = 0, eval_hi_ns = 0;
  bool eval_after_stop = false;  // evaluate after a stop too (when nothing is used up), as the README's loop does

  std::size_t planned_steps = 0;  // 0: no plan; else the loop ends after it
  bool prune = false;
  std::size_t prune_warmup = 10, prune_cooldown = 16;
  bool plan_fits = false;  // invariant 6: no prune may fire

  request_source request = request_source::none;
  std::uint64_t request_at = 0;

  [[nodiscard]] std::int64_t nominal_ns(std::size_t n) const {
    return base_ns * 3 / 10 + base_ns * 7 / 10 * static_cast<std::int64_t>(n) / static_cast<std::int64_t>(batch);
  }
  [[nodiscard]] bool epochs() const { return steps_per_epoch > 0; }

  [[nodiscard]] std::string describe() const {
    std::ostringstream o;
    o << "seed " << seed << " [" << family << "]: step " << base_ns << " ns +-" << jitter_pm / 10.0 << " %";
    if (warmup_k) o << ", warm-up x" << warmup_k;
    if (slow_from) o << ", x" << slow_pm / 1000.0 << " from step " << slow_from;
    if (flops_per_sample) o << ", " << flops_per_sample << " FLOPs/sample";
    o << ", batch " << batch;
    if (knob) o << " (knob [" << batch_min << ", " << batch_max << "])";
    if (!report_samples) o << " (samples not reported)";
    if (peak)
      o << ", peak " << mem_base << " + " << mem_per_sample << "/sample under " << peak_limit;
    o << "; limits:";
    if (wall_limit_ns) o << " wall " << wall_limit_ns << " ns";
    if (flops_limit > 0) o << " flops " << flops_limit;
    if (samples_limit > 0) o << " samples " << samples_limit;
    if (margin_pm >= 0) o << "; margin " << margin_pm / 1000.0;
    if (epochs())
      o << "; epochs of " << steps_per_epoch << (knob ? " batches" : " steps")
        << (knob ? (give_epoch_samples ? " (epoch_samples given)" : " (learnt)") : "") << ", eval " << eval_lo_ns
        << "-" << eval_hi_ns << " ns" << (eval_after_stop ? ", also after a stop" : "");
    if (planned_steps)
      o << "; planned_steps " << planned_steps << (prune ? ", prune_rule warmup " : "")
        << (prune ? std::to_string(prune_warmup) + " cooldown " + std::to_string(prune_cooldown) : "")
        << (plan_fits ? " (the plan fits at the steady cost)" : "");
    if (request != request_source::none) o << "; request_stop from " << name_of(request) << " at step " << request_at;
    return o.str();
  }
};

// --- scenario families ---

// Everything at random. `force_request`: always a stop request (sources in turn).
scenario make_mixed(unsigned seed, const char* family, bool force_request) {
  draw r(seed);
  scenario s;
  s.seed = seed;
  s.family = family;
  s.base_ns = r.between(1'000'000, 1'000'000'000);
  s.jitter_pm = r.chance(20) ? 0 : static_cast<int>(r.between(1, 300));
  s.warmup_k = r.chance(35) ? static_cast<int>(r.between(3, 10)) : 0;
  if (r.chance(30)) {
    s.slow_from = static_cast<std::uint64_t>(r.between(2, 150));
    s.slow_pm = static_cast<int>(r.between(1500, 3000));
  }
  s.flops_per_sample = r.chance(60) ? static_cast<std::uint64_t>(r.between(1'000, 10'000'000)) : 0;

  s.knob = r.chance(35);
  std::size_t steady_batch = 0;  // the batch most steps are expected to run at
  if (s.knob) {
    s.batch = r.pick<std::size_t>({16, 32, 64});
    s.batch_min = std::min(s.batch, r.pick<std::size_t>({1, 2, 4, 8}));
    s.batch_max = r.chance(50) ? s.batch : 2 * s.batch;
    s.peak = r.chance(60);
    steady_batch = s.batch;
    if (s.peak) {
      s.mem_base = static_cast<double>(r.between(1 << 20, 64 << 20));
      const std::int64_t per = r.between(16 << 10, 1 << 20);
      s.mem_per_sample = static_cast<double>(per);
      steady_batch = static_cast<std::size_t>(r.between(static_cast<std::int64_t>(s.batch_min), static_cast<std::int64_t>(s.batch)));
      s.peak_limit = s.mem_base + s.mem_per_sample * static_cast<double>(steady_batch) +
                     static_cast<double>(r.between(0, per - 1));
    }
  } else {
    s.batch = static_cast<std::size_t>(r.between(1, 256));
    s.report_samples = r.chance(70);
    steady_batch = s.batch;
  }

  if (r.chance(40)) {
    s.steps_per_epoch = static_cast<std::size_t>(r.between(3, 40));
    s.give_epoch_samples = s.knob && r.chance(50);
    s.eval_lo_ns = s.base_ns * r.between(300, 5000) / 1000;
    s.eval_hi_ns = s.eval_lo_ns * r.between(1000, 1500) / 1000;
    s.eval_after_stop = r.chance(50);
  }

  // Which consumables are limited (at least one), each so it alone would stop the run after
  // about 20-200 steps at the steady batch.
  int mask = 0;
  while (mask == 0) {
    mask = 0;
    if (r.chance(70)) mask |= 1;
    if (s.flops_per_sample && r.chance(50)) mask |= 2;
    if (r.chance(45)) mask |= 4;
  }
  std::int64_t target_steps = 1'000'000;
  if (mask & 1) {
    const std::int64_t t = r.between(20, 200);
    target_steps = std::min(target_steps, t);
    std::int64_t limit = t * s.nominal_ns(steady_batch) + r.between(0, s.base_ns);
    if (s.warmup_k) limit += (s.warmup_k - 1) * s.nominal_ns(steady_batch);
    if (s.epochs()) limit += t / static_cast<std::int64_t>(s.steps_per_epoch) * (s.eval_lo_ns + s.eval_hi_ns) / 2;
    s.wall_limit_ns = limit;
  }
  if (mask & 2) {
    const std::int64_t t = r.between(20, 200);
    target_steps = std::min(target_steps, t);
    // The first step runs at the initial batch, before any forecast: it must fit, with room.
    const std::int64_t per = static_cast<std::int64_t>(s.flops_per_sample * steady_batch);
    const std::int64_t first = 3 * static_cast<std::int64_t>(s.flops_per_sample * s.batch);
    s.flops_limit = static_cast<double>(std::max(t * per, first) + (r.chance(33) ? 0 : r.between(1, per - 1)));
  }
  if (mask & 4) {
    const std::int64_t t = r.between(20, 200);
    target_steps = std::min(target_steps, t);
    const std::int64_t per = static_cast<std::int64_t>(steady_batch);
    const std::int64_t first = 3 * static_cast<std::int64_t>(s.batch);
    s.samples_limit =
        static_cast<double>(std::max(t * per, first) + (r.chance(33) || per == 1 ? 0 : r.between(1, per - 1)));
  }
  if (r.chance(25)) s.margin_pm = static_cast<int>(r.between(0, 100));

  if (s.wall_limit_ns && r.chance(25)) {
    // A plan that does not fit: the rule prunes, and its action makes steps cheaper.
    s.planned_steps = static_cast<std::size_t>(target_steps * r.between(1300, 3000) / 1000);
    s.prune = true;
    s.prune_warmup = r.chance(50) ? 10 : static_cast<std::size_t>(r.between(2, 12));
    s.prune_cooldown = r.chance(50) ? 16 : static_cast<std::size_t>(r.between(1, 16));
  }

  if (force_request || r.chance(20)) {
    static const request_source sources[] = {request_source::step_end_hook, request_source::overrun_hook,
                                             request_source::decision_hook, request_source::joined_thread,
                                             request_source::racing_thread};
    s.request = force_request ? sources[seed % 5] : sources[r.between(0, 4)];
    // A racing request may land after the loop's last checkpoint: only where the run ends by a stop.
    if (s.request == request_source::racing_thread && s.planned_steps) s.request = request_source::joined_thread;
    s.request_at = static_cast<std::uint64_t>(r.between(1, target_steps));
  }
  return s;
}

// Invariant 6: a warm-up outlier k x the steady step, then steps of base +- jitter (<= 20 %, so
// the outlier is more than twice every other step), under a wall limit that fits the plan at
// the largest steady step plus some headroom: no prune may fire, whatever the rule's warm-up.
scenario make_warmup_plan_fits(unsigned seed) {
  draw r(seed);
  scenario s;
  s.seed = seed;
  s.family = "warm-up outlier, plan fits";
  s.base_ns = r.between(1'000'000, 1'000'000'000);
  s.jitter_pm = r.chance(25) ? 0 : static_cast<int>(r.between(1, 200));
  s.warmup_k = static_cast<int>(r.between(3, 10));
  s.batch = static_cast<std::size_t>(r.between(1, 256));
  s.report_samples = r.chance(70);
  s.flops_per_sample = r.chance(50) ? static_cast<std::uint64_t>(r.between(1'000, 10'000'000)) : 0;
  s.planned_steps = static_cast<std::size_t>(r.between(20, 200));
  s.prune = true;
  s.plan_fits = true;
  s.prune_warmup = r.chance(40) ? 10 : static_cast<std::size_t>(r.between(2, 12));
  s.prune_cooldown = r.chance(50) ? 16 : static_cast<std::size_t>(r.between(1, 16));
  const std::int64_t steady = s.nominal_ns(s.batch);
  const std::int64_t largest = steady * (1000 + s.jitter_pm) / 1000 + 1;
  const std::int64_t extra_pm = r.between(0, 300);
  const auto p = static_cast<std::int64_t>(s.planned_steps);
  s.wall_limit_ns = s.warmup_k * steady + (p - 1) * largest * (1000 + extra_pm) / 1000 + 1;
  if (s.flops_per_sample && r.chance(50)) {
    const auto per = static_cast<std::int64_t>(s.flops_per_sample * s.batch);
    s.flops_limit = static_cast<double>(p * per + r.between(0, per));
  }
  if (r.chance(40)) {
    const auto per = static_cast<std::int64_t>(s.batch);
    s.samples_limit = static_cast<double>(p * per + r.between(0, per));
  }
  if (r.chance(20)) s.margin_pm = static_cast<int>(r.between(0, 50));
  return s;
}

// --- what a family saw, for the summary line ---

struct family_stats {
  int runs = 0, stopped = 0, overshooting = 0, prunes = 0, requests = 0, shrinks = 0, epochs_ended_early = 0;
  int first_stop_after_loop = 0;  // a racing request decided only at the closing checkpoint
  std::map<std::string, int> reasons;
};

// --- one run ---

struct observed_decision {
  bool seen = false;
  bool stops = false;
  frugal::stop_reason cause = frugal::stop_reason::none;
};

// Runs one scenario with the README's loop and checks every invariant; returns at the first
// fatal failure (with the scenario in the message).
void run_scenario(const scenario& sc, family_stats& stats) {
  const std::string ctx = sc.describe();
  SCOPED_TRACE(ctx);
  ++stats.runs;

  frugal::manual_clock clock;
  frugal::limits lim;
  if (sc.wall_limit_ns) lim.wall(ns{sc.wall_limit_ns});
  if (sc.flops_limit > 0) lim.flops(sc.flops_limit);
  if (sc.samples_limit > 0) lim.units("samples", sc.samples_limit);
  if (sc.peak) lim.peak_bytes(sc.peak_limit);
  frugal::budget run{"train", lim};
  const double wall_limit_s = sc.wall_limit_ns ? run.limit(frugal::resource::wall) : 0;

  double prune_factor = 1;  // what the prune actions left of a step's cost
  int prune_actions = 0;
  frugal::controller_options o;
  if (sc.margin_pm >= 0) o.margin(sc.margin_pm / 1000.0);
  if (sc.knob) o.batch_size(sc.batch).batch_limits(sc.batch_min, sc.batch_max);
  if (sc.epochs()) {
    if (!sc.knob) o.steps_per_epoch(sc.steps_per_epoch);
    if (sc.knob && sc.give_epoch_samples) o.epoch_samples(sc.steps_per_epoch * sc.batch);
  }
  if (sc.planned_steps) o.planned_steps(sc.planned_steps);
  if (sc.prune)
    o.prune(frugal::prune_rule{}
                .warmup_steps(sc.prune_warmup)
                .cooldown_steps(sc.prune_cooldown)
                .action([&](double fraction) {
                  ++prune_actions;
                  prune_factor *= 1 - fraction;
                }));
  frugal::controller ctl{run, o};
  ASSERT_FALSE(ctl.should_stop()) << "seed " << sc.seed << ": stopped before the first step";
  const frugal::linear_decay lr{0.1, run};

  // Invariant 3's bookkeeping: who asked, when, and whether the checkpoint that followed stopped.
  struct request_state {
    bool made = false;     // a hook or the joined thread asked
    bool checked = false;  // the checkpoint it belongs to was checked
    std::uint64_t at_step = 0;
  } req;
  bool loop_active = true;  // hooks ask only during the loop, not at the closing checkpoint
  observed_decision seen;   // the controller's own decision at the current checkpoint
  int stop_events = 0;
  std::optional<frugal::stop_event> stop_seen;
  std::string stop_message;

  // Registered first: sees each checkpoint's decision before any other hook amends it.
  ctl.add_callback("observer", [&](frugal::decision_event& e) {
    seen.seen = true;
    seen.stops = e.decision.stops();
    seen.cause = e.decision.cause();
  });
  ctl.add_callback("checkpoint on stop", [&](const frugal::stop_event& e) {
    ++stop_events;
    stop_seen = e;
    stop_message = std::string(e.message);
  });
  auto ask = [&](const char* who) {
    ctl.request_stop(who);
    req.made = true;
    req.at_step = ctl.steps();
  };
  switch (sc.request) {
    case request_source::step_end_hook:
      ctl.add_callback("request", [&](const frugal::step_end_event& e) {
        if (loop_active && !req.made && e.step_index == sc.request_at) ask("step_end hook");
      });
      break;
    case request_source::overrun_hook:
      ctl.add_callback("request", [&](const frugal::forecast_overrun_event&) {
        if (loop_active && !req.made && ctl.steps() >= sc.request_at) ask("forecast_overrun hook");
      });
      break;
    case request_source::decision_hook:
      ctl.add_callback("request", [&](frugal::decision_event& e) {
        if (loop_active && !req.made && e.where == frugal::checkpoint::step && e.step_index == sc.request_at)
          ask("decision hook");
      });
      break;
    default: break;
  }

  // The racing thread asks once the loop has run request_at steps; the loop does not wait for it.
  std::atomic<std::uint64_t> step_counter{0};
  std::atomic<bool> over{false};
  std::atomic<bool> racing_done{false};
  struct joiner {
    std::atomic<bool>& over;
    std::thread t;
    ~joiner() {
      over.store(true);
      if (t.joinable()) t.join();
    }
  } racer{over, {}};
  if (sc.request == request_source::racing_thread)
    racer.t = std::thread([&] {
      while (step_counter.load() < sc.request_at && !over.load()) std::this_thread::yield();
      if (over.load()) return;
      ctl.request_stop("racing thread");
      racing_done.store(true);
    });

  // The run as the test counts it, in integer units.
  std::int64_t wall_ns = 0;
  std::uint64_t flops = 0;
  std::uint64_t samples = 0;
  struct unit_cost {
    std::int64_t wall_ns = 0;
    std::uint64_t flops = 0;
    std::uint64_t samples = 0;
    bool evaluation = false;
  } last;
  std::uint64_t steps_run = 0;
  int prune_decisions = 0;
  bool first_stop_seen = false;
  frugal::stop_reason first_stop_cause = frugal::stop_reason::none;
  std::uint64_t first_stop_steps = 0;
  double prev_lr = lr();
  bool capped = false;

  auto below_limits = [&]() -> testing::AssertionResult {
    if (sc.wall_limit_ns && !(wall_ns < sc.wall_limit_ns))
      return testing::AssertionFailure() << "wall " << wall_ns << " ns of " << sc.wall_limit_ns << " ns";
    if (sc.flops_limit > 0 && !(static_cast<double>(flops) < sc.flops_limit))
      return testing::AssertionFailure() << "flops " << flops << " of " << sc.flops_limit;
    if (sc.samples_limit > 0 && !(static_cast<double>(samples) < sc.samples_limit))
      return testing::AssertionFailure() << "samples " << samples << " of " << sc.samples_limit;
    return testing::AssertionSuccess();
  };
  // The largest used / limit over the limited consumables, by hand (levels left out).
  auto fraction_by_hand = [&] {
    double f = 0;
    if (sc.wall_limit_ns) f = std::max(f, (static_cast<double>(wall_ns) / 1e9) / wall_limit_s);
    if (sc.flops_limit > 0) f = std::max(f, static_cast<double>(flops) / sc.flops_limit);
    if (sc.samples_limit > 0) f = std::max(f, static_cast<double>(samples) / sc.samples_limit);
    return f;
  };

  // Everything that must hold after a checkpoint returned `d`; `racing_before`: the racing
  // thread's request had completed before the checkpoint began.
  auto after_checkpoint = [&](const frugal::decision& d, bool racing_before, const char* where) -> testing::AssertionResult {
    std::ostringstream at;
    at << where << " after step " << steps_run << ": ";
    if (!seen.seen) return testing::AssertionFailure() << at.str() << "the decision hook did not run";
    seen.seen = false;
    // 4. one stop event; every later checkpoint repeats the stop.
    if (!first_stop_seen) {
      if (d.stops()) {
        first_stop_seen = true;
        first_stop_cause = d.cause();
        first_stop_steps = ctl.steps();
        if (d.repeats_stop()) return testing::AssertionFailure() << at.str() << "the first stop says it repeats: " << d.reason();
        if (stop_events != 1)
          return testing::AssertionFailure() << at.str() << "the first stop fired " << stop_events << " stop events";
        if (stop_seen->reason != d.cause() || stop_seen->step_index != ctl.steps())
          return testing::AssertionFailure() << at.str() << "stop_event (" << frugal::to_string(stop_seen->reason)
                                             << " at step " << stop_seen->step_index << ") is not the decision ("
                                             << frugal::to_string(d.cause()) << " at step " << ctl.steps() << ")";
        ++stats.reasons[std::string(frugal::to_string(d.cause()))];
      } else if (stop_events != 0) {
        return testing::AssertionFailure() << at.str() << stop_events << " stop events without a stopping decision";
      }
    } else {
      if (!d.stops() || !d.repeats_stop())
        return testing::AssertionFailure() << at.str() << "a checkpoint after the stop did not repeat it: "
                                           << d.to_string() << " (repeats_stop " << d.repeats_stop() << ")";
      if (d.cause() != first_stop_cause)
        return testing::AssertionFailure() << at.str() << "the repeated stop changed its cause to "
                                           << frugal::to_string(d.cause());
      if (stop_events != 1) return testing::AssertionFailure() << at.str() << stop_events << " stop events";
    }
    // 3. a request made before or during this checkpoint stops it.
    if (!req.checked && (req.made || racing_before)) {
      req.checked = true;
      ++stats.requests;
      const frugal::stop_reason expected = seen.stops ? seen.cause : frugal::stop_reason::user;
      if (!d.stops())
        return testing::AssertionFailure() << at.str() << "the stop requested (" << name_of(sc.request)
                                           << ") was lost: " << d.to_string();
      if (d.cause() != expected)
        return testing::AssertionFailure() << at.str() << "the requested stop's cause is " << frugal::to_string(d.cause())
                                           << ", expected " << frugal::to_string(expected);
    }
    if ((req.made || racing_done.load()) && !ctl.should_stop())
      return testing::AssertionFailure() << at.str() << "should_stop() is false after request_stop";
    if (first_stop_seen && !ctl.should_stop())
      return testing::AssertionFailure() << at.str() << "should_stop() is false after a stop";
    // 5. schedules follow consumables only, and never rise.
    if (run.used(frugal::resource::flops) != static_cast<double>(flops) ||
        run.used("samples") != static_cast<double>(samples) ||
        std::abs(run.used(frugal::resource::wall) - static_cast<double>(wall_ns) / 1e9) > 1e-9)
      return testing::AssertionFailure() << at.str() << "the budget's use differs from the test's tally";
    const double f = fraction_by_hand();
    if (std::abs(ctl.fraction_used() - f) > 1e-12 * std::max(1.0, f))
      return testing::AssertionFailure() << at.str() << "controller fraction_used() " << ctl.fraction_used()
                                         << ", largest used/limit over the consumables " << f;
    if (std::abs(run.fraction_used() - f) > 1e-12 * std::max(1.0, f))
      return testing::AssertionFailure() << at.str() << "budget fraction_used() " << run.fraction_used() << ", expected " << f;
    const double lr_now = lr();
    if (lr_now > prev_lr)
      return testing::AssertionFailure() << at.str() << "linear_decay rose from " << prev_lr << " to " << lr_now;
    if (std::abs(lr_now - 0.1 * (1 - std::min(1.0, f))) > 1e-12)
      return testing::AssertionFailure() << at.str() << "linear_decay " << lr_now << " at fraction " << f;
    prev_lr = lr_now;
    if (sc.knob && (ctl.batch_size() < sc.batch_min || ctl.batch_size() > sc.batch_max))
      return testing::AssertionFailure() << at.str() << "batch " << ctl.batch_size() << " outside its limits";
    if (d.has(frugal::action::prune)) ++prune_decisions;
    if (d.has(frugal::action::shrink_batch)) ++stats.shrinks;
    if (d.has(frugal::action::end_epoch) && !d.stops()) ++stats.epochs_ended_early;
    return testing::AssertionSuccess();
  };

  const std::uint64_t guard = 20'000;
  const std::size_t epoch_samples = sc.steps_per_epoch * sc.batch;
  while (!ctl.should_stop()) {
    frugal::decision d;
    bool broke = false, natural = false;
    std::size_t in_epoch_steps = 0, in_epoch_samples = 0;
    for (;;) {
      if (racing_done.load()) {
        ASSERT_TRUE(ctl.should_stop()) << "seed " << sc.seed << ": a requested stop is not seen";
      }
      if (ctl.should_stop()) break;  // the README's while (!ctl.should_stop())
      if (sc.planned_steps && steps_run >= sc.planned_steps) {
        capped = true;
        break;
      }
      ASSERT_LT(steps_run, guard) << "seed " << sc.seed << ": the run did not stop";
      // 1. no step starts on a used-up consumable.
      ASSERT_TRUE(below_limits()) << "seed " << sc.seed << ": step " << steps_run + 1 << " started at its limit";

      const std::size_t b = sc.knob ? ctl.batch_size() : sc.batch;
      const std::size_t n = sc.knob && sc.epochs() ? std::min(b, epoch_samples - in_epoch_samples) : b;
      ++steps_run;
      draw jitter(sc.seed * 2654435761u + static_cast<unsigned>(steps_run));
      std::int64_t w = sc.nominal_ns(n);
      if (steps_run == 1 && sc.warmup_k) {
        w *= sc.warmup_k;
      } else if (sc.jitter_pm) {
        w = w * (1000 + jitter.between(-sc.jitter_pm, sc.jitter_pm)) / 1000;
      }
      if (sc.slow_from && steps_run >= sc.slow_from) w = w * sc.slow_pm / 1000;
      w = std::max<std::int64_t>(1, std::llround(static_cast<double>(w) * prune_factor));
      const auto fl = static_cast<std::uint64_t>(
          std::llround(static_cast<double>(sc.flops_per_sample * n) * prune_factor));
      {
        frugal::scope s{run, "step"};
        clock.advance(ns{w});
        if (fl) frugal::add_flops(fl);
        frugal::add_units("samples", static_cast<double>(n));
      }
      wall_ns += w;
      flops += fl;
      samples += n;
      last = unit_cost{w, fl, n, false};
      ++in_epoch_steps;
      in_epoch_samples += n;

      if (sc.request == request_source::joined_thread && steps_run == sc.request_at) {
        std::thread other([&] { ctl.request_stop("joined thread"); });
        other.join();
        req.made = true;
        req.at_step = steps_run;
        ASSERT_TRUE(ctl.should_stop()) << "seed " << sc.seed << ": request_stop from a thread not seen";
      }
      if (sc.request == request_source::racing_thread) {
        step_counter.store(steps_run);
        std::this_thread::yield();
      }

      frugal::step rec;
      rec.loss(1.0 / static_cast<double>(steps_run));
      if (sc.report_samples || sc.knob) rec.samples(n);
      if (sc.peak) rec.peak_bytes(sc.mem_base + sc.mem_per_sample * static_cast<double>(n));
      const bool racing_before = racing_done.load();
      d = ctl.end_step(rec);
      ASSERT_TRUE(after_checkpoint(d, racing_before, "end_step")) << "seed " << sc.seed;
      if (d.ends_epoch()) {
        broke = true;
        break;
      }
      if (sc.epochs() && (sc.knob ? in_epoch_samples >= epoch_samples : in_epoch_steps >= sc.steps_per_epoch)) {
        natural = true;
        break;
      }
    }
    if (capped || (!broke && !natural)) break;  // the plan is done, or should_stop() before a step

    if (sc.epochs()) {
      // The evaluation: after an epoch the controller let end (it must have room), and after a
      // stop only where nothing is used up (eval_after_stop, as the README's loop does).
      if (!d.stops()) {
        ASSERT_TRUE(below_limits()) << "seed " << sc.seed << ": an evaluation the controller allowed starts at its limit";
      }
      if (!d.stops() || (sc.eval_after_stop && below_limits())) {
        draw eval_draw(sc.seed * 40503u + static_cast<unsigned>(steps_run));
        const std::int64_t e = eval_draw.between(sc.eval_lo_ns, sc.eval_hi_ns);
        {
          frugal::scope s{run, "evaluate"};
          clock.advance(ns{e});
        }
        wall_ns += e;
        last = unit_cost{e, 0, 0, true};
      }
    }
    const bool racing_before = racing_done.load();
    const frugal::decision e = ctl.end_epoch(frugal::epoch{}.metric("val_loss", 1.0));
    ASSERT_TRUE(after_checkpoint(e, racing_before, "end_epoch")) << "seed " << sc.seed;
  }
  loop_active = false;
  over.store(true);
  if (racer.t.joinable()) racer.t.join();

  // 3. after a request: stopped, and not one step more.
  if (req.made) {
    EXPECT_TRUE(req.checked) << "seed " << sc.seed << ": the request's checkpoint was never checked";
    EXPECT_EQ(steps_run, req.at_step) << "seed " << sc.seed << ": steps ran after the stop request";
    EXPECT_TRUE(ctl.should_stop()) << "seed " << sc.seed;
  }
  const bool stopped = ctl.should_stop();
  if (!capped) {
    ASSERT_TRUE(stopped) << "seed " << sc.seed << ": the loop ended without a stop";
  }
  // 4. the closing checkpoint: the stop decided in the loop is repeated; only a racing request
  // that landed after the loop's last checkpoint is decided here, for the first time.
  if (stopped) {
    const bool decided_in_loop = first_stop_seen;
    if (sc.request != request_source::racing_thread) {
      EXPECT_TRUE(decided_in_loop) << "seed " << sc.seed << ": the loop ended on should_stop() with no stopping decision";
    }
    if (!decided_in_loop) ++stats.first_stop_after_loop;
    const frugal::decision closing = ctl.end_step();
    EXPECT_TRUE(after_checkpoint(closing, racing_done.load(), "closing end_step")) << "seed " << sc.seed;
    EXPECT_TRUE(closing.stops()) << "seed " << sc.seed;
    EXPECT_EQ(closing.repeats_stop(), decided_in_loop) << "seed " << sc.seed;
    EXPECT_EQ(stop_events, 1) << "seed " << sc.seed << ": a stopped run fired " << stop_events << " stop events";
    EXPECT_EQ(stop_seen ? stop_seen->step_index : 0, first_stop_steps) << "seed " << sc.seed;
    ++stats.stopped;
  } else {
    EXPECT_EQ(stop_events, 0) << "seed " << sc.seed << ": a run that did not stop fired a stop event";
  }

  // 1. past a limit by less than the last unit of work; 2. FLOPs and samples never past.
  bool over_any = false;
  if (sc.wall_limit_ns && wall_ns > sc.wall_limit_ns) {
    over_any = true;
    EXPECT_LT(wall_ns - sc.wall_limit_ns, last.wall_ns)
        << "seed " << sc.seed << ": wall " << wall_ns << " ns, limit " << sc.wall_limit_ns << " ns, the last "
        << (last.evaluation ? "evaluation" : "step") << " cost " << last.wall_ns << " ns; stop: " << stop_message;
  }
  if (sc.flops_limit > 0) {
    EXPECT_LE(static_cast<double>(flops), sc.flops_limit)
        << "seed " << sc.seed << ": FLOPs past their limit (last step " << last.flops << "); stop: " << stop_message;
    over_any = over_any || static_cast<double>(flops) > sc.flops_limit;
  }
  if (sc.samples_limit > 0) {
    EXPECT_LE(static_cast<double>(samples), sc.samples_limit)
        << "seed " << sc.seed << ": samples past their limit (last step " << last.samples << "); stop: " << stop_message;
    over_any = over_any || static_cast<double>(samples) > sc.samples_limit;
  }
  if (over_any) ++stats.overshooting;

  // 6. no irreversible action on a warm-up outlier when the plan fits.
  if (sc.plan_fits) {
    EXPECT_EQ(prune_decisions, 0) << "seed " << sc.seed << ": a prune fired although the plan fits at the steady cost";
    EXPECT_EQ(prune_actions, 0) << "seed " << sc.seed;
  }
  EXPECT_EQ(prune_actions, prune_decisions) << "seed " << sc.seed << ": a prune decision without its action (or back)";
  stats.prunes += prune_decisions;
  EXPECT_EQ(ctl.callback_error_count(), 0u) << "seed " << sc.seed << ": "
                                            << (ctl.callback_errors().empty() ? "" : ctl.callback_errors()[0].what);
}

// --- the seeds ---

unsigned env_unsigned(const char* name, unsigned fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return static_cast<unsigned>(std::strtoul(v, nullptr, 10));
}

// Runs `count` seeds from `first` (or only FRUGAL_SCENARIO_SEED when it falls in the range);
// gives up after 5 failing seeds.
template <class Make>
void for_seeds(unsigned first, Make make) {
  const unsigned count = env_unsigned("FRUGAL_SCENARIO_SEEDS", 300);
  const unsigned only = env_unsigned("FRUGAL_SCENARIO_SEED", 0);
  family_stats stats;
  const char* family = "";
  int failing = 0;
  const testing::TestResult* result = testing::UnitTest::GetInstance()->current_test_info()->result();
  for (unsigned seed = first; seed < first + count; ++seed) {
    if (only != 0 && seed != only) continue;
    const int parts = result->total_part_count();
    const scenario sc = make(seed);
    family = sc.family;
    try {
      run_scenario(sc, stats);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "seed " << seed << ": threw " << e.what() << "\n" << sc.describe();
    }
    if (result->total_part_count() != parts && ++failing >= 5) {
      ADD_FAILURE() << "giving up after 5 failing seeds";
      break;
    }
  }
  std::ostringstream reasons;
  for (const auto& [reason, n] : stats.reasons) reasons << ' ' << reason << '=' << n;
  std::cout << "[ scenario ] " << family << ": " << stats.runs << " runs, " << stats.stopped << " stopped (" << reasons.str()
            << " ), " << stats.overshooting << " past a limit, " << stats.prunes << " prunes, " << stats.shrinks
            << " shrinks, " << stats.epochs_ended_early << " epochs ended early, " << stats.requests
            << " requests checked, " << stats.first_stop_after_loop << " racing requests decided after the loop\n";
}

// Seeds of different families do not overlap, so a seed names one scenario.
TEST(ControllerScenario, RandomRunsKeepEveryInvariant) {
  for_seeds(1, [](unsigned seed) { return make_mixed(seed, "mixed", false); });
}

TEST(ControllerScenario, AStopRequestedFromAHookOrAThreadIsNeverLost) {
  for_seeds(1'000'001, [](unsigned seed) { return make_mixed(seed, "stop requests", true); });
}

TEST(ControllerScenario, AWarmUpOutlierDrivesNoPruneWhenThePlanFits) {
  for_seeds(2'000'001, [](unsigned seed) { return make_warmup_plan_fits(seed); });
}

}  // namespace
