/// @file
/// The controller's events (step end, epoch end, approaching, exhausted, forecast overrun,
/// decision, stopped, level crossed, best metric) and the list of named callbacks that receive
/// them, each callback a struct whose operator() overloads are its hooks, checked at compile time.
#pragma once

#include <frugal/decision.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace frugal {

/// The events a controller's callbacks can observe, one per *_event struct (callback_list::add
/// registers a callable for each event type it accepts).
enum class event_kind : unsigned char {
  step_end,
  epoch_end,
  approaching,
  exhausted,
  forecast_overrun,
  decision,
  stopped,
  level_crossed,
  best_metric,
};
/// How many event kinds there are.
inline constexpr std::size_t event_kind_count = 9;

/// The kind's enumerator name ("step_end", ...); "unknown" for an out-of-range value.
[[nodiscard]] constexpr std::string_view to_string(event_kind k) noexcept {
  switch (k) {
    case event_kind::step_end: return "step_end";
    case event_kind::epoch_end: return "epoch_end";
    case event_kind::approaching: return "approaching";
    case event_kind::exhausted: return "exhausted";
    case event_kind::forecast_overrun: return "forecast_overrun";
    case event_kind::decision: return "decision";
    case event_kind::stopped: return "stopped";
    case event_kind::level_crossed: return "level_crossed";
    case event_kind::best_metric: return "best_metric";
  }
  return "unknown";
}

/// Which checkpoint an event came from: end_step (step) or end_epoch (epoch).
enum class checkpoint : unsigned char { step, epoch };

/// A step ended (fired first at every end_step, before any resource event).
struct step_end_event {
  std::uint64_t step_index;   ///< steps ended so far in the run, this one included (1 for the first)
  std::uint64_t epoch_index;  ///< the epoch the step belongs to (0 for the first)
  /// The step as end_step received it.
  const frugal::step& record;
  std::size_t batch_size;     ///< the batch the step ran with (its samples, else the knob; 0 if unknown)
};

/// An epoch ended (fired first at every end_epoch).
struct epoch_end_event {
  std::uint64_t epoch_index;  ///< the epoch that ended (0 for the first)
  std::uint64_t steps;        ///< steps it had
  /// The epoch as end_epoch received it (its metrics).
  const frugal::epoch& record;
  bool ended_early;           ///< the controller had decided end_epoch during it
};

/// A resource's use crossed a soft threshold (once per resource and threshold).
struct approaching_event {
  std::string_view resource;  ///< "wall", "flops", "samples", ...
  double used;                ///< in the resource's unit
  /// The limit, in the resource's unit.
  double limit;
  double threshold;           ///< the fraction crossed, e.g. 0.8
};

/// A resource's use reached its limit (once per resource).
struct exhausted_event {
  /// "wall", "flops", "samples", ...
  std::string_view resource;
  /// In the resource's unit: at or above the limit.
  double used;
  /// The limit, in the resource's unit.
  double limit;
};

/// The work a forecast covers.
enum class forecast_horizon : unsigned char {
  next_step,     ///< the next step (the run stops before it; peak bytes: the batch shrinks)
  epoch_end,     ///< the next step plus the epoch's end-of-epoch work (the epoch ends early)
  planned_work,  ///< all the planned work left (pruning / quantization rules)
};

/// The horizon's enumerator name; "unknown" for an out-of-range value.
[[nodiscard]] constexpr std::string_view to_string(forecast_horizon h) noexcept {
  switch (h) {
    case forecast_horizon::next_step: return "next_step";
    case forecast_horizon::epoch_end: return "epoch_end";
    case forecast_horizon::planned_work: return "planned_work";
  }
  return "unknown";
}

/// A forecast says a limit would be crossed: fired when that becomes true for a resource and
/// horizon, again only after it has become false in between.
struct forecast_overrun_event {
  /// "wall", "flops", "samples", ...
  std::string_view resource;
  /// The work whose forecast would cross the limit.
  forecast_horizon horizon;
  double used;      ///< now
  double forecast;  ///< the forecast cost of the horizon's work, margin included
  /// The limit, in the resource's unit.
  double limit;
};

/// The decision of a checkpoint, last event of every checkpoint; a hook may veto or amend it:
///   void operator()(frugal::decision_event& e) { if (e.decision.stops() && keep_going) e.decision.veto(); }
/// Each hook amends a copy that replaces the decision only when the hook returns normally and
/// the controller accepts it (batch size within [min, max]).
struct decision_event {
  /// end_step or end_epoch.
  frugal::checkpoint where;
  /// Steps ended so far in the run.
  std::uint64_t step_index;
  /// The epoch of the checkpoint (0 for the first).
  std::uint64_t epoch_index;
  /// The decision, for the hook to veto or amend.
  frugal::decision& decision;
};

/// The run stopped: fired once, at the checkpoint whose decision first stops the run (again only
/// if a raised limit lifted the stop and a later checkpoint stops again). The moment to save a
/// checkpoint or restore the best weights; later checkpoints only repeat the stop.
struct stop_event {
  std::uint64_t step_index;   ///< steps ended so far in the run
  std::uint64_t epoch_index;  ///< the epoch of the checkpoint
  /// end_step or end_epoch.
  frugal::checkpoint where;
  /// Why the run stops.
  frugal::stop_reason reason;
  std::string_view message;   ///< the decision's reasons in words
};

/// A level (peak_bytes, rss_bytes: how high memory stands, not something spent) stood above its
/// limit at a checkpoint: fired when that starts, again only after it has been back under.
struct level_crossed_event {
  /// "peak_bytes" or "rss_bytes".
  std::string_view resource;
  double level;  ///< in the resource's unit
  /// The limit, in bytes.
  double limit;
};

/// An early-stopping rule recorded a new best value of its metric: the moment to save the best weights.
struct best_metric_event {
  /// The metric's name, as the rule watches it.
  std::string_view metric;
  /// The new best value.
  double value;
  std::uint64_t epoch_index;                         ///< the epoch that reached it
  std::optional<double> previous_best;               ///< none for the first value
  /// The epoch of previous_best; none for the first value.
  std::optional<std::uint64_t> previous_best_epoch;
};

/// A callback that threw: recorded, and the other callbacks still run.
struct callback_error {
  std::string callback;  ///< the name it was registered with
  /// The event the callback was handling.
  event_kind event;
  std::string what;      ///< the exception's what(), or "unknown exception"
  /// Steps ended so far in the run when it threw.
  std::uint64_t step_index;
};

namespace detail {

template <class F, class E>
inline constexpr bool observes_v = std::is_invocable_v<F&, const E&>;

// A hook that takes an observation event by non-const reference cannot be called with the
// const event: it would be silently skipped, which is the mistake this check exists for.
template <class F, class E>
inline constexpr bool observes_mutably_only_v = std::is_invocable_v<F&, E&> && !std::is_invocable_v<F&, const E&>;

template <class F, class E, bool Mutable>
constexpr bool hook_returns_void() {
  using arg = std::conditional_t<Mutable, E&, const E&>;
  if constexpr (std::is_invocable_v<F&, arg>)
    return std::is_void_v<std::invoke_result_t<F&, arg>>;
  else
    return true;
}

template <class F>
inline constexpr bool any_hook_v =
    observes_v<F, step_end_event> || observes_v<F, epoch_end_event> || observes_v<F, approaching_event> ||
    observes_v<F, exhausted_event> || observes_v<F, forecast_overrun_event> ||
    std::is_invocable_v<F&, decision_event&> || observes_v<F, stop_event> || observes_v<F, level_crossed_event> ||
    observes_v<F, best_metric_event>;

template <class F>
inline constexpr bool mutable_observer_v =
    observes_mutably_only_v<F, step_end_event> || observes_mutably_only_v<F, epoch_end_event> ||
    observes_mutably_only_v<F, approaching_event> || observes_mutably_only_v<F, exhausted_event> ||
    observes_mutably_only_v<F, forecast_overrun_event> || observes_mutably_only_v<F, stop_event> ||
    observes_mutably_only_v<F, level_crossed_event> || observes_mutably_only_v<F, best_metric_event>;

template <class F>
inline constexpr bool hooks_return_void_v =
    hook_returns_void<F, step_end_event, false>() && hook_returns_void<F, epoch_end_event, false>() &&
    hook_returns_void<F, approaching_event, false>() && hook_returns_void<F, exhausted_event, false>() &&
    hook_returns_void<F, forecast_overrun_event, false>() && hook_returns_void<F, decision_event, true>() &&
    hook_returns_void<F, stop_event, false>() && hook_returns_void<F, level_crossed_event, false>() &&
    hook_returns_void<F, best_metric_event, false>();

}  // namespace detail

/// Whether F is a well-formed callback: at least one hook, every observation hook taking its
/// event by value or const reference, every hook returning void. A hook is an operator()
/// overload chosen by its event type, so a misspelled event type does not compile, and a
/// struct whose hooks match no event (a member named on_aproaching, a wrong parameter) is
/// rejected by add_callback instead of being silently ignored.
template <class F>
inline constexpr bool is_callback_v = detail::any_hook_v<std::decay_t<F>> &&
                                      !detail::mutable_observer_v<std::decay_t<F>> &&
                                      detail::hooks_return_void_v<std::decay_t<F>>;

/// Named callbacks in registration order. Every callback sees every event it has a hook for;
/// none can hide an event from the ones after it; one that throws is recorded and skipped.
///
/// A hook may add and remove callbacks (itself included) while an event is being dispatched
/// (a notify or amend, nested ones included):
///  - a callback added during a dispatch receives events from the next dispatch on (the next
///    after the outermost one in progress), not the event in flight; it runs after the
///    callbacks registered before it, as usual;
///  - a callback removed during a dispatch receives nothing more, not even the rest of the
///    current dispatch; its object is destroyed only after the outermost dispatch ends, never
///    while one of its hooks is running (a decision hook that removes itself still amends the
///    decision it was given);
///  - removing a callback and adding one of the same name during a dispatch works (the new one
///    goes last); names stay unique among live callbacks, and size(), names() and handles()
///    count only live callbacks, the ones added during the dispatch included.
/// The deferred work (erasing removed callbacks, appending added ones) is done when the
/// outermost dispatch ends, also when a hook threw. A dispatch in which nobody adds or removes
/// a callback allocates nothing and pays only a depth counter.
class callback_list {
 public:
  /// How many callback errors errors() keeps; error_count() counts beyond it.
  static constexpr std::size_t max_recorded_errors = 256;

  /// Registers a copy of `f` under `name` (it goes last). A callback with no frugal event hook, a
  /// hook taking an observation event by non-const reference, or a hook returning a value does not
  /// compile; throws std::invalid_argument for an empty name or one already registered.
  template <class F>
  void add(std::string name, F&& f) {
    using D = std::decay_t<F>;
    static_assert(detail::any_hook_v<D> || detail::mutable_observer_v<D>,
                  "frugal: the callback handles no frugal event: give it operator() overloads taking "
                  "(const frugal::step_end_event&), (const frugal::epoch_end_event&), (const frugal::approaching_event&), "
                  "(const frugal::exhausted_event&), (const frugal::forecast_overrun_event&), (frugal::decision_event&), "
                  "(const frugal::stop_event&), (const frugal::level_crossed_event&) or (const frugal::best_metric_event&)");
    static_assert(!detail::mutable_observer_v<D>,
                  "frugal: a callback hook takes a non-const reference to an observation event; take events by "
                  "const reference (only frugal::decision_event& is mutable)");
    static_assert(detail::hooks_return_void_v<D>,
                  "frugal: callback hooks must return void; to stop or veto, amend e.decision in a "
                  "(frugal::decision_event&) hook");
    if (name.empty()) throw std::invalid_argument("frugal::callback_list::add: name must not be empty, got ''");
    if (find_live(name) != nullptr)
      throw std::invalid_argument("frugal::callback_list::add: a callback named '" + name + "' is already registered");
    entry e{std::move(name), owner(new D(std::forward<F>(f)), [](void* p) { delete static_cast<D*>(p); }), {}, true};
    set_hook<D, step_end_event>(e, event_kind::step_end);
    set_hook<D, epoch_end_event>(e, event_kind::epoch_end);
    set_hook<D, approaching_event>(e, event_kind::approaching);
    set_hook<D, exhausted_event>(e, event_kind::exhausted);
    set_hook<D, forecast_overrun_event>(e, event_kind::forecast_overrun);
    if constexpr (std::is_invocable_v<D&, decision_event&>)
      e.hooks[index(event_kind::decision)] = [](void* self, void* ev) {
        (*static_cast<D*>(self))(*static_cast<decision_event*>(ev));
      };
    set_hook<D, stop_event>(e, event_kind::stopped);
    set_hook<D, level_crossed_event>(e, event_kind::level_crossed);
    set_hook<D, best_metric_event>(e, event_kind::best_metric);
    const std::array<hook, event_kind_count> hooks = e.hooks;
    if (depth_ == 0 && pending_.empty()) {
      entries_.push_back(std::move(e));
    } else {
      // entries_ does not change during a dispatch: the addition waits for its end.
      pending_.push_back(std::move(e));
    }
    for (std::size_t k = 0; k < event_kind_count; ++k) handlers_[k] += hooks[k] ? 1 : 0;
    if (depth_ == 0 && !pending_.empty()) settle();
  }

  /// Removes the callback registered under `name` (see above for removal during a dispatch);
  /// returns whether there was one.
  bool remove(std::string_view name) {
    entry* e = find_live(name);
    if (e == nullptr) return false;
    // One of its hooks may be running: it only stops receiving events here, and is destroyed
    // when no dispatch is in progress any more.
    for (std::size_t k = 0; k < event_kind_count; ++k) handlers_[k] -= e->hooks[k] ? 1 : 0;
    e->hooks = {};
    e->live = false;
    ++dead_;
    if (depth_ == 0) settle();
    return true;
  }

  /// Live callbacks.
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size() + pending_.size() - dead_; }
  /// Whether some live callback has a hook for `k` (the controller skips building events nobody
  /// handles).
  [[nodiscard]] bool handles(event_kind k) const noexcept { return handlers_[index(k)] > 0; }
  /// The live callbacks' names, in order.
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(size());
    for (const auto& e : entries_)
      if (e.live) out.push_back(e.name);
    for (const auto& e : pending_)
      if (e.live) out.push_back(e.name);
    return out;
  }

  /// Delivers an observation event to every callback with a hook for it, in order.
  template <class E>
  void notify(event_kind k, const E& event, std::uint64_t step_index) {
    if (handlers_[index(k)] == 0) return;
    const dispatch_scope scope(*this);
    for (auto& e : entries_) {
      const hook h = e.hooks[index(k)];
      if (!h) continue;
      try {
        h(e.self.get(), const_cast<E*>(&event));
      } catch (const std::exception& ex) {
        record(e.name, k, ex.what(), step_index);
      } catch (...) {
        record(e.name, k, "unknown exception", step_index);
      }
    }
  }

  /// Passes d through every decision hook in order. Each hook amends a copy; `accept(before,
  /// after, name)` validates it (throwing rejects it, recorded as that callback's error) and
  /// the copy then replaces d.
  template <class Accept>
  void amend(decision& d, checkpoint where, std::uint64_t step_index, std::uint64_t epoch_index, Accept&& accept) {
    const std::size_t k = index(event_kind::decision);
    if (handlers_[k] == 0) return;
    const dispatch_scope scope(*this);
    for (auto& e : entries_) {
      const hook h = e.hooks[k];
      if (!h) continue;
      try {
        decision copy = d;
        decision_event ev{where, step_index, epoch_index, copy};
        h(e.self.get(), &ev);
        accept(static_cast<const decision&>(d), copy, e.name);
        d = std::move(copy);
      } catch (const std::exception& ex) {
        record(e.name, event_kind::decision, ex.what(), step_index);
      } catch (...) {
        record(e.name, event_kind::decision, "unknown exception", step_index);
      }
    }
  }

  /// Errors of frugal's own hooks (a rule's action, the batch rule) go in the same record.
  void record(const std::string& name, event_kind k, std::string what, std::uint64_t step_index) {
    ++error_count_;
    if (errors_.size() < max_recorded_errors) errors_.push_back(callback_error{name, k, std::move(what), step_index});
  }
  /// The first max_recorded_errors errors; error_count() counts them all.
  [[nodiscard]] const std::vector<callback_error>& errors() const noexcept { return errors_; }
  /// Callbacks that threw, in all.
  [[nodiscard]] std::uint64_t error_count() const noexcept { return error_count_; }

 private:
  using hook = void (*)(void* self, void* event);
  // Owns a callback object: what std::unique_ptr<void, void (*)(void*)> would do, spelt out
  // (cheaper to compile in every translation unit that includes frugal).
  class owner {
   public:
    owner(void* p, void (*destroy)(void*)) noexcept : p_(p), destroy_(destroy) {}
    owner(owner&& other) noexcept : p_(other.p_), destroy_(other.destroy_) { other.p_ = nullptr; }
    owner& operator=(owner&& other) noexcept {
      if (this != &other) {
        reset();
        p_ = other.p_;
        destroy_ = other.destroy_;
        other.p_ = nullptr;
      }
      return *this;
    }
    owner(const owner&) = delete;
    owner& operator=(const owner&) = delete;
    ~owner() { reset(); }
    [[nodiscard]] void* get() const noexcept { return p_; }
    void reset() noexcept {
      if (void* p = p_) {
        p_ = nullptr;
        destroy_(p);
      }
    }

   private:
    void* p_;
    void (*destroy_)(void*);
  };
  struct entry {
    std::string name;
    owner self;
    std::array<hook, event_kind_count> hooks;
    bool live;  ///< false once removed: it then has no hooks, and waits for settle() to destroy it
  };

  /// Marks a dispatch: entries_ stays put while it lasts; the outermost one settles on its way out.
  class dispatch_scope {
   public:
    explicit dispatch_scope(callback_list& list) noexcept : list_(list) { ++list_.depth_; }
    dispatch_scope(const dispatch_scope&) = delete;
    dispatch_scope& operator=(const dispatch_scope&) = delete;
    ~dispatch_scope() {
      if (--list_.depth_ == 0 && (list_.dead_ != 0 || !list_.pending_.empty())) list_.settle();
    }

   private:
    callback_list& list_;
  };

  static constexpr std::size_t index(event_kind k) noexcept { return static_cast<std::size_t>(k); }

  template <class D, class E>
  static void set_hook(entry& e, event_kind k) {
    if constexpr (detail::observes_v<D, E>)
      e.hooks[index(k)] = [](void* self, void* ev) { (*static_cast<D*>(self))(*static_cast<const E*>(ev)); };
  }

  [[nodiscard]] entry* find_live(std::string_view name) noexcept {
    for (auto* v : {&entries_, &pending_})
      for (auto& e : *v)
        if (e.live && e.name == name) return &e;
    return nullptr;
  }

  /// Outside any dispatch: appends the callbacks added during it and erases the removed ones,
  /// destroying them. Only growing entries_ can fail (out of memory): the additions then stay
  /// pending (live, not dispatched to) until the next dispatch's end. A destructor that adds or
  /// removes callbacks is deferred like a hook, and settled by the next round of the loop.
  void settle() noexcept {
    ++depth_;
    while (dead_ != 0 || !pending_.empty()) {
      bool append = !pending_.empty();
      if (append) {
        try {
          entries_.reserve(entries_.size() + pending_.size());
        } catch (...) {  // out of memory: retried at the next dispatch's end
          append = false;
        }
      }
      const bool out_of_memory = !append && !pending_.empty();
      if (append) {
        for (auto& e : pending_) entries_.push_back(std::move(e));  // reserved: does not throw
        pending_.clear();
      }
      erase_removed(entries_);
      erase_removed(pending_);
      if (out_of_memory) break;
    }
    --depth_;
  }

  /// Moves v's live entries to its front, in order, then destroys the removed ones. Meanwhile a
  /// destructor can only mark entries removed (counted in dead_) or append to pending_ (depth_ > 0).
  void erase_removed(std::vector<entry>& v) noexcept {
    std::size_t live = 0;
    const std::size_t n = v.size();
    for (std::size_t i = 0; i < n; ++i)
      if (v[i].live) {
        if (i != live) std::swap(v[live], v[i]);
        ++live;
      }
    dead_ -= n - live;
    for (std::size_t i = live; i < n; ++i) v[i].self.reset();  // v[i] is no callback any more
    v.erase(v.begin() + static_cast<std::ptrdiff_t>(live), v.begin() + static_cast<std::ptrdiff_t>(n));
  }

  std::vector<entry> entries_;
  std::vector<entry> pending_;  ///< added during a dispatch: live, not dispatched to before it ends
  std::size_t dead_ = 0;        ///< removed entries still in entries_ or pending_
  std::size_t depth_ = 0;       ///< dispatches in progress (nested ones included)
  std::array<std::size_t, event_kind_count> handlers_{};
  std::vector<callback_error> errors_;
  std::uint64_t error_count_ = 0;
};

}  // namespace frugal
