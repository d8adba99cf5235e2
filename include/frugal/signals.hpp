/// @file
/// Signals -> clean stops: an opt-in installer of async-signal-safe handlers (default SIGTERM,
/// SIGINT, SIGUSR1) that turns the first signal into a controller stop (stop_reason::signal) and,
/// given a deadline_watchdog, arms the hard deadline at signal + grace; a second signal kills.
///
///   frugal::budget run{"train", limits};
///   tbb::task_group_context ctx;
///   frugal::deadline_watchdog watchdog{run, ctx};
///   frugal::signal_stop signals{watchdog, std::chrono::seconds(60)};  // after the watchdog
///   frugal::controller ctl{run};
///   signals.bind(ctl);  // ctl.stop_on(signals.stop_flag(), stop_reason::signal, signal_stop::describe)
///   ctl.cancel_on(watchdog.stop_flag(), frugal::stop_reason::deadline, [&] { return watchdog.describe(); });
///   while (!ctl.should_stop()) { ...step (parallel_for with ctx)...; if (ctl.end_step(s).stops()) break; }
///   ctl.end_run();  save_checkpoint();  // then exit 0
///
/// What happens. The first signal sets stop_flag() (a lock-free atomic: all a handler may do):
/// should_stop() is true at once, and the next checkpoint decides stop, "stop (signal): SIGTERM
/// received", which no callback can veto. With a watchdog, a thread woken through a self-pipe
/// (the handler only write()s one byte) arms it at signal time + grace: a step that would not end
/// in time is cancelled (decision `cancelled`, "the deadline watchdog fired: the 60 s grace after
/// SIGTERM ran out; ..."), and the loop still gets to save. A second signal -- any of the set --
/// restores the default action and re-raises it: the process dies at once, and its exit status
/// names the signal (a second Ctrl-C, or the scheduler's SIGTERM after its early warning).
///
/// Grace is required with a watchdog: no default fits both a warning minutes ahead (SLURM's
/// --signal) and a SIGTERM followed by SIGKILL 10-30 s later (docker stop, Kubernetes, SLURM's
/// KillWait). Choose grace = warning - time to save a checkpoint - a margin. Without a watchdog
/// (signal_stop{}) the stop waits for the next checkpoint, however long the step takes.
///
/// SLURM. At the time limit SLURM sends SIGTERM to the job's processes and SIGKILL KillWait
/// seconds later (`scontrol show config | grep KillWait`, often 30 s). Ask for a warning ahead:
///
/// @verbatim
///   #SBATCH --time=04:00:00
///   #SBATCH --signal=B:USR1@120      # SIGUSR1 to the batch shell ~120 s before the limit
///   exec ./train --out "$RUN_DIR" --resume    # exec: the program becomes the batch shell
/// @endverbatim
///
/// `B:` signals only the batch shell: without `exec`, bash would get it and, while it waits for a
/// foreground child, run no trap until the child ends. Without `B:` SLURM signals the job steps
/// (`srun ./train ...`) and not the shell. SLURM may send the warning up to a minute early.
/// The flow: SIGUSR1 -> the next checkpoint decides stop (signal) -> the loop breaks, saves its
/// checkpoint and report with frugal::write_file_atomically (<frugal/durable_file.hpp>: old or
/// new, never half a file) and exits 0 -> the next job (`sbatch --dependency=afterany:<id>`, or
/// `#SBATCH --requeue` with `scontrol requeue`) starts with --resume from the checkpoint. If the
/// program is still running at the limit, SLURM's SIGTERM is the second signal: killed at once,
/// the checkpoint on disk still whole. With grace 60 s, a stuck step is cancelled ~60 s after the
/// warning, leaving ~60 s to save.
///
/// Rules. Only one signal_stop may be alive at a time (the handlers and their state are
/// process-wide): a second throws std::logic_error. The destructor restores the previous
/// handlers (sigaction). A signal the process ignores (SIG_IGN: SIGINT in a script's background
/// job, SIGHUP under nohup) stays ignored, as the shell asked. Handlers use SA_RESTART, so reads
/// in flight are not broken by the signal. The handler allocates nothing, takes no lock and
/// calls no stdio: lock-free atomics, write(), sigaction() and raise() only. POSIX only.
#pragma once

#include <frugal/controller.hpp>
#include <frugal/deadline.hpp>
#include <frugal/decision.hpp>
#include <frugal/units.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

namespace frugal {

/// "SIGTERM", "SIGINT", ...; "signal 42" for one without a name here.
[[nodiscard]] inline std::string signal_name(int sig) {
  switch (sig) {
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGALRM: return "SIGALRM";
    case SIGPIPE: return "SIGPIPE";
    case SIGXCPU: return "SIGXCPU";
    case SIGVTALRM: return "SIGVTALRM";
    case SIGPROF: return "SIGPROF";
    case SIGKILL: return "SIGKILL";
    case SIGSTOP: return "SIGSTOP";
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    case SIGTRAP: return "SIGTRAP";
    case SIGCHLD: return "SIGCHLD";
    case SIGCONT: return "SIGCONT";
    default: return "signal " + std::to_string(sig);
  }
}

namespace detail::signals_impl {

// Everything the handler touches: static storage, lock-free atomics (a lock inside a handler
// deadlocks when the signal lands on the thread holding it).
static_assert(std::atomic<bool>::is_always_lock_free, "frugal/signals.hpp: the handler needs lock-free atomics");
static_assert(std::atomic<int>::is_always_lock_free, "frugal/signals.hpp: the handler needs lock-free atomics");
static_assert(std::atomic<std::int64_t>::is_always_lock_free,
              "frugal/signals.hpp: the handler needs lock-free atomics");

inline std::atomic<bool> installed{false};         // one signal_stop at a time
inline std::atomic<bool> stop_flag{false};         // the first signal arrived
inline std::atomic<int> first_signal{0};           // which one (published by stop_flag)
inline std::atomic<int> signals_seen{0};           // how many: the second kills
inline std::atomic<std::int64_t> received_ns{0};   // CLOCK_MONOTONIC at the first
inline std::atomic<int> wake_fd{-1};               // the self-pipe's write end, -1 without a watchdog
inline std::atomic<int> handlers_running{0};       // so the destructor can close wake_fd safely

// clock_gettime is async-signal-safe (std::chrono's clocks are not promised to be).
inline std::int64_t monotonic_ns() noexcept {
  timespec ts{};
  (void)clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

inline void on_signal(int sig) noexcept {
  const int saved_errno = errno;  // write() may change it under the interrupted code's feet
  handlers_running.fetch_add(1);  // before reading wake_fd (see ~signal_stop)
  if (signals_seen.fetch_add(1) == 0) {
    received_ns.store(monotonic_ns(), std::memory_order_relaxed);
    first_signal.store(sig, std::memory_order_relaxed);
    stop_flag.store(true, std::memory_order_release);
    if (const int fd = wake_fd.load(); fd >= 0) {
      const char byte = 's';
      while (::write(fd, &byte, 1) < 0 && errno == EINTR) {
      }
    }
  } else {
    // The second: die of it. The signal is blocked while its handler runs, so the raised one is
    // delivered -- with the default action -- as this handler returns.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    (void)::sigaction(sig, &dfl, nullptr);
    (void)::raise(sig);
  }
  handlers_running.fetch_sub(1);
  errno = saved_errno;
}

// Why `sig` cannot be a stop signal (nullptr if it can).
inline const char* unsuitable(int sig) noexcept {
  switch (sig) {
    case SIGKILL:
    case SIGSTOP: return "cannot be caught";
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGABRT:
    case SIGSYS: return "reports a fault, not a request to stop";
    case SIGCHLD:
    case SIGCONT:
    case SIGURG:
    case SIGWINCH:
    case SIGTSTP:
    case SIGTTIN:
    case SIGTTOU: return "does not end the process by default, so a second one could not kill";
    default: return nullptr;
  }
}

}  // namespace detail::signals_impl

/// Installs the handlers while alive (RAII); see the top of this file.
class signal_stop {
 public:
  /// SIGTERM (scheduler's end, kill, docker stop), SIGINT (Ctrl-C), SIGUSR1 (SLURM's warning).
  [[nodiscard]] static std::vector<int> default_signals() { return {SIGTERM, SIGINT, SIGUSR1}; }

  /// Stops at the next checkpoint; no watchdog.
  signal_stop() : signal_stop(default_signals()) {}
  /// Stops at the next checkpoint on any of `signals`; no watchdog.
  explicit signal_stop(std::vector<int> signals) { install(std::move(signals)); }
  /// Also arms `watchdog` at the first signal + `grace` (>= 0). The watchdog must outlive this
  /// object: construct it first.
  signal_stop(deadline_watchdog& watchdog, std::chrono::nanoseconds grace)
      : signal_stop(watchdog, grace, default_signals()) {}
  /// As above, on `signals`; throws std::invalid_argument when grace < 0.
  signal_stop(deadline_watchdog& watchdog, std::chrono::nanoseconds grace, std::vector<int> signals)
      : watchdog_(&watchdog), grace_(grace) {
    if (grace < std::chrono::nanoseconds::zero())
      throw std::invalid_argument("frugal::signal_stop: grace must be >= 0, got " +
                                  format_duration(std::chrono::duration<double>(grace).count()));
    install(std::move(signals));
  }

  ~signal_stop() {
    // Handlers first: from here no new handler run starts for this object's signals.
    for (auto it = handled_.rbegin(); it != handled_.rend(); ++it) (void)::sigaction(it->sig, &it->previous, nullptr);
    stop_waker();
    detail::signals_impl::installed.store(false);
  }

  signal_stop(const signal_stop&) = delete;
  signal_stop& operator=(const signal_stop&) = delete;

  /// Binds the controller: ctl.stop_on(stop_flag(), stop_reason::signal, describe). The flag is
  /// static, so it outlives any controller.
  void bind(controller& ctl) const { ctl.stop_on(stop_flag(), stop_reason::signal, &signal_stop::describe); }

  /// Set (release) by the first signal since this object was made.
  [[nodiscard]] static const std::atomic<bool>& stop_flag() noexcept { return detail::signals_impl::stop_flag; }
  /// Whether a signal has arrived since this object was made (reads stop_flag()).
  [[nodiscard]] static bool received() noexcept { return stop_flag().load(std::memory_order_acquire); }
  /// The first signal's number (0 before one arrived).
  [[nodiscard]] static int signal_number() noexcept {
    return received() ? detail::signals_impl::first_signal.load(std::memory_order_relaxed) : 0;
  }
  /// "SIGTERM received" ("" before): the words of the controller's "stop (signal): ..." decision.
  [[nodiscard]] static std::string describe() {
    const int sig = signal_number();
    return sig == 0 ? std::string() : signal_name(sig) + " received";
  }

  /// The signals handled: those asked for, less the ones the process ignores.
  [[nodiscard]] std::vector<int> handled_signals() const {
    std::vector<int> out;
    for (const auto& h : handled_) out.push_back(h.sig);
    return out;
  }

 private:
  struct handled {
    int sig;
    struct sigaction previous;
  };

  void install(std::vector<int> signals) {
    namespace s = detail::signals_impl;
    if (signals.empty()) throw std::invalid_argument("frugal::signal_stop: signals must not be empty, got none");
    for (std::size_t i = 0; i < signals.size(); ++i) {
      const int sig = signals[i];
      if (sig <= 0 || sig >= NSIG)
        throw std::invalid_argument("frugal::signal_stop: signals: not a signal number, got " + std::to_string(sig));
      if (const char* why = s::unsuitable(sig))
        throw std::invalid_argument("frugal::signal_stop: signals: " + signal_name(sig) + " " + why + ", got " +
                                    std::to_string(sig));
      if (std::find(signals.begin(), signals.begin() + static_cast<std::ptrdiff_t>(i), sig) !=
          signals.begin() + static_cast<std::ptrdiff_t>(i))
        throw std::invalid_argument("frugal::signal_stop: signals: " + signal_name(sig) + " given twice");
    }
    if (s::installed.exchange(true))
      throw std::logic_error(
          "frugal::signal_stop: another signal_stop is alive; only one may be installed at a time "
          "(signal handlers are process-wide)");
    // A new run: the previous installer's signal is history.
    s::signals_seen.store(0);
    s::first_signal.store(0);
    s::received_ns.store(0);
    s::stop_flag.store(false);
    try {
      if (watchdog_) start_waker();
      struct sigaction action {};
      action.sa_handler = &s::on_signal;
      action.sa_flags = SA_RESTART;
      sigemptyset(&action.sa_mask);
      // One handler run at a time per thread: another of the set waits until this one returns.
      for (int sig : signals) sigaddset(&action.sa_mask, sig);
      for (int sig : signals) {
        struct sigaction previous {};
        if (::sigaction(sig, nullptr, &previous) != 0) fail_sigaction(sig);
        if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler == SIG_IGN) continue;  // stays ignored
        if (::sigaction(sig, &action, &previous) != 0) fail_sigaction(sig);
        handled_.push_back(handled{sig, previous});
      }
    } catch (...) {
      // No destructor runs for a failed constructor: undo here.
      for (auto it = handled_.rbegin(); it != handled_.rend(); ++it) (void)::sigaction(it->sig, &it->previous, nullptr);
      handled_.clear();
      stop_waker();
      s::installed.store(false);
      throw;
    }
  }

  [[noreturn]] static void fail_sigaction(int sig) {
    const int err = errno;
    throw std::invalid_argument("frugal::signal_stop: signals: sigaction(" + signal_name(sig) +
                                ") failed: " + std::strerror(err));
  }

  void start_waker() {
    int fds[2];
    if (::pipe(fds) != 0) {
      const int err = errno;
      throw std::runtime_error(std::string("frugal::signal_stop: cannot create the wake-up pipe: ") + std::strerror(err));
    }
    wake_read_ = fds[0];
    wake_write_ = fds[1];
    // Close-on-exec for both; the write end never blocks the handler.
    (void)::fcntl(wake_read_, F_SETFD, FD_CLOEXEC);
    (void)::fcntl(wake_write_, F_SETFD, FD_CLOEXEC);
    (void)::fcntl(wake_write_, F_SETFL, ::fcntl(wake_write_, F_GETFL) | O_NONBLOCK);
    try {
      waker_ = std::thread([this] { wait_for_signal(); });
    } catch (...) {
      ::close(wake_read_);
      ::close(wake_write_);
      wake_read_ = wake_write_ = -1;
      throw;
    }
    detail::signals_impl::wake_fd.store(wake_write_);
  }

  void stop_waker() noexcept {
    if (wake_write_ < 0) return;
    // A handler still running on another thread may hold the old fd: wait for it before
    // closing (a closed fd number can be reused by any open(), and the byte would land there).
    // seq_cst: the handler counts itself in before it reads wake_fd.
    detail::signals_impl::wake_fd.store(-1);
    while (detail::signals_impl::handlers_running.load() != 0) std::this_thread::yield();
    const char quit = 'q';
    while (::write(wake_write_, &quit, 1) < 0 && errno == EINTR) {
    }
    if (waker_.joinable()) waker_.join();
    ::close(wake_write_);
    ::close(wake_read_);
    wake_read_ = wake_write_ = -1;
  }

  /// The waker thread: blocks on the pipe; on the first signal arms the watchdog at signal time +
  /// grace (it may lock and allocate; the handler may not).
  void wait_for_signal() noexcept {
    namespace s = detail::signals_impl;
    for (;;) {
      char byte = 0;
      const ssize_t n = ::read(wake_read_, &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || byte == 'q') return;
      if (!s::stop_flag.load(std::memory_order_acquire)) continue;
      const std::chrono::nanoseconds since(s::monotonic_ns() - s::received_ns.load(std::memory_order_relaxed));
      const std::chrono::nanoseconds left = std::max(grace_ - since, std::chrono::nanoseconds::zero());
      try {
        watchdog_->arm_after(left, "the " + format_duration(std::chrono::duration<double>(grace_).count()) +
                                       " grace after " + signal_name(s::first_signal.load(std::memory_order_relaxed)) +
                                       " ran out");
      } catch (...) {
        // Out of memory for the words: arm without them (the deadline matters more).
        try {
          watchdog_->arm_after(left);
        } catch (...) {
        }
      }
    }
  }

  deadline_watchdog* watchdog_ = nullptr;
  std::chrono::nanoseconds grace_{0};
  std::vector<handled> handled_;
  int wake_read_ = -1;
  int wake_write_ = -1;
  std::thread waker_;
};

}  // namespace frugal
