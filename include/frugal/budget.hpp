/// @file
/// The budget tree: a named allotment of wall time, CPU time, FLOPs, heap and user units, with
/// children that charge their parents. Budgets hold the charges; scopes (scope.hpp) make them.
#pragma once

#include <frugal/clock.hpp>
#include <frugal/config.hpp>
#include <frugal/detail/asymmetric_fence.hpp>
#include <frugal/detail/heap.hpp>
#include <frugal/detail/ledger.hpp>
#include <frugal/detail/listeners.hpp>
#include <frugal/detail/trace_log.hpp>
#include <frugal/energy.hpp>
#include <frugal/meter.hpp>
#include <frugal/price.hpp>
#include <frugal/process_memory.hpp>
#include <frugal/units.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace frugal {

/// What one stage (a budget and a stage name) cost, aggregated over threads. Charges are
/// inclusive: a "step" stage includes the "forward" scopes opened inside it.
struct stage_stats {
  /// The stage's name.
  std::string name;
  std::uint64_t calls = 0;      ///< scopes that opened the stage (workers continuing one: not counted)
  double wall_seconds = 0;      ///< summed over those scopes
  /// FLOPs charged inside the stage's scopes.
  std::uint64_t flops = 0;
  /// Heap allocations made inside the stage's scopes (needs the allocation hooks).
  std::uint64_t allocations = 0;
  /// Requested heap bytes allocated inside the stage's scopes (needs the allocation hooks).
  std::uint64_t alloc_bytes = 0;
  /// The largest rise of one thread's live heap (usable bytes) within one scope of the stage,
  /// above its level when the scope opened: the rise a step adds to the resident base, not the
  /// budget's peak_bytes level (a height). Needs the allocation hooks.
  std::int64_t peak_rise_bytes = 0;
  std::vector<std::pair<std::string, double>> units;  ///< only units that were charged

  /// The amount of user unit `unit` charged to the stage; 0 when none was.
  [[nodiscard]] double units_of(std::string_view unit) const noexcept {
    for (const auto& [n, v] : units)
      if (n == unit) return v;
    return 0;
  }
};

/// Everything a budget has used, read in one pass (cheaper than one used() per resource).
struct usage {
  /// Every builtin resource, indexed by `resource`, in its unit (seconds, count, bytes).
  std::array<double, resource_count> by_resource{};
  /// User units charged, (name, amount), in registration order.
  std::vector<std::pair<std::string, double>> units;
  /// The amount of `r`, in its unit.
  [[nodiscard]] double operator[](resource r) const noexcept { return by_resource[static_cast<std::size_t>(r)]; }
  /// The amount of user unit `unit`; 0 when none was charged.
  [[nodiscard]] double of(std::string_view unit) const noexcept {
    for (const auto& [n, v] : units)
      if (n == unit) return v;
    return 0;
  }
};

/// What a budget had used in an earlier process, carried into this one (budget::carry; the state
/// document of state.hpp saves and restores it): a resumed run continues where the earlier one
/// stopped. Amounts are inclusive, as used() is (a budget's include its children's).
struct carried_usage {
  std::string name;                    ///< the budget's: children are matched by name
  usage used;                          ///< every resource (a level: the height reached) and user unit
  /// The budget's stages, as stages() read them.
  std::vector<stage_stats> stages;
  /// The children's carried usage, matched by name when carried.
  std::vector<carried_usage> children;
};

namespace detail {
struct budget_access;
inline std::atomic<std::uint64_t> next_budget_uid{1};

// Guards every thread's list of blocks (thread_block::list and its links): taken when a thread
// takes a block, when it exits and when a budget dies; never on the hot path. Taken before any
// budget's mutex.
inline std::mutex thread_blocks_mutex;

inline void unlink_block(thread_block& b) noexcept {
  if (b.list_prev)
    b.list_prev->list_next = b.list_next;
  else
    b.list->head = b.list_next;
  if (b.list_next) b.list_next->list_prev = b.list_prev;
  b.list = nullptr;
  b.list_prev = b.list_next = nullptr;
}

// Used over limit: 0 when unlimited; a zero limit reads as 1 (used up / at the ceiling).
[[nodiscard]] inline double fraction_of(double used, double limit) noexcept {
  if (limit == std::numeric_limits<double>::infinity()) return 0;
  if (limit <= 0) return 1;
  return used / limit;
}

// The aggregates over one reading of a budget (its usage and its limits), each covering one
// kind of resource. The budget's members read both and call these; a report that has already
// read them calls these too, so its figures agree with each other and with the budget's.

// The largest fraction used over the limited consumables (builtins and every user unit).
[[nodiscard]] inline double consumed_fraction(const usage& u, const limits& l) {
  double worst = 0;
  for (resource r : all_resources)
    if (const auto lim = l.get(r); lim && is_consumable(r)) worst = std::max(worst, fraction_of(u[r], *lim));
  for (const auto& [unit, lim] : l.unit_limits()) worst = std::max(worst, fraction_of(u.of(unit), lim));
  return worst;
}

// The limited consumables whose use has reached the limit, builtins first, in enum order.
[[nodiscard]] inline std::vector<std::string> exhausted_consumables(const usage& u, const limits& l) {
  std::vector<std::string> out;
  for (resource r : all_resources)
    if (const auto lim = l.get(r); lim && is_consumable(r) && u[r] >= *lim) out.push_back(std::string(to_string(r)));
  for (const auto& [unit, lim] : l.unit_limits())
    if (u.of(unit) >= lim) out.push_back(unit);
  return out;
}

// The limited levels standing above their ceiling. Strictly above: a heap that reaches exactly
// its limit fits, which is what a limit on a height means.
[[nodiscard]] inline std::vector<std::string> crossed_levels(const usage& u, const limits& l) {
  std::vector<std::string> out;
  for (resource r : all_resources)
    if (const auto lim = l.get(r); lim && is_level(r) && u[r] > *lim) out.push_back(std::string(to_string(r)));
  return out;
}
}  // namespace detail

/// A named allotment of resources (limits), charged by the scopes opened on it and on its children,
/// on any thread. Thread-safe; not copyable. Destroy it only after every scope on it (or on a
/// descendant) has closed.
class budget {
 public:
  /// A root budget named `name` (non-empty, else std::invalid_argument) with limits `l`.
  explicit budget(std::string name, frugal::limits l = {}) : budget(std::move(name), std::move(l), nullptr) {}

  budget(const budget&) = delete;
  budget& operator=(const budget&) = delete;

  ~budget() {
    FRUGAL_ASSERT(active_threads() == 0,
                  "budget destroyed while one of its scopes (or a descendant's) is still open");
    detail::release_watcher(watcher_);
    detail::forget_trace_names(uid_);
    forget_threads();
  }

  /// A child budget, owned by this one and destroyed with it. Everything charged to the child
  /// is charged to this budget too; the child's limits are its own share.
  budget& child(std::string name, frugal::limits l = {}) {
    const detail::bookkeeping own_allocations;
    check_name(name, "child");
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& c : children_)
      if (c->name_ == name)
        throw std::invalid_argument("frugal::budget::child: budget '" + name_ +
                                    "' already has a child named '" + name + "'");
    check_currency(l, price_, "child '" + name + "''s limits");
    budget& made = *children_.adopt(new budget(std::move(name), std::move(l), this));
    // Usage carried for a child the program makes only now (see carry()).
    for (auto it = pending_children_.begin(); it != pending_children_.end(); ++it)
      if (it->name == made.name_) {
        made.apply_carried(*it, 0);
        pending_children_.erase(it);
        break;
      }
    return made;
  }

  /// The child named `name`; nullptr when there is none.
  [[nodiscard]] budget* find_child(std::string_view name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (budget* c : children_)
      if (c->name_ == name) return c;
    return nullptr;
  }

  /// The children, in the order they were made.
  [[nodiscard]] std::vector<budget*> children() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<budget*> out;
    for (budget* c : children_) out.push_back(c);
    return out;
  }

  /// The budget's own name (path() is the full one).
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// The budget this one is a child of; nullptr for a root.
  [[nodiscard]] budget* parent() const noexcept { return parent_; }
  /// "train/eval" for a child named eval of a root named train.
  [[nodiscard]] std::string path() const { return parent_ ? parent_->path() + "/" + name_ : name_; }

  /// A copy of the current limits.
  [[nodiscard]] frugal::limits limits() const {
    const detail::bookkeeping own_allocations;
    std::lock_guard<std::mutex> lock(mutex_);
    return limits_;
  }

  /// Replaces the limits; usage so far is kept. A new CPU limit starts measuring CPU at the
  /// next activation of the budget on each thread. Then calls every limits listener, so that a
  /// thread sleeping until the old limit (the deadline watchdog) re-reads the new one at once.
  void set_limits(frugal::limits l) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      check_currency(l, price_, "set_limits");
      limits_ = std::move(l);
      update_measure_cpu_locked();
    }
    // Under the listeners' own lock, not mutex_: a listener reads the limits back.
    listeners_.call_all();
  }

  /// Registers f to be called after every set_limits(), on the thread that called it; returns
  /// the id remove_limits_listener() takes. f must be quick and noexcept, may read this budget,
  /// and must not set its limits or add or remove listeners (it runs under their lock). Nothing
  /// on the hot path (scopes, hooks) ever looks at the listeners.
  [[nodiscard]] std::uint64_t add_limits_listener(std::function<void()> f) {
    if (!f) throw std::invalid_argument("frugal::budget::add_limits_listener: f must not be empty");
    return listeners_.add(std::move(f));
  }

  /// Unregisters a listener (an unknown id does nothing). When it returns, no call of the
  /// listener is running and none will start, so its owner may be destroyed.
  void remove_limits_listener(std::uint64_t id) noexcept { listeners_.remove(id); }

  /// CPU time is measured only for budgets with a CPU limit, or after this call: reading a
  /// thread's CPU clock is a system call on virtual machines.
  void measure_cpu(bool on = true) {
    std::lock_guard<std::mutex> lock(mutex_);
    measure_cpu_requested_ = on;
    update_measure_cpu_locked();
  }
  /// Whether CPU time is measured (a CPU limit, a price on core-hours, or measure_cpu()).
  [[nodiscard]] bool measures_cpu() const noexcept { return measure_cpu_.load(std::memory_order_relaxed); }

  /// Peak heap is measured whenever the allocation hooks are installed, however many budgets
  /// there are (without them, reports show the peak as not measured, not as 0).
  [[nodiscard]] bool measures_peak() const noexcept { return watcher_ != nullptr; }

  /// Whether the resident set can be read (from /proc/self/statm): false where it cannot, and
  /// then reports show rss_bytes as not measured, not as 0. Reads it, which counts as a read.
  [[nodiscard]] bool measures_rss() const noexcept { return read_rss().has_value(); }

  // --- money and energy ---

  /// Prices the budget's resources (price.hpp): from now on used(resource::cost) is `p` applied to
  /// its wall, cpu and flops -- those so far included -- so cost always agrees with them. Applies
  /// to every descendant too, and children made later take it. A price on core-hours turns on CPU
  /// measuring (measure_cpu()): CPU time before that was not measured and costs nothing. Throws
  /// std::invalid_argument (nothing changes) when the cost limit of this budget or of a
  /// descendant names another currency. Then the limits listeners run: the deadline watchdog
  /// re-reads the wall a cost limit leaves. A controller built on this budget reads the new
  /// price at controller::reload_limits().
  void set_price(frugal::price p) {
    const detail::bookkeeping own_allocations;
    check_currency_in_subtree(p);
    apply_price(p);
  }
  /// The price (empty when none is set).
  [[nodiscard]] frugal::price price() const {
    const detail::bookkeeping own_allocations;
    std::lock_guard<std::mutex> lock(mutex_);
    return price_;
  }
  /// Whether cost is measured: a price is set. Without one, used(resource::cost) is 0 and reports
  /// say cost is not measured; a controller refuses a cost limit.
  [[nodiscard]] bool measures_cost() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return !price_.empty();
  }

  /// Reads energy from `counter` from now on (a counter over another root, a test's fake tree);
  /// the budget's energy so far restarts from 0 here (an earlier process's carried amount stays).
  /// Applies to every descendant too, and children made later take it. The default is
  /// system_energy_counter(). `counter` must outlive the budget.
  void set_energy_counter(energy_counter& counter) {
    const std::optional<double> base = counter.joules();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      energy_ = &counter;
      energy_base_ = base.value_or(0);
    }
    for (budget* c : children()) c->set_energy_counter(counter);
  }
  /// Whether energy is measured: the counter reads RAPL domains (energy_unavailable() says why not).
  [[nodiscard]] bool measures_energy() const { return energy_counter_now().available(); }
  /// Why energy is not measured ("" when it is): the counter's reason, naming the file and cause.
  [[nodiscard]] std::string energy_unavailable() const { return energy_counter_now().why_unavailable(); }

  /// The limit in the resource's unit (seconds, count, bytes); +infinity when unlimited.
  [[nodiscard]] double limit(resource r) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return limits_.get(r).value_or(unlimited);
  }
  /// The limit of a user unit (or a builtin by name); +infinity when unlimited.
  [[nodiscard]] double limit(std::string_view unit) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return limits_.get(unit).value_or(unlimited);
  }

  /// Used so far, in the resource's unit: seconds for wall and cpu, a count for flops and
  /// allocations, bytes for alloc_bytes, peak_bytes and rss_bytes. For a level it is the height
  /// reached, not an amount spent.
  ///
  /// wall: the time during which at least one scope of this budget or a descendant was open
  ///   on any thread (the union of those intervals, not a sum over threads).
  /// cpu:  CPU time of the threads while they had such a scope open; a thread's share is
  ///   added when its outermost such scope closes (the calling thread's share also live).
  /// peak_bytes: the highest process live heap while the budget was active (the allocation hooks).
  /// rss_bytes: the highest process resident set at this budget's reads: this call, snapshot(),
  ///   measures_rss() and reports read it now (a system call, so never on a scope's path) and
  ///   raise the budget's mark and its ancestors'. Unreadable: the mark stays (see measures_rss()).
  /// cost: the price applied to wall, cpu and flops as read now (0 without a price: measures_cost()).
  /// energy: joules the machine's RAPL domains used since the budget was made (or since
  ///   set_energy_counter()), read now -- a machine-wide figure, children's included, other
  ///   processes' too; never on a scope's path. Unreadable: what was carried only (measures_energy()).
  /// the rest: charges made while such a scope was open, each counted once.
  [[nodiscard]] double used(resource r) const {
    detail::flush_pending(detail::this_thread);
    switch (r) {
      case resource::wall: return with_peers(r, wall_seconds());
      case resource::cpu: return with_peers(r, cpu_seconds());
      case resource::flops:
      case resource::allocations:
      case resource::alloc_bytes: {
        double total = carried_of(r);
        for_each_block_in_subtree([&](const detail::thread_block& b) { total += additive(b, r); });
        return with_peers(r, total);
      }
      case resource::peak_bytes: return with_peers(r, peak_bytes());
      case resource::rss_bytes:
        (void)read_rss();
        return with_peers(r, rss_high());
      case resource::cost: {
        const frugal::price p = price();
        return p.empty() ? 0 : p.cost(used(resource::wall), used(resource::cpu), used(resource::flops));
      }
      case resource::energy: return energy_joules();
    }
    return 0;
  }

  /// Used so far of user unit `unit`, summed over the budget's scopes and its children's; 0 for a
  /// unit never registered.
  [[nodiscard]] double used(std::string_view unit) const {
    detail::flush_pending(detail::this_thread);
    const auto index = detail::find_unit(unit);
    if (!index) return 0;
    double total = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      total = carried_units_[*index] + peer_units_[*index];
    }
    for_each_block_in_subtree([&](const detail::thread_block& b) { total += b.units[*index].get(); });
    return total;
  }

  /// Everything, the resident set read now included.
  [[nodiscard]] usage snapshot() const { return read_usage(true, true, true); }
  /// The same without the peers' usage (set_peer_usage): what this process used (and carried).
  /// Without `energy`, the energy counter is not read (a file read per RAPL domain; energy 0).
  [[nodiscard]] usage local_snapshot(bool energy = true) const { return read_usage(true, energy, false); }

  /// A consumable: what is left to spend, limit - used. A level: the headroom, limit - the
  /// height reached. Never below 0 (crossed_levels() tells a crossed ceiling apart); +infinity
  /// when unlimited.
  [[nodiscard]] double remaining(resource r) const { return std::max(0.0, limit(r) - used(r)); }
  /// remaining(resource) for user unit `unit`: limit(unit) - used(unit), never below 0.
  [[nodiscard]] double remaining(std::string_view unit) const {
    return std::max(0.0, limit(unit) - used(unit));
  }

  /// Used over limit for one resource: for a consumable the share spent, for a level its height
  /// over its ceiling (above 1 once crossed). 0 when unlimited; a zero limit reads as 1.
  [[nodiscard]] double fraction_used(resource r) const {
    const double l = limit(r);
    return detail::fraction_of(used(r), l);
  }

  /// "Budget used": the largest fraction used over the limited consumables (wall, cpu, flops,
  /// allocations, alloc_bytes, cost, energy, every user unit); 0 when none is limited. Levels are left out: a
  /// heap near its ceiling has not used up any of the budget (see crossed_levels()).
  [[nodiscard]] double fraction_used() const {
    const detail::bookkeeping own_allocations;
    const frugal::limits l = limits();
    if (!limits_a_consumable(l)) return 0;
    return detail::consumed_fraction(read_usage(false, l.has(resource::energy), true), l);
  }

  /// The limited consumables whose use has reached the limit (names as in limits::parse).
  /// Levels are never exhausted: see crossed_levels().
  [[nodiscard]] std::vector<std::string> exhausted_resources() const {
    const detail::bookkeeping own_allocations;
    const frugal::limits l = limits();
    if (!limits_a_consumable(l)) return {};
    return detail::exhausted_consumables(read_usage(false, l.has(resource::energy), true), l);
  }

  /// Some consumable's limit reached. Running out is a decision for the caller (or the
  /// controller), not an error.
  [[nodiscard]] bool exhausted() const { return !exhausted_resources().empty(); }

  /// The limited levels standing above their limit (names as in limits::parse); exactly at the
  /// limit is not crossed. A crossed level is its own state, answered by a smaller batch; it
  /// neither exhausts the budget nor moves fraction_used().
  [[nodiscard]] std::vector<std::string> crossed_levels() const {
    const detail::bookkeeping own_allocations;
    const frugal::limits l = limits();
    usage u;  // only the levels: nothing else is compared, and the peak is read without a lock
    for (resource r : all_resources)
      if (is_level(r) && l.has(r)) u.by_resource[static_cast<std::size_t>(r)] = used(r);
    return detail::crossed_levels(u, l);
  }

  /// Some level above its limit.
  [[nodiscard]] bool level_crossed() const { return !crossed_levels().empty(); }

  /// True while a scope of this budget or of a descendant is open on some thread.
  [[nodiscard]] bool active() const noexcept { return active_threads() > 0; }

  /// used(resource::wall) as a duration: the time at least one of its scopes was open.
  [[nodiscard]] std::chrono::duration<double> elapsed() const {
    return std::chrono::duration<double>(with_peers(resource::wall, wall_seconds()));
  }

  /// The charges of one stage of this budget; zero calls if no scope has opened it yet.
  [[nodiscard]] stage_stats stage(std::string_view stage_name) const {
    const detail::bookkeeping own_allocations;
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::uint32_t i = 0; i < stage_names_.size(); ++i)
      if (*stage_names_[i] == stage_name) return stage_locked(i);
    stage_stats s;
    s.name = std::string(stage_name);
    return s;
  }

  /// All stages of this budget, in the order they were first opened.
  [[nodiscard]] std::vector<stage_stats> stages() const {
    const detail::bookkeeping own_allocations;
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<stage_stats> out;
    for (std::uint32_t i = 0; i < stage_names_.size(); ++i) out.push_back(stage_locked(i));
    return out;
  }

  /// What limit() returns for an unlimited resource: +infinity.
  static constexpr double unlimited = std::numeric_limits<double>::infinity();

  // --- a budget shared by several processes ---

  /// The usage of the other processes that share this budget (an MPI job's other ranks, summed:
  /// <frugal/mpi.hpp> exchanges it), as of their last report; replaces the previous one. From
  /// now on every reading of this budget -- used(), snapshot(), remaining(), fraction_used(),
  /// exhausted(), reports, and so the controller -- is the job's: cpu, flops, allocations,
  /// alloc_bytes and user units add the peers' amounts; wall time, peak_bytes and rss_bytes
  /// are the larger of this process's and the peers' (the job's wall is its longest process's;
  /// a heap or resident-set limit holds per process); cost follows from wall, cpu and flops;
  /// energy stays this machine's (a machine-wide reading: processes sharing a machine would
  /// count it twice). Children, stages and local_snapshot() are this process's alone, and a
  /// parent's readings do not include a child's peers: set it on the budget the job shares. A
  /// negative or non-finite amount, or an invalid unit name, is std::invalid_argument, and
  /// nothing changes.
  void set_peer_usage(const usage& peers) {
    const detail::bookkeeping own_allocations;
    for (resource r : all_resources)
      if (const double v = peers[r]; !(std::isfinite(v) && v >= 0))
        throw std::invalid_argument("frugal::budget::set_peer_usage: budget '" + path() + "': " +
                                    std::string(to_string(r)) + " must be finite and >= 0, got " +
                                    detail::units_impl::shortest(v));
    std::array<double, FRUGAL_MAX_UNITS> units{};
    for (const auto& [unit, v] : peers.units) {
      if (auto problem = detail::units_impl::unit_name_problem(unit))
        throw std::invalid_argument("frugal::budget::set_peer_usage: budget '" + path() + "': unit '" + unit +
                                    "': " + *problem);
      if (!(std::isfinite(v) && v >= 0))
        throw std::invalid_argument("frugal::budget::set_peer_usage: budget '" + path() + "': unit " + unit +
                                    " must be finite and >= 0, got " + detail::units_impl::shortest(v));
    }
    for (const auto& [unit, v] : peers.units) units[detail::register_unit(unit)] += v;
    for (resource r : all_resources) peers_[static_cast<std::size_t>(r)].store(peers[r], std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mutex_);
    peer_units_ = units;
  }

  // --- resuming a run in a new process ---

  /// Carries usage over from an earlier process (state.hpp's restore calls it): from now on every
  /// reading -- used(), snapshot(), remaining(), fraction_used(), exhausted(), stages, reports, and
  /// so the controller's forecasts and the schedules -- is the earlier amount plus what runs here;
  /// a level is the larger of the two heights. Children are matched by name: an existing child
  /// takes its share now, one the program makes later with child() when it is made. Limits are
  /// not carried: this process's rule. `downtime` is the time between the two processes, kept
  /// for reports (downtime()) and charged to nothing.
  ///
  /// Allowed once, before this budget or any descendant has had a scope open (a usage measured
  /// here would otherwise be mixed with the carried one): else std::logic_error. A carried usage
  /// named differently, with a negative or non-finite amount, or an invalid unit or stage name is
  /// std::invalid_argument. Either way nothing changes. Then the limits listeners run, so a
  /// deadline watchdog re-reads the wall time left.
  void carry(const carried_usage& c, std::chrono::duration<double> downtime = std::chrono::duration<double>::zero()) {
    const detail::bookkeeping own_allocations;
    if (c.name != name_)
      throw std::invalid_argument("frugal::budget::carry: the usage carried is budget '" + c.name + "''s, not '" +
                                  name_ + "''s");
    if (!(std::isfinite(downtime.count()) && downtime.count() >= 0))
      throw std::invalid_argument("frugal::budget::carry: downtime must be finite and >= 0, got " +
                                  detail::units_impl::shortest(downtime.count()));
    check_carried(c, name_);
    if (resumed())
      throw std::logic_error("frugal::budget::carry: budget '" + path() + "' already carries an earlier usage");
    if (ever_active())
      throw std::logic_error("frugal::budget::carry: budget '" + path() +
                             "' (or a child) has already had a scope open: carry usage before any work runs");
    register_carried_units(c);
    apply_carried(c, downtime.count());
    listeners_.call_all();
  }

  /// Whether carry() gave this budget an earlier process's usage.
  [[nodiscard]] bool resumed() const noexcept { return resumed_.load(std::memory_order_acquire); }
  /// The usage carry() added (all zero when none): what the figures include from before.
  [[nodiscard]] usage carried() const {
    const detail::bookkeeping own_allocations;
    usage u;
    for (resource r : all_resources) u.by_resource[static_cast<std::size_t>(r)] = carried_of(r);
    // Cost is derived, never carried on its own: the carried resources at this process's price.
    u.by_resource[static_cast<std::size_t>(resource::cost)] =
        price().cost(u[resource::wall], u[resource::cpu], u[resource::flops]);
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint32_t n = detail::units_registered.count.load(std::memory_order_acquire);
    for (std::uint32_t i = 0; i < n; ++i)
      if (carried_units_[i] != 0) u.units.emplace_back(std::string(detail::unit_name(i)), carried_units_[i]);
    return u;
  }
  /// The time between the processes of a resumed run, all resumes together: not charged to the
  /// wall (0 when not resumed).
  [[nodiscard]] std::chrono::duration<double> downtime() const noexcept {
    return std::chrono::duration<double>(downtime_.load(std::memory_order_relaxed));
  }

 private:
  friend struct detail::budget_access;

  /// Refuses what no budget could have used, before anything changes (see carry()).
  static void check_carried(const carried_usage& c, const std::string& where) {
    const auto bad = [&](const std::string& what, double v) {
      throw std::invalid_argument("frugal::budget::carry: budget '" + where + "': " + what +
                                  " must be finite and >= 0, got " + detail::units_impl::shortest(v));
    };
    for (resource r : all_resources)
      if (const double v = c.used[r]; !(std::isfinite(v) && v >= 0)) bad(std::string(to_string(r)), v);
    for (const auto& [unit, v] : c.used.units) {
      if (auto problem = detail::units_impl::unit_name_problem(unit))
        throw std::invalid_argument("frugal::budget::carry: budget '" + where + "': " + *problem);
      if (!(std::isfinite(v) && v >= 0)) bad("unit " + unit, v);
    }
    for (const stage_stats& s : c.stages) {
      if (s.name.empty())
        throw std::invalid_argument("frugal::budget::carry: budget '" + where + "': a stage name must not be empty, got ''");
      if (!(std::isfinite(s.wall_seconds) && s.wall_seconds >= 0)) bad("stage " + s.name + " wall", s.wall_seconds);
      for (const auto& [unit, v] : s.units) {
        if (auto problem = detail::units_impl::unit_name_problem(unit))
          throw std::invalid_argument("frugal::budget::carry: budget '" + where + "': " + *problem);
        if (!(std::isfinite(v) && v >= 0)) bad("stage " + s.name + " unit " + unit, v);
      }
    }
    for (const carried_usage& child : c.children) {
      check_name(child.name, "child name");
      check_carried(child, where + "/" + child.name);
    }
  }

  /// A carried unit reads like one charged here: it needs its index.
  static void register_carried_units(const carried_usage& c) {
    for (const auto& unit : c.used.units) (void)detail::register_unit(unit.first);
    for (const stage_stats& s : c.stages)
      for (const auto& unit : s.units) (void)detail::register_unit(unit.first);
    for (const carried_usage& child : c.children) register_carried_units(child);
  }

  /// Whether a scope of this budget or a descendant has ever opened (a thread took a block).
  [[nodiscard]] bool ever_active() const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!blocks_.empty()) return true;
    for (const auto& ch : children_)
      if (ch->ever_active() || ch->resumed()) return true;
    return false;
  }

  /// Checked by carry(); the units registered.
  void apply_carried(const carried_usage& c, double downtime) {
    for (resource r : all_resources) carried_[static_cast<std::size_t>(r)].store(c.used[r], std::memory_order_relaxed);
    downtime_.store(downtime, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [unit, amount] : c.used.units)
      if (const auto index = detail::find_unit(unit)) carried_units_[*index] = amount;
    carried_stages_ = c.stages;
    // The stages appear in the earlier process's order, before any this one adds.
    for (const stage_stats& s : c.stages) {
      bool known = false;
      for (const std::string* n : stage_names_)
        if (*n == s.name) {
          known = true;
          break;
        }
      if (!known) stage_names_.adopt(new std::string(s.name));
    }
    for (const carried_usage& child : c.children) {
      budget* existing = nullptr;
      for (budget* ch : children_)
        if (ch->name_ == child.name) existing = ch;
      if (existing)
        existing->apply_carried(child, 0);
      else
        pending_children_.push_back(child);
    }
    resumed_.store(true, std::memory_order_release);
  }

  [[nodiscard]] double carried_of(resource r) const noexcept {
    return carried_[static_cast<std::size_t>(r)].load(std::memory_order_relaxed);
  }

  /// This process's amount of `r` combined with the peers' (set_peer_usage): the larger for
  /// wall and the levels, the sum for the other consumables; energy and cost as they are.
  [[nodiscard]] double with_peers(resource r, double own) const noexcept {
    const double peers = peers_[static_cast<std::size_t>(r)].load(std::memory_order_relaxed);
    switch (r) {
      case resource::wall:
      case resource::peak_bytes:
      case resource::rss_bytes: return std::max(own, peers);
      case resource::cost:
      case resource::energy: return own;
      default: return own + peers;
    }
  }

  /// Wall time is a union of intervals over threads. busy_ packs it in one atomic word so the
  /// union needs no lock: the low 22 bits count the threads that have the budget active (any
  /// number Linux can run), the other 42 hold (sum of busy-period ends - sum of busy-period
  /// starts) since origin_ns_ in ticks of 4096 ns; the ns below a tick go to the transition's
  /// thread block (thread_block::wall_rest_ns: a thread-owned add, not a second shared RMW), so
  /// wall stays exact to the ns (a read racing a first-in or last-out transition may be off by
  /// less than a tick until it lands). While active, wall = that sum + now. The sum fits while
  /// the budget is younger than 2^53 ns (104.2 days); a transition past that aborts with a
  /// message rather than wrap.
  static constexpr std::int64_t count_bits = detail::busy_count_bits;
  static constexpr std::int64_t count_mask = detail::busy_count_mask;
  static constexpr int tick_bits = 12;
  static constexpr std::int64_t tick_mask = (std::int64_t{1} << tick_bits) - 1;
  static constexpr std::int64_t max_age_ns = std::int64_t{1} << (63 - count_bits + tick_bits);  ///< a signed field
  static_assert(max_age_ns == std::int64_t{1} << 53);

  /// ns as the busy word holds them: whole ticks in its time field, the ns below a tick apart
  /// (in a thread block's wall_rest_ns). Exact for negative ns too (a sum of ends less starts
  /// while active): >> floors on every compiler frugal supports, and & keeps the rest, >= 0.
  struct busy_time {
    std::int64_t field;
    std::int64_t rest;
  };
  [[nodiscard]] static constexpr busy_time to_busy_time(std::int64_t ns) noexcept {
    return {(ns >> tick_bits) * (count_mask + 1), ns & tick_mask};
  }

  budget(std::string name, frugal::limits l, budget* parent)
      : name_(std::move(name)),
        parent_(parent),
        uid_(detail::next_budget_uid.fetch_add(1, std::memory_order_relaxed)),
        origin_ns_(wall_now_ns()),
        watcher_(take_peak_watcher()),
        busy_(watcher_ ? &watcher_->busy : &own_busy_),
        limits_(std::move(l)) {
    if (name_.empty()) {
      detail::release_watcher(watcher_);
      check_name(name_, "name");
    }
    // A child is priced and metered as its parent is (the caller, child(), holds the parent's lock).
    if (parent_) {
      price_ = parent_->price_;
      energy_ = parent_->energy_;
    }
    if (const auto base = energy_counter_now().joules()) energy_base_ = *base;
    update_measure_cpu_locked();
  }

  /// mutex_ held (or the budget not yet shared). CPU time is measured for a CPU limit, a price on
  /// core-hours, or when asked.
  void update_measure_cpu_locked() noexcept {
    measure_cpu_.store(measure_cpu_requested_ || limits_.has(resource::cpu) || price_.prices_cpu(),
                       std::memory_order_relaxed);
  }

  /// A cost limit naming a currency must name the price's (when the price names one).
  static void check_currency(const frugal::limits& l, const frugal::price& p, const std::string& where) {
    if (!l.currency().empty() && !p.currency().empty() && l.currency() != p.currency())
      throw std::invalid_argument("frugal::budget: " + where + ": the cost limit is in " + l.currency() +
                                  " but the price is in " + p.currency());
  }
  void check_currency_in_subtree(const frugal::price& p) const {
    check_currency(limits(), p, "set_price on '" + path() + "'");
    for (const budget* c : children()) c->check_currency_in_subtree(p);
  }
  void apply_price(const frugal::price& p) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      price_ = p;
      update_measure_cpu_locked();
    }
    for (budget* c : children()) c->apply_price(p);
    listeners_.call_all();
  }

  [[nodiscard]] energy_counter& energy_counter_now() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return energy_ ? *energy_ : system_energy_counter();
  }
  /// Joules since the budget was made (or its counter set), plus an earlier process's.
  [[nodiscard]] double energy_joules() const {
    energy_counter& counter = energy_counter_now();
    const std::optional<double> now = counter.joules();
    double base = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      base = energy_base_;
    }
    return (now ? std::max(0.0, *now - base) : 0.0) + carried_of(resource::energy);
  }

  /// With the allocation hooks every budget gets a watcher slot (they are not limited in
  /// number). One is missing only when memory for more slots is: then the budget is not made,
  /// rather than leave a peak_bytes limit silently unenforced.
  static detail::heap_watcher* take_peak_watcher() {
    if (!detail::hooks_installed()) return nullptr;
    if (detail::heap_watcher* w = detail::take_watcher(0)) return w;
    throw std::bad_alloc();
  }

  /// What snapshot() returns; without the levels for the aggregates over consumables, which
  /// would read the resident set for nothing, and without energy unless it is limited (a read of
  /// the counters' files).
  /// What snapshot() returns; with `peers`, the peers' usage (set_peer_usage) combined in.
  [[nodiscard]] usage read_usage(bool levels, bool energy, bool peers) const {
    const detail::bookkeeping own_allocations;
    detail::flush_pending(detail::this_thread);
    usage u;
    if (levels) {
      u.by_resource[static_cast<std::size_t>(resource::peak_bytes)] = peak_bytes();
      (void)read_rss();
      u.by_resource[static_cast<std::size_t>(resource::rss_bytes)] = rss_high();
    }
    u.by_resource[static_cast<std::size_t>(resource::wall)] = wall_seconds();
    u.by_resource[static_cast<std::size_t>(resource::cpu)] = cpu_seconds();
    if (energy)
      u.by_resource[static_cast<std::size_t>(resource::energy)] = energy_joules();
    std::array<double, FRUGAL_MAX_UNITS> units{};
    for (resource r : {resource::flops, resource::allocations, resource::alloc_bytes})
      u.by_resource[static_cast<std::size_t>(r)] = carried_of(r);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      units = carried_units_;
    }
    for_each_block_in_subtree([&](const detail::thread_block& b) {
      for (resource r : {resource::flops, resource::allocations, resource::alloc_bytes})
        u.by_resource[static_cast<std::size_t>(r)] += additive(b, r);
      for (std::size_t i = 0; i < units.size(); ++i) units[i] += b.units[i].get();
    });
    if (peers) {
      for (resource r : all_resources)
        if (r != resource::cost && r != resource::energy && (levels || !is_level(r)))
          u.by_resource[static_cast<std::size_t>(r)] = with_peers(r, u[r]);
      std::lock_guard<std::mutex> lock(mutex_);
      for (std::size_t i = 0; i < units.size(); ++i) units[i] += peer_units_[i];
    }
    const std::uint32_t n = detail::units_registered.count.load(std::memory_order_acquire);
    for (std::uint32_t i = 0; i < n; ++i)
      if (units[i] != 0) u.units.emplace_back(std::string(detail::unit_name(i)), units[i]);
    // From this very reading's wall, cpu and flops: a report's cost agrees with them exactly.
    if (const frugal::price p = price(); !p.empty())
      u.by_resource[static_cast<std::size_t>(resource::cost)] = p.cost(u[resource::wall], u[resource::cpu], u[resource::flops]);
    return u;
  }

  /// Reads the process's resident set now and raises this budget's mark and its ancestors' (a
  /// parent's figures include its children's, and the resident set is the process's).
  std::optional<std::int64_t> read_rss() const noexcept {
    const std::optional<std::int64_t> now = detail::read_resident_set();
    if (now)
      for (const budget* b = this; b; b = b->parent_) detail::raise_to(b->rss_high_, *now);
    return now;
  }
  [[nodiscard]] double rss_high() const noexcept {
    return std::max(static_cast<double>(rss_high_.load(std::memory_order_relaxed)), carried_of(resource::rss_bytes));
  }

  /// The highest process live heap seen while the budget was active (0 when not measured).
  [[nodiscard]] double peak_bytes() const noexcept {
    const double here = watcher_ ? static_cast<double>(watcher_->peak.load(std::memory_order_relaxed)) : 0.0;
    return std::max(here, carried_of(resource::peak_bytes));
  }

  /// Threads still alive hold blocks of this budget in their lists: take them out, so that no
  /// thread's exit hands on a block of a budget that is gone.
  void forget_threads() noexcept {
    std::lock_guard<std::mutex> registry(detail::thread_blocks_mutex);
    for (const auto& blk : blocks_)
      if (blk->list) detail::unlink_block(*blk);
  }

  static void check_name(const std::string& name, const char* field) {
    if (name.empty())
      throw std::invalid_argument(std::string("frugal::budget: ") + field + " must not be empty, got ''");
  }

  /// Spares the aggregates over consumables a snapshot when only levels are limited.
  static bool limits_a_consumable(const frugal::limits& l) noexcept {
    if (!l.unit_limits().empty()) return true;
    for (resource r : all_resources)
      if (is_consumable(r) && l.has(r)) return true;
    return false;
  }

  static double additive(const detail::thread_block& b, resource r) noexcept {
    switch (r) {
      case resource::flops: return static_cast<double>(b.flops.get());
      case resource::allocations: return static_cast<double>(b.allocations.get());
      case resource::alloc_bytes: return static_cast<double>(b.alloc_bytes.get());
      default: return 0;
    }
  }

  [[nodiscard]] std::int64_t active_threads() const noexcept {
    return (busy_->load(std::memory_order_acquire) & count_mask) + (solo_.load(std::memory_order_acquire) & 1);
  }

  [[nodiscard]] double wall_seconds() const noexcept {
    std::int64_t state = 0;
    std::int64_t solo = 0;
    std::int64_t ns = 0;
    {
      // Under the lock: a revocation (revoke_solo()) moves the solo word into busy_ under it.
      std::lock_guard<std::mutex> lock(mutex_);
      state = busy_->load(std::memory_order_acquire);
      solo = solo_.load(std::memory_order_acquire);
      for (const auto& b : blocks_) ns += b->wall_rest_ns.get();
    }
    const std::int64_t count = state & count_mask;
    const std::int64_t solo_active = solo & 1;
    ns += (state - count) / (count_mask + 1) * (tick_mask + 1) + solo_sum(solo);
    // Active: the open period's start was subtracted; add now, which a racing transition's
    // clamped start can exceed by a hair, so never less than the start itself. (The two words
    // are never active at once: the solo word is folded into busy_ before a second thread
    // enters.)
    if (count > 0 || solo_active)
      ns += std::max(wall_now_ns() - origin_ns_, last_transition_ns_.load(std::memory_order_acquire));
    return static_cast<double>(ns) / 1e9 + carried_of(resource::wall);  // a division: whole seconds stay whole
  }

  [[nodiscard]] double cpu_seconds() const {
    const std::uint64_t me = detail::this_thread.thread_id;
    std::int64_t ns = 0;
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& b : blocks_) {
      ns += b->cpu_ns.get();
      // The calling thread's open activation is live; other threads' are added at close.
      if (me != 0 && b->thread_id == me && b->open > 0 && b->cpu_start_ns >= 0)
        ns += thread_cpu_now_ns() - b->cpu_start_ns;
    }
    return static_cast<double>(ns) / 1e9 + carried_of(resource::cpu);  // a division: whole seconds stay whole
  }

  /// A thread (the caller) starts or stops having this budget active.
  ///
  /// A thread reads the clock before its transition's CAS and may be preempted in between, so
  /// raw timestamps can arrive out of order: a start earlier than the previous end would count
  /// the overlap twice. Leaves therefore raise last_transition_ns_ to their time before their
  /// CAS, and a boundary transition (the first thread in, the last out) uses the larger of its
  /// own time and that mark, reloaded on every CAS attempt. A start is then never before the
  /// previous end, so the union never counts time twice or counts time that has not passed;
  /// a racing transition can shift a boundary by the width of the race (see the note in the
  /// README's semantics).
  ///
  /// Enters need not raise the mark: every enter is followed, on its own thread, by a leave
  /// whose clock is read later and which raises the mark before any boundary can depend on it
  /// (a start needs the previous end; an end needs the leaves of the other threads of its
  /// period; its own thread's earlier times are below its own). A leave seen as the last one out
  /// stores the mark with a plain store: no other thread is active to be raising it. That
  /// saves two of the four atomic read-modify-writes a scope on an idle budget paid (each ~7 ns
  /// here, against ~27 ns for a clock read). If another thread enters and leaves inside that
  /// store's window, its larger time can be overwritten: the period then ends at this thread's
  /// time, short by at most that window, and never counts time twice.
  void thread_enters(detail::thread_block& blk, std::int64_t now_ns) noexcept { transition(blk, now_ns, +1); }
  void thread_leaves(detail::thread_block& blk, std::int64_t now_ns) noexcept { transition(blk, now_ns, -1); }

  /// A budget used by one thread alone needs no union, and no atomic read-modify-write: its
  /// first block is the solo block (thread_block::solo), and while no other thread has taken a
  /// block, that thread's transitions go to solo_ (see solo_transition()). The first other
  /// thread to take a block revokes the solo mode for good (revoke_solo()), and every
  /// transition goes to busy_ from then on. The solo mode needs Linux's membarrier, and a
  /// budget without a heap watcher (no allocation hooks): with one, a thread's activation must
  /// be ordered against other threads' heap folds, which test busy_ to raise the budget's peak,
  /// and that takes the atomic read-modify-write this mode saves.
  void transition(detail::thread_block& blk, std::int64_t now_ns, std::int64_t step) noexcept {
    const std::int64_t t = now_ns - origin_ns_;
    if (FRUGAL_UNLIKELY(t >= max_age_ns)) wall_out_of_range();
    if (blk.solo && solo_transition(blk, t, step)) return;
    const std::int64_t boundary = step > 0 ? 0 : 1;  // the count that makes this a start / an end
    std::int64_t state = busy_->load(std::memory_order_acquire);
    if (step < 0) {
      if ((state & count_mask) == 1) {
        if (t > last_transition_ns_.load(std::memory_order_relaxed))
          last_transition_ns_.store(t, std::memory_order_relaxed);  // published by the CAS below
      } else {
        detail::raise_to(last_transition_ns_, t);
      }
    }
    for (;;) {
      if (FRUGAL_UNLIKELY(step > 0 && (state & count_mask) == count_mask)) too_many_threads();
      std::int64_t next = state + step;
      std::int64_t rest = 0;
      if ((state & count_mask) == boundary) {
        const busy_time at = to_busy_time(std::max(t, last_transition_ns_.load(std::memory_order_acquire)));
        next -= step * at.field;  // a start subtracts its time, an end adds it
        rest = -step * at.rest;
      }
      if (busy_->compare_exchange_weak(state, next, std::memory_order_acq_rel, std::memory_order_acquire)) {
        if (rest != 0) blk.wall_rest_ns.add(rest);
        return;
      }
    }
  }

  /// The ns a solo word holds (see solo_transition()), without its active bit.
  [[nodiscard]] static constexpr std::int64_t solo_sum(std::int64_t word) noexcept { return (word - (word & 1)) / 2; }

  /// The solo word: 2 x (sum of the solo thread's period ends - sum of its starts, in ns since
  /// origin_ns_), plus 1 while it has the budget active. Only the solo thread writes it, with
  /// plain stores: it is the only thread using the budget. Another thread that is about to use
  /// the budget must first stop those writes and move the word into busy_ (revoke_solo()):
  /// Dekker's pattern, with the full fence on the revoker's side only (detail::heavy_fence(),
  /// membarrier). The solo thread raises solo_in_transition_, then reads solo_revoked_; the
  /// revoker raises solo_revoked_, runs the heavy fence, then waits for solo_in_transition_ to
  /// fall. Either the solo thread sees the revocation, and waits for the fold to be done before
  /// it goes on with busy_, or its write to the word completes before the revoker reads it.
  /// Returns false when the solo mode was revoked: the caller then takes the shared path.
  bool solo_transition(detail::thread_block& blk, std::int64_t t, std::int64_t step) noexcept {
    solo_in_transition_.store(1, std::memory_order_relaxed);
    detail::light_fence();
    if (FRUGAL_LIKELY(solo_revoked_.load(std::memory_order_relaxed) == 0)) {
      const std::int64_t sum = solo_sum(solo_.load(std::memory_order_relaxed));
      solo_.store(step > 0 ? 2 * (sum - t) + 1 : 2 * (sum + t), std::memory_order_release);
      // One thread's clock never goes back, so its leave is the latest: a plain store.
      if (step < 0) last_transition_ns_.store(t, std::memory_order_relaxed);
      solo_in_transition_.store(0, std::memory_order_release);
      return true;
    }
    solo_in_transition_.store(0, std::memory_order_release);
    while (solo_revoked_.load(std::memory_order_acquire) != solo_folded) detail::yield_while_waiting();
    blk.solo = false;
    return false;
  }

  /// mutex_ held, by a thread that takes a block of this budget (taker) while the solo block
  /// exists: ends the solo mode for good and moves the solo word into busy_ (see
  /// solo_transition()). Costs one membarrier (~1 us), once in the budget's life.
  void revoke_solo(detail::thread_block& taker) noexcept {
    solo_revoked_.store(solo_revoking, std::memory_order_relaxed);
    detail::heavy_fence();
    while (solo_in_transition_.load(std::memory_order_acquire) != 0) detail::yield_while_waiting();
    const std::int64_t word = solo_.load(std::memory_order_acquire);
    // busy_ takes the solo thread's count and its time in ticks; the ns below a tick go to the
    // taker's block, as a shared transition's do.
    const busy_time sum = to_busy_time(solo_sum(word));
    busy_->fetch_add((word & 1) + sum.field, std::memory_order_acq_rel);
    taker.wall_rest_ns.add(sum.rest);
    // Readers of the wall time take mutex_, so they see neither word half moved.
    solo_.store(0, std::memory_order_relaxed);
    solo_revoked_.store(solo_folded, std::memory_order_release);
  }

  /// Refusals that must be loud in every build: a wrong wall time would pass silently.
  [[noreturn]] FRUGAL_NOINLINE void wall_out_of_range() const noexcept {
    std::fprintf(stderr, "frugal: budget '%s' is older than 2^53 ns (104.2 days): its wall time can no longer be represented\n",
                 name_.c_str());
    std::abort();
  }
  [[noreturn]] FRUGAL_NOINLINE void too_many_threads() const noexcept {
    std::fprintf(stderr, "frugal: budget '%s': more than %lld threads active at once\n", name_.c_str(),
                 static_cast<long long>(count_mask));
    std::abort();
  }

  template <class F>
  void for_each_block_in_subtree(F&& f) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& b : blocks_) f(*b);
    for (const auto& c : children_) c->for_each_block_in_subtree(f);
  }

  [[nodiscard]] stage_stats stage_locked(std::uint32_t index) const {
    stage_stats s;
    s.name = *stage_names_[index];
    std::array<double, FRUGAL_MAX_UNITS> units{};
    std::int64_t wall_ns = 0;
    for (const auto& b : blocks_) {
      if (index >= b->stages.size() || !b->stages[index]) continue;
      const detail::stage_slot& slot = *b->stages[index];
      s.calls += slot.calls.get();
      wall_ns += slot.wall_ns.get();
      s.flops += slot.flops.get();
      s.allocations += slot.allocations.get();
      s.alloc_bytes += slot.alloc_bytes.get();
      s.peak_rise_bytes = std::max(s.peak_rise_bytes, slot.peak_growth.get());
      for (std::size_t i = 0; i < units.size(); ++i) units[i] += slot.units[i].get();
    }
    s.wall_seconds = static_cast<double>(wall_ns) / 1e9;
    for (const stage_stats& c : carried_stages_) {  // an earlier process's share (carry())
      if (c.name != s.name) continue;
      s.calls += c.calls;
      s.wall_seconds += c.wall_seconds;
      s.flops += c.flops;
      s.allocations += c.allocations;
      s.alloc_bytes += c.alloc_bytes;
      s.peak_rise_bytes = std::max(s.peak_rise_bytes, c.peak_rise_bytes);
      for (const auto& [unit, v] : c.units)
        if (const auto index = detail::find_unit(unit)) units[*index] += v;
    }
    const std::uint32_t n = detail::units_registered.count.load(std::memory_order_acquire);
    for (std::uint32_t i = 0; i < n; ++i)
      if (units[i] != 0) s.units.emplace_back(std::string(detail::unit_name(i)), units[i]);
    return s;
  }

  const std::string name_;
  budget* const parent_;
  const std::uint64_t uid_;
  const std::int64_t origin_ns_;
  /// With the allocation hooks, the busy word lives in the budget's heap-watcher slot, so a
  /// fold of the heap total can see whether the budget is active without touching it.
  detail::heap_watcher* const watcher_;
  std::atomic<std::int64_t> own_busy_{0};
  std::atomic<std::int64_t>* const busy_;
  std::atomic<std::int64_t> last_transition_ns_{0};  ///< ns since origin_ns_ (see transition())
  std::atomic<std::int64_t> solo_{0};  ///< the one-thread wall word (see solo_transition())
  std::atomic<int> solo_in_transition_{0};  ///< the solo thread is writing solo_
  static constexpr int solo_revoking = 1;
  static constexpr int solo_folded = 2;
  std::atomic<int> solo_revoked_{0};  ///< 0, then solo_revoking, then solo_folded (for good)
  std::atomic<bool> measure_cpu_{false};
  mutable std::atomic<std::int64_t> rss_high_{0};  ///< the highest resident set read (read_rss())

  mutable std::mutex mutex_;  ///< guards everything below; never held on the hot path
  bool solo_granted_ = false;  ///< a block was made the solo one (see transition())
  frugal::limits limits_;
  frugal::price price_;                ///< set_price(); empty: cost is not measured
  energy_counter* energy_ = nullptr;   ///< set_energy_counter(); null: system_energy_counter()
  double energy_base_ = 0;             ///< the counter's joules when the budget started reading it
  bool measure_cpu_requested_ = false;
  detail::owned_ptrs<budget> children_;
  /// One per thread using the budget at the same time: an exited thread's block goes to the
  /// free list (linked by list_next) and to the next new thread (see detail::thread_block).
  detail::owned_ptrs<detail::thread_block> blocks_;
  detail::thread_block* free_blocks_ = nullptr;
  detail::owned_ptrs<std::string> stage_names_;               ///< index = stage index
  /// An earlier process's usage (carry()): the resources' amounts are atomics, read without the
  /// lock by the lock-free readings (wall, the levels); the rest under mutex_.
  std::array<std::atomic<double>, resource_count> carried_{};
  std::array<double, FRUGAL_MAX_UNITS> carried_units_{};      ///< index = unit index
  std::vector<stage_stats> carried_stages_;
  /// The other processes' usage (set_peer_usage), likewise: atomics, and the units under mutex_.
  std::array<std::atomic<double>, resource_count> peers_{};
  std::array<double, FRUGAL_MAX_UNITS> peer_units_{};         ///< index = unit index
  std::vector<carried_usage> pending_children_;               ///< for children not made yet
  std::atomic<bool> resumed_{false};
  std::atomic<double> downtime_{0};

  /// The limits listeners, under a lock apart from mutex_, which they take to read the limits
  /// back (see set_limits()).
  detail::listener_list listeners_;
};

namespace detail {

// The calling thread's list of blocks; its exit hands them on (release_thread_blocks below).
// Null once that has run: a block taken later (by a thread-exit destructor that opens a scope)
// stays with the thread, which costs a block, never a count.
struct thread_blocks_owner {
  thread_blocks list;
  ~thread_blocks_owner();
};
inline thread_local bool thread_blocks_released = false;  // trivial: readable at any time
[[nodiscard]] inline thread_blocks* this_thread_blocks() {
  if (thread_blocks_released) return nullptr;
  static thread_local thread_blocks_owner owner;  // registers the exit handler (may allocate)
  return &owner.list;
}

// The cold paths the scopes need: finding this thread's block and stage slot (first use on a
// thread, or a cache miss), and activating a budget on a thread.
struct budget_access {
  [[nodiscard]] static std::uint64_t uid(const budget& b) noexcept { return b.uid_; }

  // This thread's block of b, taken (with its ancestors' blocks) on first use: a block an
  // exited thread left, or a new one.
  static thread_block* block_for(budget& b, std::uint64_t thread) {
    thread_block* parent_block = b.parent_ ? block_for(*b.parent_, thread) : nullptr;
    {
      std::lock_guard<std::mutex> lock(b.mutex_);
      for (thread_block* blk : b.blocks_)
        if (blk->thread_id == thread) return blk;
    }
    thread_blocks* list = this_thread_blocks();
    std::lock_guard<std::mutex> registry(thread_blocks_mutex);
    std::lock_guard<std::mutex> lock(b.mutex_);
    thread_block* blk = b.free_blocks_;
    if (blk) {
      b.free_blocks_ = blk->list_next;
    } else {
      blk = b.blocks_.adopt(new thread_block(&b, nullptr, 0));
      // The budget's first block is its solo block, which keeps it when its thread exits and
      // another takes it; any other block ends the solo mode before its thread can use it.
      if (b.blocks_.size() == 1 && !b.watcher_ && asymmetric_fence_available()) {
        blk->solo = true;
        b.solo_granted_ = true;
      }
    }
    if (!blk->solo && b.solo_granted_ && b.solo_revoked_.load(std::memory_order_relaxed) == 0) b.revoke_solo(*blk);
    blk->thread_id = thread;
    blk->parent = parent_block;
    blk->list_prev = nullptr;
    blk->list_next = nullptr;
    if (list) {
      blk->list = list;
      blk->list_next = list->head;
      if (list->head) list->head->list_prev = blk;
      list->head = blk;
    }
    return blk;
  }

  // An exiting thread gives up blk (taken out of its list, under thread_blocks_mutex). A block
  // with a scope still open (one a later thread-exit destructor closes) stays with the thread.
  static void release(thread_block& blk) noexcept {
    budget& b = *blk.owner;
    std::lock_guard<std::mutex> lock(b.mutex_);
    if (blk.open != 0) return;
    blk.thread_id = 0;
    blk.parent = nullptr;
    blk.list_next = b.free_blocks_;
    b.free_blocks_ = &blk;
  }

  // Whether b's transitions skip the busy word (budget::transition()): a test hook.
  enum class solo_mode { never, running, revoked };
  [[nodiscard]] static solo_mode solo(const budget& b) {
    std::lock_guard<std::mutex> lock(b.mutex_);
    if (!b.solo_granted_) return solo_mode::never;
    return b.solo_revoked_.load(std::memory_order_acquire) == 0 ? solo_mode::running : solo_mode::revoked;
  }

  // Threads that have b active: a test hook.
  [[nodiscard]] static std::int64_t active_threads(const budget& b) noexcept { return b.active_threads(); }

  // Blocks b holds (taken or free): a test hook, bounded by the threads using b at once.
  [[nodiscard]] static std::size_t block_count(const budget& b) {
    std::lock_guard<std::mutex> lock(b.mutex_);
    return b.blocks_.size();
  }

  static std::uint32_t stage_index(budget& b, std::string_view name) {
    if (name.empty()) throw std::invalid_argument("frugal::scope: stage name must not be empty, got ''");
    std::lock_guard<std::mutex> lock(b.mutex_);
    for (std::uint32_t i = 0; i < b.stage_names_.size(); ++i)
      if (*b.stage_names_[i] == name) return i;
    b.stage_names_.adopt(new std::string(name));
    return static_cast<std::uint32_t>(b.stage_names_.size() - 1);
  }

  static stage_slot* slot_for(budget& b, thread_block& blk, std::uint32_t index) {
    std::lock_guard<std::mutex> lock(b.mutex_);
    if (blk.stages.size() <= index) blk.stages.grow_to(index + 1);
    if (!blk.stages[index]) blk.stages.reset(index, new stage_slot(index, b.stage_names_[index]));
    return blk.stages[index];
  }

  [[nodiscard]] static const std::string& stage_name(const budget& b, std::uint32_t index) {
    std::lock_guard<std::mutex> lock(b.mutex_);
    return *b.stage_names_.at(index);
  }

  // The calling thread opens a scope on blk's budget (or a descendant's, via recursion).
  static void open(thread_block& blk, std::int64_t now_ns) noexcept {
    if (blk.open++ != 0) return;
    budget& b = *blk.owner;
    b.thread_enters(blk, now_ns);
    // The heap the budget starts with counts toward its peak.
    if (b.watcher_) detail::raise_to(b.watcher_->peak, detail::heap.live.load(std::memory_order_relaxed));
    blk.cpu_start_ns = b.measure_cpu_.load(std::memory_order_relaxed) ? thread_cpu_now_ns() : -1;
    if (blk.parent) open(*blk.parent, now_ns);
  }

  static void close(thread_block& blk, std::int64_t now_ns) noexcept {
    if (--blk.open != 0) return;
    budget& b = *blk.owner;
    if (blk.cpu_start_ns >= 0) {
      blk.cpu_ns.add(thread_cpu_now_ns() - blk.cpu_start_ns);
      blk.cpu_start_ns = -1;
    }
    b.thread_leaves(blk, now_ns);
    if (blk.parent) close(*blk.parent, now_ns);
  }
};

// At thread exit: the thread's blocks go to their budgets' free lists, counters and all, and
// its cache forgets them (a later scope on this thread must not find a block another thread
// has taken).
inline void release_thread_blocks(thread_blocks& list) noexcept {
  std::lock_guard<std::mutex> registry(thread_blocks_mutex);
  for (cache_entry& e : this_thread.cache) e = cache_entry{};
  while (thread_block* blk = list.head) {
    unlink_block(*blk);
    budget_access::release(*blk);
  }
}

inline thread_blocks_owner::~thread_blocks_owner() {
  thread_blocks_released = true;
  release_thread_blocks(list);
}

}  // namespace detail
}  // namespace frugal
