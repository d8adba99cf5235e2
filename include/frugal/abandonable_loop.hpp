/// @file
/// A parallel loop the calling thread can walk away from at the hard deadline: the loop runs on
/// a thread of its own and on oneTBB's workers while the caller sleeps, and the caller is woken
/// by whichever comes first, the loop's end or the deadline. Chunks already running when the
/// deadline fires finish in the background; join() waits for them.
#pragma once

#include <frugal/deadline.hpp>
#include <frugal/detail/heap.hpp>
#include <frugal/detail/time_slice.hpp>
#include <frugal/scope.hpp>
#include <frugal/tbb.hpp>

#include <oneapi/tbb/task_arena.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <utility>

#if defined(__linux__)
#include <sys/prctl.h>
#endif

namespace frugal {

/// frugal::parallel_for(range, body, watchdog) with a return the deadline does not hold up.
///
/// Why. When the deadline fires, a loop stops starting chunks at once; but it returns only when
/// the chunks in flight have ended, and on an oversubscribed machine a chunk on a thread the
/// scheduler has preempted ends only when that thread's turn comes again -- 4 to 12 ms with two
/// or three runnable tasks a CPU (README, "Hard-deadline stop latency under load"). The calling
/// thread cannot return before, because the loop's chunks use what it owns.
///
/// What this does instead. run() hands the loop to a thread this object owns, which runs it as
/// the caller would have (every chunk charged to the caller's open scopes, and checking the
/// deadline: frugal::parallel_for(range, body, partitioner, watchdog)), and puts the caller to
/// sleep with Linux's shortest time slice (detail::short_slice_while_waiting), so that its
/// wake-up preempts a busy task at once rather than at the end of that task's slice. The caller
/// is woken when the loop ends -- run() returns true -- or when the deadline fires -- run()
/// returns false at once, and the chunks that had started finish in the background, while no
/// new one starts. The loop's thread takes the caller's place among the loop's threads, so a
/// loop that is not abandoned runs as fast as one the caller ran itself; it costs two thread
/// hand-offs (~10-30 us here) more.
///
/// The contract. The body is copied (or moved) into this object, so it lives until its last
/// chunk ends. What the body refers to -- the buffers it reads and writes, the budget whose
/// scopes it charges, the watchdog -- must live until join() returns, and after an abandoned
/// run() must not be touched before it: chunks may still be writing. join() is called by the
/// next run() and by the destructor, so declaring the abandonable_loop after the data its
/// bodies use (destroyed first, it joins first) keeps the contract by scope alone. The copy
/// holds the body's captures, not what they refer to: a body written inside a loop iteration
/// that captures [&] refers to that iteration's locals, which are gone once the caller moves on
/// after an abandoned run() -- capture those by value.
///
///   tbb::task_group_context group;
///   frugal::deadline_watchdog watchdog{run, group};
///   frugal::abandonable_loop loop{watchdog};
///   if (!loop.run(range, body)) {
///     // past the deadline: stop (report, flush) -- but leave what the body writes alone
///   }
///   loop.join();  // before the body's data is reused or freed
///
/// One run() at a time: a second one while the first waits -- from another thread, or from
/// one of the loop's own chunks -- is a std::logic_error. An exception thrown by the body is
/// rethrown by run(); one thrown by an abandoned loop's chunk, by join() (the destructor drops
/// it). Either cancels the watchdog's group, as the deadline does, and the group stays cancelled
/// (oneTBB's rule: task_group_context::reset() before it runs work again), so later runs return
/// false at once. Where an arena is given, the loop runs in it (arena.execute) with the loop's
/// thread in the caller's place: call run() from outside the arena, as the caller's slot is the
/// one the loop's thread takes.
class abandonable_loop {
 public:
  /// Loops of this object check `watchdog`, which must be bound to a tbb::task_group_context
  /// (std::invalid_argument otherwise); with `arena`, they run in it.
  explicit abandonable_loop(deadline_watchdog& watchdog, tbb::task_arena* arena = nullptr)
      : watchdog_(watchdog), arena_(arena) {
    if (!watchdog.bound_context())
      throw std::invalid_argument(
          "frugal::abandonable_loop: the deadline_watchdog has no task_group_context to cancel "
          "(construct it as deadline_watchdog{budget, context})");
    listener_ = watchdog_.add_fire_listener([this] { wake_caller(); });
    try {
      thread_ = std::thread([this] { serve(); });
    } catch (...) {
      watchdog_.remove_fire_listener(listener_);  // no destructor runs for a failed constructor
      throw;
    }
  }

  /// Waits for the chunks of an abandoned loop to end (an exception one of them threw is
  /// dropped), then ends the loop's thread.
  ~abandonable_loop() {
    watchdog_.remove_fire_listener(listener_);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      loop_ended_.wait(lock, [this] { return !running_; });
      quit_ = true;
    }
    work_.notify_one();
    thread_.join();
  }

  abandonable_loop(const abandonable_loop&) = delete;
  abandonable_loop& operator=(const abandonable_loop&) = delete;

  /// Runs frugal::parallel_for(range, body, partitioner..., watchdog) on the loop's thread and
  /// oneTBB's workers (after join(): an earlier loop's chunks end first). Returns true when
  /// every chunk ran; false when the deadline fired first -- at once, the loop's chunks in flight
  /// then running on in the background until join(), or when the deadline had cancelled the loop
  /// before it ended. Rethrows an exception the body threw.
  template <class Range, class Body, class... Partitioner>
  bool run(const Range& range, Body body, Partitioner... partitioner) {
    static_assert(sizeof...(Partitioner) <= 1, "frugal::abandonable_loop::run: at most one partitioner");
    const one_caller guard{*this};
    join();
    std::unique_ptr<task> loop;
    {
      const detail::bookkeeping own;  // frugal's machinery, not the user's allocation
      loop = std::make_unique<loop_task<Range, Body, Partitioner...>>(range, std::move(body), partitioner...);
    }
    loop->caller = current_context();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_ = true;
      completed_ = false;
      pending_ = std::move(loop);
    }
    work_.notify_one();
    const detail::short_slice_while_waiting prompt_wake_up;
    std::unique_lock<std::mutex> lock(mutex_);
    loop_ended_.wait(lock, [this] { return !running_ || watchdog_.fired(); });
    if (running_) return false;  // abandoned: join() waits for the chunks still running
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    return completed_;
  }

  /// Waits until the last loop's chunks have all ended; rethrows an exception one of them threw
  /// after the loop was abandoned. Returns at once when no loop is running.
  void join() {
    std::unique_lock<std::mutex> lock(mutex_);
    loop_ended_.wait(lock, [this] { return !running_; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

  /// Whether a loop's chunks are still running: after run() returned false, until join().
  [[nodiscard]] bool running() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return running_;
  }

 private:
  struct task {
    virtual ~task() = default;
    virtual void operator()(deadline_watchdog& watchdog) = 0;
    context caller;  ///< the scopes open where run() was called
  };

  template <class Range, class Body, class... Partitioner>
  struct loop_task final : task {
    loop_task(const Range& r, Body&& b, Partitioner... p) : range(r), body(std::move(b)), partitioner(p...) {}
    // A chunk's exception is caught here, not left to oneTBB, which drops one thrown after the
    // group was cancelled -- as it is once the deadline fired, when an abandoned loop's last
    // chunks end. The first is kept, and cancels the loop as oneTBB would have.
    void operator()(deadline_watchdog& watchdog) override {
      tbb::task_group_context& group = *watchdog.bound_context();
      std::apply(
          [&](auto&... p) {
            frugal::parallel_for(
                range,
                [&](const Range& r) {
                  try {
                    body(r);
                  } catch (...) {
                    keep(std::current_exception());
                    group.cancel_group_execution();
                  }
                },
                p..., watchdog);
          },
          partitioner);
      if (error) std::rethrow_exception(error);
    }
    void keep(std::exception_ptr e) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::move(e);
    }
    Range range;
    Body body;
    std::tuple<Partitioner...> partitioner;
    std::mutex error_mutex;
    std::exception_ptr error;  ///< the first chunk's exception; read once every chunk has ended
  };

  /// Marks a run() under way for its whole length; a second one meanwhile (another thread, or
  /// a chunk of the loop itself, which would wait for itself) is a std::logic_error.
  class one_caller {
   public:
    explicit one_caller(abandonable_loop& loop) : loop_(loop) {
      std::lock_guard<std::mutex> lock(loop_.mutex_);
      if (loop_.calling_)
        throw std::logic_error("frugal::abandonable_loop::run: another run() of this loop is under way");
      loop_.calling_ = true;
    }
    ~one_caller() {
      std::lock_guard<std::mutex> lock(loop_.mutex_);
      loop_.calling_ = false;
    }
    one_caller(const one_caller&) = delete;
    one_caller& operator=(const one_caller&) = delete;

   private:
    abandonable_loop& loop_;
  };

  /// The loop's thread: runs each loop handed to it, in the caller's scopes and arena.
  void serve() {
#if defined(PR_SET_NAME)
    (void)prctl(PR_SET_NAME, "frugal-loop", 0UL, 0UL, 0UL);  // for top -H, gdb and perf
#endif
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      work_.wait(lock, [this] { return quit_ || pending_; });
      if (!pending_) return;
      std::unique_ptr<task> loop = std::move(pending_);
      lock.unlock();
      std::exception_ptr error;
      bool completed = false;
      try {
        const auto in_scopes = [&] {
          const attach scopes{loop->caller};
          (*loop)(watchdog_);
        };
        if (arena_)
          arena_->execute(in_scopes);
        else
          in_scopes();
        completed = !watchdog_.bound_context()->is_group_execution_cancelled();
      } catch (...) {
        error = std::current_exception();
      }
      {
        const detail::bookkeeping own;
        loop.reset();  // the body's copy, before the loop counts as ended: join() means it is gone
      }
      lock.lock();
      running_ = false;
      completed_ = completed;
      error_ = error;
      loop_ended_.notify_all();
    }
  }

  /// The watchdog's fire listener: under mutex_, so a caller between reading fired() and
  /// sleeping cannot miss it.
  void wake_caller() noexcept {
    { std::lock_guard<std::mutex> lock(mutex_); }
    loop_ended_.notify_all();
  }

  deadline_watchdog& watchdog_;
  tbb::task_arena* arena_;
  mutable std::mutex mutex_;
  std::condition_variable work_;        ///< the loop's thread: a loop was handed over, or quit
  std::condition_variable loop_ended_;  ///< callers and join(): a loop ended, or the deadline fired
  std::unique_ptr<task> pending_;       ///< handed over, not yet taken by the loop's thread
  bool running_ = false;                ///< from run() until the loop's last chunk ended
  bool calling_ = false;                ///< a run() is waiting
  bool completed_ = false;              ///< the last loop ran every chunk
  bool quit_ = false;
  std::exception_ptr error_;
  std::uint64_t listener_ = 0;
  std::thread thread_;  ///< last: started once everything it reads exists
};

}  // namespace frugal
