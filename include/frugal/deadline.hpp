/// @file
/// The hard deadline: a watchdog thread that, when a budget's wall time reaches its limit (or a
/// moment armed with arm_at/arm_after, whichever comes first), sets a stop flag and cancels a bound
/// tbb::task_group_context, so parallel work in flight stops; and check(), the same deadline
/// checked by the parallel work itself at chunk boundaries (frugal::parallel_for(range, body,
/// watchdog) in <frugal/tbb.hpp> does it for every chunk).
#pragma once

#include <frugal/budget.hpp>
#include <frugal/clock.hpp>
#include <frugal/detail/listeners.hpp>
#include <frugal/detail/time_slice.hpp>
#include <frugal/units.hpp>

#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <limits>
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
///   // or, every chunk also checking the deadline itself (check(), <frugal/tbb.hpp>):
///   frugal::parallel_for(range, body, w);
///
/// A budget's wall time runs only while one of its scopes is open, so the thread re-reads what
/// is left each time it wakes and sleeps again until nothing is. budget::set_limits() wakes it
/// at once (it listens for limit changes), so a lowered or newly set wall limit is enforced from
/// that moment; no wall limit: it sleeps until one is set. Destruction wakes the thread and joins
/// it at once. Under a frugal::manual_clock the thread still sleeps in real time; tests call
/// poll() or check() to check at a chosen moment.
///
/// A second deadline, in real time: arm_at(t) / arm_after(d) make it fire at t (or now + d) if the
/// wall limit has not fired first -- the grace period after a signal asking the job to end
/// (<frugal/signals.hpp>): the scheduler kills at a moment of the clock on the wall, however long
/// the budget's scopes were open. Arming is thread-safe and wakes the sleeping thread; the
/// earliest armed moment holds. describe() says which deadline fired, for the controller:
///   ctl.cancel_on(w.stop_flag(), frugal::stop_reason::deadline, [&w] { return w.describe(); });
///
/// Stop latency on a busy machine. Firing: the thread is woken by a timer but must then get a
/// CPU, and on an oversubscribed machine the scheduler may first let the task running there
/// finish its slice -- up to a tick (4 ms at HZ=250). Two things take that out, neither needing
/// privileges. The thread asks for the shortest time slice Linux gives a normal task (0.1 ms:
/// sched_attr::sched_runtime, honoured from Linux 6.12, EEVDF; ignored before), which lets its
/// wake-up preempt a task with a longer slice at once; its share of the CPU does not change,
/// and it sleeps all but a few microseconds. And check(), called by the parallel work itself at
/// chunk boundaries -- frugal::parallel_for(range, body, watchdog) in <frugal/tbb.hpp> -- lets a
/// worker that runs when the deadline passes cancel the group at its next chunk, whether or not
/// the watchdog's thread has a CPU yet. Returning is another matter, and no unprivileged code
/// can make it prompt: a chunk in flight on a thread the scheduler has preempted ends only when
/// that thread runs again -- after the other runnable tasks' turns, one tick or more with two or
/// three runnable tasks a CPU -- and parallel_for returns only then. benchmarks/controller_bench
/// (deadline_stop_latency) measures both under load. Waking early and spinning up to the moment
/// would not help: a spinning thread is runnable, preempted at a tick like any other, and it
/// takes CPU from the job it guards.
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

  /// The deadline checked from the calling thread, cheaply enough for every chunk of a parallel
  /// loop: when it has passed, fires (sets stop_flag(), cancels the bound context) and returns
  /// true -- the chunk should then do nothing -- and returns true from then on. Any thread.
  ///
  /// The fast path is one clock read (wall_now_ns()) and one relaxed load, compared (~30 ns
  /// here): the moment the last slow check computed as then + what was left -- the wall left
  /// before the wall limit, a cost limit's wall bound, the time to the armed moment, whichever
  /// is least; with a CPU or FLOP price 10 ms at most, as the thread re-reads. A budget's wall
  /// time runs only while one of its scopes is open, and then no faster than the clock on the
  /// wall, so the wall limit cannot be reached before that moment; but it may be reached later
  /// (the scopes closed for a while, or the limit was raised). So a check past the moment does
  /// not fire on it: it reads the budget again (as poll() does: a lock and a walk of the
  /// budget's thread blocks), fires only if a limit is really reached (or the armed moment
  /// passed), and else moves the moment on. A check never fires early, and reads the budget only
  /// when its moment passes. set_limits() and arming reset the moment, so the next check reads
  /// the budget again and sees a lowered limit at once; so does firing (then every check says
  /// true). A check racing a limit change may miss it for that one chunk, never fire wrongly.
  /// Under a frugal::manual_clock the moment is on the manual clock: tests drive it by hand.
  bool check() {
    if (FRUGAL_LIKELY(wall_now_ns() < check_at_ns_.load(std::memory_order_relaxed))) return false;
    return check_slow();
  }

  /// The context this watchdog cancels (nullptr without one).
  [[nodiscard]] tbb::task_group_context* bound_context() const noexcept { return ctx_; }

  /// Registers f to be called when the deadline fires: once, on the thread that fires it (the
  /// watchdog's own, or one whose check() or poll() found it passed), after stop_flag() is set
  /// and the bound context cancelled. Returns the id remove_fire_listener() takes. For a thread
  /// asleep until its work ends or the deadline fires, whichever comes first
  /// (frugal::abandonable_loop): f wakes it. f must be quick and noexcept, and must not add or
  /// remove fire listeners (it runs under their lock). A listener added after the deadline fired
  /// is never called: read fired() after adding one. Throws std::invalid_argument for an empty f.
  [[nodiscard]] std::uint64_t add_fire_listener(std::function<void()> f) {
    if (!f) throw std::invalid_argument("frugal::deadline_watchdog::add_fire_listener: f must not be empty");
    return fire_listeners_.add(std::move(f));
  }
  /// Unregisters a fire listener (an unknown id does nothing). When it returns, no call of it is
  /// running and none will start, so its owner may be destroyed.
  void remove_fire_listener(std::uint64_t id) noexcept { fire_listeners_.remove(id); }

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
    reset_check_moment();
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
  static constexpr std::int64_t check_now = std::numeric_limits<std::int64_t>::min();

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
    reset_check_moment();
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

  /// A limit changed, a moment was armed, or the deadline fired: the next check() takes the
  /// slow path. The generation, bumped first (seq_cst, as the check's stores and reads), lets
  /// a check that read the budget before and stores its moment after this reset see it and
  /// undo its store: whichever order they land in, the moment ends up reset.
  void reset_check_moment() noexcept {
    check_gen_.fetch_add(1);
    check_at_ns_.store(check_now);
  }

  /// check() past its moment: poll(), and when nothing fired, the next moment to check at.
  FRUGAL_NOINLINE bool check_slow() {
    if (fired()) return true;
    const std::uint64_t gen = check_gen_.load();
    // Both clocks before the reads: the moment is "then + what is left", which the limit
    // cannot come before.
    const std::int64_t now_ns = wall_now_ns();
    const auto steady_now = std::chrono::steady_clock::now();
    const double left = remaining_seconds();
    if (left <= 0) {
      fire(false);
      return true;
    }
    double wait = std::min(left, max_sleep_seconds);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (armed_passed_locked(steady_now)) {
        lock.unlock();
        fire(true);
        return true;
      }
      if (armed_at_) wait = std::min(wait, std::chrono::duration<double>(*armed_at_ - steady_now).count());
    }
    // Truncated, never rounded up: the moment stays no later than the limit.
    check_at_ns_.store(now_ns + static_cast<std::int64_t>(wait * 1e9));
    if (check_gen_.load() != gen) check_at_ns_.store(check_now);  // reset meanwhile: undo
    return fired();
  }

  void watch() {
#if defined(PR_SET_TIMERSLACK)
    // Linux lets a sleeping thread's timer fire up to 50 us late by default; this thread is
    // about lateness, so it asks for 1 ns (failure only costs those microseconds).
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
#if defined(PR_SET_NAME)
    (void)prctl(PR_SET_NAME, "frugal-deadline", 0UL, 0UL, 0UL);  // for top -H, gdb and perf
#endif
    detail::request_short_slice();  // so its timer wake-up preempts a busy loop at once
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
    reset_check_moment();  // every later check() takes the slow path and says fired
    if (ctx_) ctx_->cancel_group_execution();
    fire_listeners_.call_all();
  }

  budget& run_;
  tbb::task_group_context* ctx_;
  std::atomic<bool> firing_{false};
  std::atomic<bool> fired_{false};
  std::atomic<bool> fired_by_arm_{false};  ///< which deadline fired; published by fired_
  std::atomic<resource> reached_{resource::wall};  ///< the limit reached (wall or cost); published by fired_
  std::atomic<std::int64_t> fired_ns_{0};
  /// check()'s moment (wall_now_ns()), read by every chunk: its own cache line, written only
  /// when a check passes it. check_now at first: the first check reads the budget.
  alignas(64) std::atomic<std::int64_t> check_at_ns_{check_now};
  alignas(64) std::atomic<std::uint64_t> check_gen_{0};  ///< bumped by every reset_check_moment()
  std::uint64_t listener_ = 0;  ///< this watchdog's id among run_'s limits listeners
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool quit_ = false;
  bool recheck_ = false;  ///< limits changed or a moment was armed: re-read before sleeping
  std::optional<std::chrono::steady_clock::time_point> armed_at_;
  detail::listener_list fire_listeners_;
  std::string armed_why_;
  std::string fired_why_;  ///< armed_why_ when the armed moment fired
  std::thread thread_;  ///< last: started once everything it reads exists
};

}  // namespace frugal
