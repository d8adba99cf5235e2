/// @file
/// The hard deadline: a watchdog thread that, when a budget's wall time reaches its limit (or a
/// moment armed with arm_at/arm_after, whichever comes first), sets a stop flag and cancels a bound
/// tbb::task_group_context, so parallel work in flight stops.
#pragma once

#include <frugal/budget.hpp>
#include <frugal/clock.hpp>
#include <frugal/units.hpp>

#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#if defined(__linux__)
#include <sys/prctl.h>
#endif

namespace frugal {

/// While alive, a thread sleeps until the budget's wall time reaches its limit -- or its cost,
/// when a price makes the wall cost money (budget::set_price) -- then (once):
/// records the time, sets stop_flag() -- which a controller bound with ctl.cancel_on(w.stop_flag())
/// turns into a `cancelled` decision -- and cancels the bound context: a
/// tbb::parallel_for(range, body, ctx) in flight stops scheduling chunks at once, and bodies that
/// poll ctx.is_group_execution_cancelled() return within their polling interval.
///
///   tbb::task_group_context ctx;
///   frugal::deadline_watchdog w{run, ctx};
///   ctl.cancel_on(w.stop_flag());
///   tbb::parallel_for(range, body, ctx);
///
/// A budget's wall time runs only while one of its scopes is open, so the thread re-reads what
/// is left each time it wakes and sleeps again until nothing is. budget::set_limits() wakes it
/// at once (it listens for limit changes), so a lowered or newly set wall limit is enforced from
/// that moment; no wall limit: it sleeps until one is set. Destruction wakes the thread and joins
/// it at once. Under a frugal::manual_clock the thread still sleeps in real time; tests call
/// poll() to check at a chosen moment.
///
/// A second deadline, in real time: arm_at(t) / arm_after(d) make it fire at t (or now + d) if the
/// wall limit has not fired first -- the grace period after a signal asking the job to end
/// (<frugal/signals.hpp>): the scheduler kills at a moment of the clock on the wall, however long
/// the budget's scopes were open. Arming is thread-safe and wakes the sleeping thread; the
/// earliest armed moment holds. describe() says which deadline fired, for the controller:
///   ctl.cancel_on(w.stop_flag(), frugal::stop_reason::deadline, [&w] { return w.describe(); });
class deadline_watchdog {
 public:
  /// Watches `run`'s wall limit (and the armed moment) on its own thread; when one fires, sets
  /// stop_flag() and cancels `ctx`.
  deadline_watchdog(budget& run, tbb::task_group_context& ctx) : run_(run), ctx_(&ctx) { start(); }
  /// Watches `run`'s wall limit without a task group: firing only sets stop_flag().
  explicit deadline_watchdog(budget& run) : run_(run), ctx_(nullptr) { start(); }

  ~deadline_watchdog() {
    // First: once this returns, set_limits() no longer calls into this object.
    run_.remove_limits_listener(listener_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  deadline_watchdog(const deadline_watchdog&) = delete;
  deadline_watchdog& operator=(const deadline_watchdog&) = delete;

  /// Set (release) once the deadline has fired; for loop conditions and ctl.cancel_on().
  [[nodiscard]] const std::atomic<bool>& stop_flag() const noexcept { return fired_; }
  /// Whether the deadline has fired (reads stop_flag()).
  [[nodiscard]] bool fired() const noexcept { return fired_.load(std::memory_order_acquire); }
  /// When it fired, on frugal's wall clock (wall_now_ns(), steady): for measuring stop latency.
  [[nodiscard]] std::optional<std::int64_t> fired_at_ns() const noexcept {
    if (!fired()) return std::nullopt;
    return fired_ns_.load(std::memory_order_relaxed);
  }

  /// Checks the budget now, from the calling thread, and fires if its wall limit is reached (or
  /// the armed moment has passed). Returns whether the deadline has fired (now or before).
  bool poll() {
    if (remaining_seconds() <= 0) {
      fire(false);
    } else {
      std::unique_lock<std::mutex> lock(mutex_);
      if (armed_passed_locked(std::chrono::steady_clock::now())) {
        lock.unlock();
        fire(true);
      }
    }
    return fired();
  }

  /// Fires at `when` (steady clock, real time) unless the wall limit fires first; an earlier
  /// moment armed before holds (arming never postpones). `why` says what the moment is, for
  /// describe() ("the 30 s grace after SIGTERM ran out"). A moment already passed fires at once.
  /// Any thread; no effect once fired.
  void arm_at(std::chrono::steady_clock::time_point when, std::string why = {}) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (fired() || (armed_at_ && *armed_at_ <= when)) return;
      armed_at_ = when;
      armed_why_ = std::move(why);
      recheck_ = true;
    }
    wake_.notify_all();
  }
  /// Fires `delay` from now (>= 0; 0 fires at once). Throws std::invalid_argument for a negative
  /// delay. A delay beyond a century is a century (the time point must not overflow).
  void arm_after(std::chrono::nanoseconds delay, std::string why = {}) {
    if (delay < std::chrono::nanoseconds::zero())
      throw std::invalid_argument("frugal::deadline_watchdog::arm_after: delay must be >= 0, got " +
                                  format_duration(std::chrono::duration<double>(delay).count()));
    constexpr std::chrono::nanoseconds century = std::chrono::hours(24 * 365 * 100);
    arm_at(std::chrono::steady_clock::now() + std::min(delay, century), std::move(why));
  }
  /// The armed moment (the earliest), if any.
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> armed_at() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return armed_at_;
  }

  /// What fired, in words ("" before): "the deadline watchdog fired at the wall limit; parallel
  /// work in flight was cancelled", or "the deadline watchdog fired: <why of the armed moment>;
  /// ..." (the last clause only with a bound context).
  [[nodiscard]] std::string describe() const {
    if (!fired()) return {};
    const char* cancelled = ctx_ ? "; parallel work in flight was cancelled" : "";
    if (!fired_by_arm_.load(std::memory_order_relaxed))
      return std::string("the deadline watchdog fired at the ") + std::string(to_string(reached_.load(std::memory_order_relaxed))) +
             " limit" + cancelled;
    std::lock_guard<std::mutex> lock(mutex_);
    return "the deadline watchdog fired: " + (fired_why_.empty() ? std::string("its armed moment passed") : fired_why_) +
           cancelled;
  }

 private:
  /// The longest single sleep: a bound on the arithmetic of time points, not on the accuracy
  /// (the thread re-reads the budget each time it wakes).
  static constexpr double max_sleep_seconds = 3600;
  /// How often a cost limit priced beyond the wall (CPU, FLOPs) is re-read: a read is a short
  /// walk of the budget's blocks, so 100 a second cost nothing a step would notice.
  static constexpr double cost_poll_seconds = 0.01;

  void start() {
    listener_ = run_.add_limits_listener([this] { limits_changed(); });
    try {
      thread_ = std::thread([this] { watch(); });
    } catch (...) {
      run_.remove_limits_listener(listener_);  // no destructor runs for a failed constructor
      throw;
    }
  }

  /// Called by set_limits() (any thread). The flag, set under mutex_, makes the wake-up stick:
  /// a change that lands between the thread reading the limit and going to sleep is not lost.
  void limits_changed() noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      recheck_ = true;
    }
    wake_.notify_all();
  }

  /// mutex_ held. When the armed moment has passed, keeps its words for describe().
  bool armed_passed_locked(std::chrono::steady_clock::time_point now) {
    if (!armed_at_ || now < *armed_at_) return false;
    if (!firing_.load(std::memory_order_relaxed)) fired_why_ = armed_why_;
    return true;
  }

  /// The wall time left before a limit is reached: the wall limit's, and a cost limit's bound
  /// (price::wall_bound: the instance-hours alone would spend the cost left by then). 0 once
  /// either is reached; which one, for describe().
  [[nodiscard]] double remaining_seconds() {
    double left = budget::unlimited;
    if (const double limit = run_.limit(resource::wall); std::isfinite(limit)) left = limit - run_.used(resource::wall);
    if (left <= 0) return set_reached(resource::wall), 0.0;
    if (const double limit = run_.limit(resource::cost); std::isfinite(limit) && run_.measures_cost()) {
      const double cost_left = limit - run_.used(resource::cost);
      if (cost_left <= 0) return set_reached(resource::cost), 0.0;
      const frugal::price p = run_.price();
      left = std::min(left, p.wall_bound(cost_left));
      // CPU time and FLOPs spend money too, at a rate the wall does not show: re-read often.
      if (p.core_hour() > 0 || p.per_flop() > 0) left = std::min(left, cost_poll_seconds);
    }
    return left;
  }
  void set_reached(resource r) noexcept { reached_.store(r, std::memory_order_relaxed); }

  void watch() {
#if defined(PR_SET_TIMERSLACK)
    // Linux lets a sleeping thread's timer fire up to 50 us late by default; this thread is
    // about lateness, so it asks for 1 ns (failure only costs those microseconds).
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
    std::unique_lock<std::mutex> lock(mutex_);
    while (!quit_) {
      recheck_ = false;  // before the reads: a change after them sets the flag again
      const double left = remaining_seconds();
      if (left <= 0) {
        lock.unlock();
        fire(false);
        return;
      }
      const auto now = std::chrono::steady_clock::now();
      if (armed_passed_locked(now)) {
        lock.unlock();
        fire(true);
        return;
      }
      double sleep = std::min(left, max_sleep_seconds);
      if (armed_at_) sleep = std::min(sleep, std::chrono::duration<double>(*armed_at_ - now).count());
      wake_.wait_for(lock, std::chrono::duration<double>(sleep), [this] { return quit_ || recheck_; });
    }
  }

  /// The flag is set before the cancellation, so a loop that returns from its cancelled
  /// parallel_for already sees it (the cancellation is published by oneTBB after it).
  void fire(bool by_arm) {
    if (firing_.exchange(true, std::memory_order_acq_rel)) return;
    fired_by_arm_.store(by_arm, std::memory_order_relaxed);
    fired_ns_.store(wall_now_ns(), std::memory_order_relaxed);
    fired_.store(true, std::memory_order_release);
    if (ctx_) ctx_->cancel_group_execution();
  }

  budget& run_;
  tbb::task_group_context* ctx_;
  std::atomic<bool> firing_{false};
  std::atomic<bool> fired_{false};
  std::atomic<bool> fired_by_arm_{false};  ///< which deadline fired; published by fired_
  std::atomic<resource> reached_{resource::wall};  ///< the limit reached (wall or cost); published by fired_
  std::atomic<std::int64_t> fired_ns_{0};
  std::uint64_t listener_ = 0;  ///< this watchdog's id among run_'s limits listeners
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool quit_ = false;
  bool recheck_ = false;  ///< limits changed or a moment was armed: re-read before sleeping
  std::optional<std::chrono::steady_clock::time_point> armed_at_;
  std::string armed_why_;
  std::string fired_why_;  ///< armed_why_ when the armed moment fired
  std::thread thread_;  ///< last: started once everything it reads exists
};

}  // namespace frugal
