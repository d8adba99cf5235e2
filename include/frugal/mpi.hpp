/// @file
/// One budget across the ranks of an MPI job: each rank's usage exchanged at checkpoints so that
/// every rank's budget reads the job's, decisions every rank takes at the same step, and
/// collectives that end the job rather than wait for ever for a rank that is gone.
///
/// Needs MPI (target frugal::mpi; Debian: libopenmpi-dev). The rest of frugal does not.
#pragma once

#ifndef OMPI_SKIP_MPICXX
/// frugal uses MPI's C API only: this keeps OpenMPI's deprecated C++ bindings, which would
/// need their own library, out of <mpi.h>.
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
/// The same for MPICH's C++ bindings.
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <frugal/agreement.hpp>
#include <frugal/budget.hpp>
#include <frugal/controller.hpp>
#include <frugal/controller_report.hpp>
#include <frugal/decision.hpp>
#include <frugal/events.hpp>
#include <frugal/report.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace frugal::mpi {

/// How often a job exchanges usage and agrees on decisions, and how long a rank waits for the
/// others in a collective.
class job_options {
 public:
  /// Exchange and agree every `steps` steps (and at the first step, and at every epoch end): 1,
  /// the default, is every step. Between exchanges each rank's budget reads the others' usage
  /// extrapolated at their last rate, and the controller's decisions hold until the next
  /// exchange (its forecasts cover `steps` steps: controller::set_decision_horizon). Throws
  /// std::invalid_argument for 0.
  job_options& every(std::size_t steps) {
    if (steps == 0) throw std::invalid_argument("frugal::mpi::job_options: every must be >= 1 step, got 0");
    every_ = steps;
    auto_ = false;
    return *this;
  }
  /// Chooses the interval from measurement instead: after each exchange, the fewest steps
  /// between exchanges that keep an exchange's time (the slowest rank's, waiting included) at or
  /// under `max_fraction` of the steps' time (the slowest rank's per step), at most `max_steps`.
  /// Every rank computes it from the same exchanged figures, so all use the same interval.
  /// Throws std::invalid_argument unless 0 < max_fraction <= 1 and max_steps >= 1.
  job_options& every_auto(double max_fraction = 0.01, std::size_t max_steps = 64) {
    if (!(max_fraction > 0 && max_fraction <= 1))
      throw std::invalid_argument("frugal::mpi::job_options: every_auto max_fraction must be in (0, 1], got " +
                                  detail::units_impl::shortest(max_fraction));
    if (max_steps == 0)
      throw std::invalid_argument("frugal::mpi::job_options: every_auto max_steps must be >= 1, got 0");
    auto_ = true;
    auto_fraction_ = max_fraction;
    auto_max_ = max_steps;
    every_ = 1;
    return *this;
  }
  /// The longest a rank waits in one collective for the others (default 600 s): past it, the
  /// others are taken to be gone and the job ends (job::abort). Throws std::invalid_argument
  /// unless finite and > 0.
  job_options& collective_timeout(std::chrono::duration<double> t) {
    check_positive("collective_timeout", t.count());
    timeout_ = t.count();
    return *this;
  }
  /// Once the hard deadline has fired (job::watch_deadline), the longest a rank still waits in a
  /// collective (default 5 s): the others' deadlines fired too, so they should be arriving.
  /// Throws std::invalid_argument unless finite and > 0.
  job_options& deadline_grace(std::chrono::duration<double> t) {
    check_positive("deadline_grace", t.count());
    grace_ = t.count();
    return *this;
  }

  /// The fixed interval in steps (every()); 1 with every_auto() until it has measured.
  [[nodiscard]] std::size_t interval() const noexcept { return every_; }
  /// Whether the interval is chosen by measurement (every_auto()).
  [[nodiscard]] bool automatic() const noexcept { return auto_; }
  /// every_auto()'s largest share of the steps' time for exchanges.
  [[nodiscard]] double auto_fraction() const noexcept { return auto_fraction_; }
  /// every_auto()'s largest interval.
  [[nodiscard]] std::size_t auto_max_steps() const noexcept { return auto_max_; }
  /// collective_timeout(), in seconds.
  [[nodiscard]] double timeout_seconds() const noexcept { return timeout_; }
  /// deadline_grace(), in seconds.
  [[nodiscard]] double grace_seconds() const noexcept { return grace_; }

 private:
  static void check_positive(const char* field, double v) {
    if (!(std::isfinite(v) && v > 0))
      throw std::invalid_argument(std::string("frugal::mpi::job_options: ") + field +
                                  " must be finite and > 0 seconds, got " + detail::units_impl::shortest(v));
  }

  std::size_t every_ = 1;
  bool auto_ = false;
  double auto_fraction_ = 0.01;
  std::size_t auto_max_ = 64;
  double timeout_ = 600;
  double grace_ = 5;
};

/// What the exchanges have cost this rank.
struct exchange_stats {
  std::uint64_t exchanges = 0;  ///< usage exchanges so far (each with the decision's agreement)
  double seconds = 0;           ///< this rank's time in them, collectives and waiting for peers
  double last_seconds = 0;      ///< the last one's
  /// seconds / exchanges (0 before the first).
  [[nodiscard]] double mean_seconds() const noexcept {
    return exchanges ? seconds / static_cast<double>(exchanges) : 0;
  }
};

class job;

namespace detail {

using frugal::detail::units_impl::shortest;

// One rank's usage as exchanged: a fixed-size record (every rank runs the same program, so the
// layout is the same), sent as bytes.
struct rank_record {
  double by_resource[resource_count];
  double exchange_seconds;  // the rank's previous exchange, for every_auto
  double step_seconds;      // its wall time per step since its previous exchange (0: unknown)
  std::uint64_t steps;      // steps it has ended
  std::uint32_t unit_count;
  std::uint32_t pad;
  struct unit_entry {
    char name[max_unit_name_length + 1];
    double amount;
  } units[FRUGAL_MAX_UNITS];
};

// One rank's vote, fixed part; the words follow separately when any rank has some.
struct vote_record {
  std::uint64_t batch_size;
  std::uint64_t prune_rule;
  std::uint64_t quantize_rule;
  std::uint64_t reason_length;
  double prune_fraction;
  std::int32_t quantize_bits;
  std::uint8_t actions;
  std::uint8_t cause;
  std::uint8_t repeats_stop;
  std::uint8_t pad;
};

// What a checkpoint's pending stop looks like, for end_run.
struct pending_stop {
  std::uint8_t stopping;
  std::uint8_t cause;
  std::uint8_t pad[6];
  std::uint64_t length;
};

[[nodiscard]] inline bool summed(resource r) noexcept {
  return r == resource::cpu || r == resource::flops || r == resource::allocations || r == resource::alloc_bytes;
}
[[nodiscard]] inline bool highest(resource r) noexcept {
  return r == resource::wall || r == resource::peak_bytes || r == resource::rss_bytes;
}

// The job whose collective is running on this thread's process, for the terminate handler.
inline std::atomic<job*> active_job{nullptr};
inline std::terminate_handler previous_terminate = nullptr;

}  // namespace detail

/// One training job across the ranks of a communicator. Each rank makes its own budget (same
/// name and limits on every rank: the job's) and controller, and a job over them:
///
///   frugal::budget run("run", frugal::limits{}.wall(10min).flops(5e13));
///   frugal::mpi::job job(MPI_COMM_WORLD, run);
///   frugal::controller ctl(run, options);
///   job.attach(ctl);
///   while (...) {
///     ... this rank's shard of the batch; job.allreduce_sum(grad, n); update ...
///     frugal::decision d = job.end_step(ctl, frugal::step{}.samples(batch));
///     if (d.ends_epoch()) break;
///   }
///   ... job.end_epoch(ctl, ...) ...
///   job.end_run(ctl);
///
/// The budget. At every exchange (every step by default) the ranks swap their usage; each rank's
/// budget then reads the job's (budget::set_peer_usage): FLOPs, CPU time, allocations and user
/// units summed over the ranks, wall time the longest rank's, heap and resident-set levels the
/// highest rank's (a memory limit holds per process). After end_run (or exchange()) the totals
/// are exact: every rank reads the same sum of the ranks' figures.
///
/// The decisions. Every rank's controller decides from the job's figures, and the ranks' votes
/// are merged (frugal::merge_votes: the most careful wins -- any rank's stop stops all, the
/// smallest batch size binds all), so every rank takes the same decision at the same step: a
/// stop request, signal or early stop on one rank reaches every rank at the next exchange.
/// Between exchanges the ranks' own decisions wait for it, except a stop already agreed.
/// End the loop on the decisions job.end_step returns, never on ctl.should_stop(), which is
/// this rank's alone: a rank leaving early would leave the others waiting. Likewise anything a
/// rank computes from its budget's readings (a schedule's learning rate from the wall time used)
/// differs a little between ranks, which read at different moments: take one rank's value (a
/// collective) or derive it from what every rank shares (the step count); probe_memory and
/// chunk_size answer for this rank alone.
///
/// No rank waits for ever. The job's collectives poll; a rank that waits longer than
/// collective_timeout for the others, or longer than deadline_grace after the hard deadline
/// fired (watch_deadline), ends the whole job with MPI_Abort and says why on stderr -- a
/// blocked collective cannot be left any other way. An exception that leaves the job's scope,
/// or reaches std::terminate, on any rank ends the job the same way (the other ranks would
/// otherwise wait in their next collective); mpirun also ends the job when a rank dies. The
/// ranks' last checkpoint files are what survives such an end; stops the budget decides are
/// clean on every rank.
///
/// From the thread that runs the loop only (MPI_THREAD_FUNNELED is enough). MPI must be
/// initialised before and finalised after the job.
class job {
 public:
  /// A job over `comm`'s ranks for `run` (both must outlive the job). Collective: every rank
  /// makes its job at the same point. Throws std::invalid_argument when MPI is not initialised.
  job(MPI_Comm comm, budget& run, job_options options = {})
      : comm_(comm), run_(&run), options_(options), interval_(options.interval()),
        shared_(std::make_shared<shared>()), uncaught_(std::uncaught_exceptions()) {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised)
      throw std::invalid_argument("frugal::mpi::job: MPI is not initialised (call MPI_Init or MPI_Init_thread first)");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    shared_->owner = this;
    rank_usage_.resize(static_cast<std::size_t>(size_));
    last_exchange_ = std::chrono::steady_clock::now();
    job* expected = nullptr;
    if (detail::active_job.compare_exchange_strong(expected, this)) {
      detail::previous_terminate = std::set_terminate(&job::on_terminate);
      owns_terminate_ = true;
    }
  }

  job(const job&) = delete;
  job& operator=(const job&) = delete;

  /// An exception leaving the job's scope ends the whole job (the other ranks may be waiting
  /// in a collective for this one); otherwise the job just goes (a controller still attached
  /// throws std::logic_error at its next checkpoint).
  ~job() {
    shared_->owner = nullptr;
    if (owns_terminate_) {
      std::set_terminate(detail::previous_terminate);
      detail::active_job.store(nullptr);
    }
    if (std::uncaught_exceptions() > uncaught_ && size_ > 1)
      abort("an exception is leaving the job's scope on this rank", 71);
  }

  /// This rank's number in the communicator.
  [[nodiscard]] int rank() const noexcept { return rank_; }
  /// The number of ranks.
  [[nodiscard]] int size() const noexcept { return size_; }
  /// The communicator.
  [[nodiscard]] MPI_Comm communicator() const noexcept { return comm_; }
  /// The budget every rank's figures are combined into.
  [[nodiscard]] budget& watched() const noexcept { return *run_; }
  /// Steps between exchanges now (job_options::every or every_auto's latest choice).
  [[nodiscard]] std::size_t interval() const noexcept { return interval_; }
  /// What the exchanges have cost this rank so far.
  [[nodiscard]] exchange_stats stats() const noexcept { return stats_; }
  /// Each rank's own usage (its budget's, peers left out), as of the last exchange, indexed
  /// by rank: the per-rank figures of the job's report.
  [[nodiscard]] const std::vector<usage>& rank_usage() const noexcept { return rank_usage_; }
  /// Steps each rank had ended at the last exchange, indexed by rank.
  [[nodiscard]] const std::vector<std::uint64_t>& rank_steps() const noexcept { return rank_steps_; }

  /// Makes `ctl` (which must watch this job's budget) decide with the other ranks: installs the
  /// agreement (controller::agree_with) and the decision horizon. One controller at a time;
  /// attaching another detaches the first. Throws std::invalid_argument for a controller of
  /// another budget.
  void attach(controller& ctl) {
    if (&ctl.watched() != run_)
      throw std::invalid_argument("frugal::mpi::job::attach: the controller watches budget '" + ctl.watched().path() +
                                  "', not the job's '" + run_->path() + "'");
    if (ctl_ && ctl_ != &ctl) ctl_->agree_with({});
    ctl_ = &ctl;
    std::shared_ptr<shared> s = shared_;
    ctl.agree_with([s](decision_vote& vote, checkpoint where) {
      if (!s->owner)
        throw std::logic_error("frugal::mpi::job: the job this controller agreed through is gone");
      s->owner->agree(vote, where);
    });
    ctl.set_decision_horizon(interval_);
  }

  /// The step's checkpoint, for every rank at the same step: exchanges usage when due (else
  /// extrapolates the others'), then ctl.end_step(s), whose decision is the job's. Collective
  /// on exchange steps.
  [[nodiscard]] decision end_step(controller& ctl, const step& s = {}) {
    check_attached(ctl, "end_step");
    ++steps_;
    ++steps_since_exchange_;
    // The first step always exchanges: from then on the others' rate per step is known.
    const bool due = steps_since_exchange_ >= interval_ || !exchanged_;
    if (due)
      exchange_usage();
    else
      extrapolate_peers();
    return checkpoint_call(due, [&] { return ctl.end_step(s); });
  }

  /// The epoch's checkpoint, for every rank: always an exchange. Collective.
  [[nodiscard]] decision end_epoch(controller& ctl, const epoch& e = {}) {
    check_attached(ctl, "end_epoch");
    exchange_usage();
    return checkpoint_call(true, [&] { return ctl.end_epoch(e); });
  }

  /// After the loop, on every rank: a stop any rank still has pending (a signal after the last
  /// exchange) becomes every rank's, so every rank ends with the same stop; then the final
  /// exchange, after which the totals are exact; then ctl.end_run(). Returns why the run
  /// stopped. Collective.
  frugal::stop_reason end_run(controller& ctl) {
    check_attached(ctl, "end_run");
    // A stop pending here: its cause and words from every rank.
    detail::pending_stop mine{};
    std::string words;
    if (ctl.should_stop()) {
      mine.stopping = 1;
      mine.cause = static_cast<std::uint8_t>(ctl.stop_reason());
      words = ctl.stop_message();
      mine.length = words.size();
    }
    std::vector<detail::pending_stop> all(static_cast<std::size_t>(size_));
    allgather_bytes(&mine, all.data(), sizeof mine, "end_run (pending stops)");
    std::vector<std::string> texts = allgather_texts(words, all, "end_run (stop words)");
    if (!ctl.should_stop())
      for (std::size_t i = 0; i < all.size(); ++i)
        if (all[i].stopping) {
          ctl.request_stop("rank " + std::to_string(i) + ": " + texts[i],
                           static_cast<frugal::stop_reason>(all[i].cause) == frugal::stop_reason::none
                               ? frugal::stop_reason::user
                               : static_cast<frugal::stop_reason>(all[i].cause));
          break;
        }
    exchange_usage();
    return ctl.end_run();
  }

  /// Exchanges usage now, outside a checkpoint (for exact totals before a report). Collective.
  void exchange() { exchange_usage(); }

  /// Sums `data[0..count)` over the ranks, in place, on every rank (MPI_Allreduce), waiting no
  /// longer than the job's collectives do. For gradients of data-parallel training. Collective.
  template <class T>
  void allreduce_sum(T* data, std::size_t count) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int64_t> ||
                      std::is_same_v<T, std::uint64_t>,
                  "frugal::mpi::job::allreduce_sum: float, double, std::int64_t or std::uint64_t");
    if (count > static_cast<std::size_t>(std::numeric_limits<int>::max()))
      throw std::invalid_argument("frugal::mpi::job::allreduce_sum: count must fit an int, got " + std::to_string(count));
    MPI_Request request;
    check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), datatype<T>(), MPI_SUM, comm_, &request),
          "allreduce_sum");
    wait(request, "allreduce_sum");
  }
  /// The sum of `value` over the ranks. Collective.
  template <class T>
  [[nodiscard]] T sum(T value) {
    allreduce_sum(&value, 1);
    return value;
  }

  /// Binds the hard deadline: once `fired` is set (deadline_watchdog::stop_flag()), a rank
  /// waits at most deadline_grace in a collective. `fired` must outlive the job.
  void watch_deadline(const std::atomic<bool>& fired) noexcept { deadline_ = &fired; }

  /// Called with the reason before abort() ends the job (to save what can be saved); its
  /// exceptions are ignored.
  void on_abort(std::function<void(const std::string&)> f) { on_abort_ = std::move(f); }

  /// Ends the whole job now: says why on stderr, runs on_abort, then MPI_Abort(`code`) -- every
  /// rank ends. For a rank that cannot go on while the others would wait for it.
  [[noreturn]] void abort(const std::string& why, int code = 70) noexcept {
    std::fprintf(stderr, "frugal::mpi: rank %d of %d: %s: ending the job (MPI_Abort %d) so that no rank waits for ever\n",
                 rank_, size_, why.c_str(), code);
    std::fflush(stderr);
    if (on_abort_) {
      try {
        on_abort_(why);
      } catch (...) {
        // Ending the job matters more than what the hook wanted to save.
      }
    }
    MPI_Abort(comm_, code);
    std::abort();  // MPI_Abort does not return; should an implementation's, nothing else may run
  }

  /// The job's report as JSON: the budget's report (frugal::write_json_report: the job's
  /// figures) with two more members -- "ranks": [{"rank": i, "steps": n, "used": {...}}] (each
  /// rank's own usage at the last exchange) and "exchanges": {"count", "interval",
  /// "mean_seconds"} (this rank's). For one rank to write (rank 0), after end_run.
  void write_json_report(std::ostream& out) const { write_report(out, nullptr); }
  /// The same with the controller's section ("controller", as frugal::write_json_report(out, b,
  /// ctl) writes it): the decisions, which every rank took alike.
  void write_json_report(std::ostream& out, const controller& ctl) const { write_report(out, &ctl); }

  /// A table of each rank's own figures at the last exchange (steps, wall, cpu, flops, peak
  /// heap, user units), and the exchanges' cost on this rank.
  void print_ranks(std::ostream& out) const {
    std::vector<std::string> unit_names;
    for (const usage& u : rank_usage_)
      for (const auto& unit : u.units)
        if (std::find(unit_names.begin(), unit_names.end(), unit.first) == unit_names.end())
          unit_names.push_back(unit.first);
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> head = {"rank", "steps", "wall"};
    if (run_->measures_cpu()) head.push_back("cpu");
    head.push_back("flops");
    if (run_->measures_peak()) head.push_back("peak_bytes");
    for (const std::string& n : unit_names) head.push_back(n);
    rows.push_back(head);
    for (std::size_t i = 0; i < rank_usage_.size(); ++i) {
      const usage& u = rank_usage_[i];
      std::vector<std::string> row = {std::to_string(i), std::to_string(i < rank_steps_.size() ? rank_steps_[i] : 0),
                                      frugal::format_quantity(resource::wall, u[resource::wall])};
      if (run_->measures_cpu()) row.push_back(frugal::format_quantity(resource::cpu, u[resource::cpu]));
      row.push_back(frugal::format_quantity(resource::flops, u[resource::flops]));
      if (run_->measures_peak()) row.push_back(frugal::format_quantity(resource::peak_bytes, u[resource::peak_bytes]));
      for (const std::string& n : unit_names) row.push_back(detail::shortest(u.of(n)));
      rows.push_back(row);
    }
    frugal::detail::print_table(out, rows, "  ");
    out << "  exchanges: " << stats_.exchanges << ", every " << interval_ << " step" << (interval_ == 1 ? "" : "s")
        << ", " << frugal::detail::units_impl::sig3(stats_.mean_seconds() * 1e6) << " us each on rank " << rank_ << '\n';
  }

 private:
  void write_report(std::ostream& out, const controller* ctl) const {
    frugal::detail::json_writer w(out);
    w.begin_object();
    frugal::detail::json_report_members(w, *run_);
    if (ctl) {
      w.key("controller");
      frugal::detail::json_controller(w, *ctl);
    }
    w.key("ranks");
    w.begin_array();
    for (std::size_t i = 0; i < rank_usage_.size(); ++i) {
      const usage& u = rank_usage_[i];
      w.begin_object();
      w.key("rank");
      w.value(static_cast<std::uint64_t>(i));
      w.key("steps");
      w.value(i < rank_steps_.size() ? rank_steps_[i] : 0);
      w.key("used");
      w.begin_object();
      for (resource r : all_resources) {
        if (r == resource::cost || r == resource::energy) continue;
        w.key(std::string(to_string(r)));
        frugal::detail::json_amount(w, u[r]);
      }
      w.key("units");
      frugal::detail::json_units(w, u.units);
      w.end_object();
      w.end_object();
    }
    w.end_array();
    w.key("exchanges");
    w.begin_object();
    w.key("count");
    w.value(stats_.exchanges);
    w.key("interval");
    w.value(static_cast<std::uint64_t>(interval_));
    w.key("mean_seconds");
    w.value(stats_.mean_seconds());
    w.end_object();
    w.end_object();
    out << '\n';
  }

  struct shared {
    job* owner = nullptr;
  };

  template <class T>
  static MPI_Datatype datatype() noexcept {
    if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
    else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
    else if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
    else return MPI_UINT64_T;
  }

  [[noreturn]] static void on_terminate() noexcept {
    std::string what = "std::terminate was called";
    if (std::exception_ptr e = std::current_exception()) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        what = std::string("an exception escaped: ") + x.what();
      } catch (...) {
        what = "an exception of unknown type escaped";
      }
    }
    if (job* j = detail::active_job.load(); j && j->size_ > 1) j->abort(what, 71);
    if (detail::previous_terminate) detail::previous_terminate();
    std::abort();
  }

  void check_attached(const controller& ctl, const char* where) const {
    if (ctl_ != &ctl)
      throw std::logic_error(std::string("frugal::mpi::job::") + where +
                             ": the controller is not attached to this job (job.attach(ctl) first)");
  }

  void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(rc, text, &length);
    abort(std::string(what) + " failed: " + std::string(text, static_cast<std::size_t>(length)), 72);
  }

  /// Polls until the collective completes; ends the job when the others do not arrive in time.
  void wait(MPI_Request& request, const char* what) {
    using clock = std::chrono::steady_clock;
    const clock::time_point start = clock::now();
    clock::time_point fired_at{};
    bool fired_seen = false;
    for (;;) {
      int done = 0;
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
      if (done) return;
      const clock::time_point now = clock::now();
      const double waited = std::chrono::duration<double>(now - start).count();
      if (waited > options_.timeout_seconds())
        abort(std::string(what) + ": waited " + detail::shortest(waited) +
                  " s for ranks that did not arrive (collective_timeout " + detail::shortest(options_.timeout_seconds()) + " s)",
              73);
      if (deadline_ && deadline_->load(std::memory_order_acquire)) {
        if (!fired_seen) {
          fired_seen = true;
          fired_at = now;
        }
        const double since = std::chrono::duration<double>(now - fired_at).count();
        if (since > options_.grace_seconds())
          abort(std::string(what) + ": the hard deadline fired and the other ranks did not arrive within " +
                    detail::shortest(options_.grace_seconds()) + " s (deadline_grace)",
                74);
      }
      // MPI's non-blocking collectives progress only inside MPI calls, so the first millisecond
      // polls back to back (yielding the core to whoever needs it): a collective on one machine
      // takes microseconds. Past that a rank is waiting for a slow one, and sleeps between polls
      // to leave it the cores.
      if (waited < 1e-3)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.1 ? 50 : 1000));
    }
  }

  void allgather_bytes(const void* mine, void* all, std::size_t bytes, const char* what) {
    MPI_Request request;
    check(MPI_Iallgather(mine, static_cast<int>(bytes), MPI_BYTE, all, static_cast<int>(bytes), MPI_BYTE, comm_, &request),
          what);
    wait(request, what);
  }

  /// Every rank's `mine` (lengths already exchanged in `records[i].length` or reason_length).
  template <class Record>
  std::vector<std::string> allgather_texts(const std::string& mine, const std::vector<Record>& records, const char* what) {
    std::vector<std::string> texts(records.size());
    std::vector<int> counts(records.size()), displs(records.size());
    std::size_t total = 0;
    for (std::size_t i = 0; i < records.size(); ++i) {
      const std::uint64_t n = length_of(records[i]);
      counts[i] = static_cast<int>(n);
      displs[i] = static_cast<int>(total);
      total += n;
    }
    if (total == 0) return texts;
    if (total > static_cast<std::size_t>(std::numeric_limits<int>::max()))
      abort(std::string(what) + ": the ranks' words exceed 2 GiB", 75);
    std::vector<char> buffer(total);
    MPI_Request request;
    check(MPI_Iallgatherv(mine.data(), static_cast<int>(mine.size()), MPI_CHAR, buffer.data(), counts.data(),
                          displs.data(), MPI_CHAR, comm_, &request),
          what);
    wait(request, what);
    for (std::size_t i = 0; i < records.size(); ++i)
      texts[i].assign(buffer.data() + displs[i], static_cast<std::size_t>(counts[i]));
    return texts;
  }
  static std::uint64_t length_of(const detail::vote_record& r) noexcept { return r.reason_length; }
  static std::uint64_t length_of(const detail::pending_stop& r) noexcept { return r.length; }

  /// The usage exchange: every rank's own figures to every rank; the budget then reads the
  /// job's. Also where every_auto chooses the next interval.
  void exchange_usage() {
    const auto start = std::chrono::steady_clock::now();
    const usage own = run_->local_snapshot(false);
    detail::rank_record mine;
    std::memset(&mine, 0, sizeof mine);
    for (resource r : all_resources) mine.by_resource[static_cast<std::size_t>(r)] = own[r];
    mine.exchange_seconds = stats_.last_seconds;
    const std::uint64_t steps_since = steps_ - steps_at_exchange_;
    mine.step_seconds = steps_since > 0 ? std::chrono::duration<double>(start - last_exchange_).count() /
                                              static_cast<double>(steps_since)
                                        : 0;
    mine.steps = steps_;
    for (const auto& [name, amount] : own.units) {
      if (mine.unit_count == FRUGAL_MAX_UNITS) break;
      detail::rank_record::unit_entry& e = mine.units[mine.unit_count++];
      std::memcpy(e.name, name.data(), std::min(name.size(), max_unit_name_length));
      e.amount = amount;
    }
    std::vector<detail::rank_record> all(static_cast<std::size_t>(size_));
    allgather_bytes(&mine, all.data(), sizeof mine, "usage exchange");

    usage peers;
    rank_steps_.assign(all.size(), 0);
    double slowest_exchange = 0, slowest_step = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
      usage& u = rank_usage_[i];
      u = usage{};
      for (resource r : all_resources) u.by_resource[static_cast<std::size_t>(r)] = all[i].by_resource[static_cast<std::size_t>(r)];
      for (std::uint32_t k = 0; k < all[i].unit_count && k < FRUGAL_MAX_UNITS; ++k) {
        const detail::rank_record::unit_entry& e = all[i].units[k];
        u.units.emplace_back(std::string(e.name, strnlen(e.name, sizeof e.name)), e.amount);
      }
      rank_steps_[i] = all[i].steps;
      slowest_exchange = std::max(slowest_exchange, all[i].exchange_seconds);
      slowest_step = std::max(slowest_step, all[i].step_seconds);
      if (static_cast<int>(i) == rank_) continue;
      for (resource r : all_resources) {
        double& p = peers.by_resource[static_cast<std::size_t>(r)];
        if (detail::summed(r)) p += u[r];
        if (detail::highest(r)) p = std::max(p, u[r]);
      }
      for (const auto& [name, amount] : u.units) {
        bool found = false;
        for (auto& [n, v] : peers.units)
          if (n == name) {
            v += amount;
            found = true;
          }
        if (!found) peers.units.emplace_back(name, amount);
      }
    }
    // The peers' rate per step since the previous exchange, for extrapolating until the next.
    const std::uint64_t steps_between = steps_ - steps_at_exchange_;
    rate_ = usage{};
    if (steps_between > 0) {
      for (resource r : all_resources)
        if (detail::summed(r))
          rate_.by_resource[static_cast<std::size_t>(r)] =
              std::max(0.0, (peers[r] - peers_at_exchange_[r]) / static_cast<double>(steps_between));
      for (const auto& [name, amount] : peers.units)
        rate_.units.emplace_back(name, std::max(0.0, (amount - peers_at_exchange_.of(name)) / static_cast<double>(steps_between)));
    }
    run_->set_peer_usage(peers);
    peers_at_exchange_ = std::move(peers);
    steps_at_exchange_ = steps_;
    steps_since_exchange_ = 0;
    exchanged_ = true;

    if (options_.automatic() && slowest_exchange > 0 && slowest_step > 0) {
      const double steps = std::ceil(slowest_exchange / (options_.auto_fraction() * slowest_step));
      interval_ = static_cast<std::size_t>(std::clamp(steps, 1.0, static_cast<double>(options_.auto_max_steps())));
      if (ctl_) ctl_->set_decision_horizon(interval_);
    }
    const auto end = std::chrono::steady_clock::now();
    last_exchange_ = end;
    usage_seconds_ = std::chrono::duration<double>(end - start).count();
    ++stats_.exchanges;
    stats_.last_seconds = usage_seconds_;
    stats_.seconds += usage_seconds_;
  }

  /// Between exchanges: the peers' usage at their last exchange plus their rate since.
  void extrapolate_peers() {
    if (!exchanged_) return;
    const double k = static_cast<double>(steps_ - steps_at_exchange_);
    usage estimate = peers_at_exchange_;
    for (resource r : all_resources)
      if (detail::summed(r)) estimate.by_resource[static_cast<std::size_t>(r)] += k * rate_[r];
    for (auto& [name, amount] : estimate.units) amount += k * rate_.of(name);
    run_->set_peer_usage(estimate);
  }

  template <class F>
  decision checkpoint_call(bool agreeing, const F& call) {
    struct reset {
      job* j;
      ~reset() {
        j->in_checkpoint_ = false;
        j->agreeing_ = false;
      }
    } guard{this};
    in_checkpoint_ = true;
    agreeing_ = agreeing;
    return call();
  }

  /// The controller's agreement (controller::agree_with): on exchange steps, every rank's vote
  /// merged; between them, the rank's own decision waits (a stop agreed earlier stands).
  void agree(decision_vote& vote, checkpoint) {
    if (!in_checkpoint_)
      throw std::logic_error(
          "frugal::mpi::job: a checkpoint of the job's controller outside job.end_step / job.end_epoch (every rank "
          "must take the same decision at the same step: call the job's)");
    if (!agreeing_) {
      if (vote.repeats_stop) return;
      decision_vote wait_for_exchange;
      wait_for_exchange.batch_size = ctl_ ? ctl_->batch_size() : 0;
      vote = wait_for_exchange;
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    detail::vote_record mine;
    std::memset(&mine, 0, sizeof mine);
    mine.actions = vote.actions;
    mine.cause = static_cast<std::uint8_t>(vote.cause);
    mine.batch_size = vote.batch_size;
    mine.prune_fraction = vote.prune_fraction;
    mine.quantize_bits = vote.quantize_bits;
    mine.prune_rule = vote.prune_rule;
    mine.quantize_rule = vote.quantize_rule;
    mine.repeats_stop = vote.repeats_stop ? 1 : 0;
    // Words travel only when the decision is more than "continue".
    const std::string words = vote.actions ? vote.reason : std::string();
    mine.reason_length = words.size();
    std::vector<detail::vote_record> all(static_cast<std::size_t>(size_));
    allgather_bytes(&mine, all.data(), sizeof mine, "decision agreement");
    const std::vector<std::string> texts = allgather_texts(words, all, "decision agreement (words)");
    std::vector<decision_vote> votes(all.size());
    for (std::size_t i = 0; i < all.size(); ++i) {
      decision_vote& v = votes[i];
      v.actions = all[i].actions;
      v.cause = static_cast<frugal::stop_reason>(all[i].cause);
      v.batch_size = static_cast<std::size_t>(all[i].batch_size);
      v.prune_fraction = all[i].prune_fraction;
      v.quantize_bits = all[i].quantize_bits;
      v.prune_rule = static_cast<std::size_t>(all[i].prune_rule);
      v.quantize_rule = static_cast<std::size_t>(all[i].quantize_rule);
      v.repeats_stop = all[i].repeats_stop != 0;
      v.reason = texts[i];
    }
    const bool repeats = vote.repeats_stop;
    vote = merge_votes(votes, ctl_ ? ctl_->batch_size() : 0);
    vote.repeats_stop = repeats;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stats_.seconds += seconds;
    stats_.last_seconds = usage_seconds_ + seconds;
  }

  MPI_Comm comm_;
  budget* run_;
  job_options options_;
  std::size_t interval_;
  std::shared_ptr<shared> shared_;
  int uncaught_;
  int rank_ = 0;
  int size_ = 1;
  bool owns_terminate_ = false;
  controller* ctl_ = nullptr;
  const std::atomic<bool>* deadline_ = nullptr;
  std::function<void(const std::string&)> on_abort_;

  bool in_checkpoint_ = false;
  bool agreeing_ = false;
  std::uint64_t steps_ = 0;
  std::uint64_t steps_since_exchange_ = 0;
  std::uint64_t steps_at_exchange_ = 0;
  bool exchanged_ = false;
  usage peers_at_exchange_;
  usage rate_;
  std::vector<usage> rank_usage_;
  std::vector<std::uint64_t> rank_steps_;
  std::chrono::steady_clock::time_point last_exchange_;
  double usage_seconds_ = 0;
  exchange_stats stats_;
};

/// MPI for the program's life: MPI_Init_thread(MPI_THREAD_FUNNELED) when made, MPI_Finalize
/// when destroyed (unless MPI was initialised already, or is finalised already). Throws
/// std::runtime_error when MPI cannot give FUNNELED.
class environment {
 public:
  /// Initialises MPI with the program's arguments (unless it is already).
  environment(int& argc, char**& argv) {
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (initialised) return;
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    owns_ = true;
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      throw std::runtime_error("frugal::mpi::environment: MPI does not provide MPI_THREAD_FUNNELED");
    }
  }
  environment(const environment&) = delete;
  environment& operator=(const environment&) = delete;
  /// Finalises MPI, if this environment initialised it.
  ~environment() {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (owns_ && !finalised) MPI_Finalize();
  }
  /// MPI_COMM_WORLD's rank of this process.
  [[nodiscard]] static int world_rank() {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
  }
  /// MPI_COMM_WORLD's size.
  [[nodiscard]] static int world_size() {
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
  }

 private:
  bool owns_ = false;
};

}  // namespace frugal::mpi
