// frugal::callback_list on its own (no controller): callbacks added and removed while an event
// is being dispatched (by notify or amend, from a hook, also a throwing one), the objects'
// lifetimes, and the stop, level_crossed and best_metric events.
#include <frugal/events.hpp>

#include <gtest/gtest.h>

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using names_t = std::vector<std::string>;

const frugal::exhausted_event exhausted{"wall", 2.0, 1.0};

void notify(frugal::callback_list& list, const frugal::exhausted_event& e = exhausted) {
  list.notify(frugal::event_kind::exhausted, e, 1);
}

// Counts the exhausted events it receives; sets *destroyed when the registered object dies (a
// moved-from one does not).
struct counter {
  int* calls;
  bool* destroyed = nullptr;

  explicit counter(int* c, bool* d = nullptr) : calls(c), destroyed(d) {}
  counter(const counter&) = delete;
  counter& operator=(const counter&) = delete;
  counter(counter&& o) noexcept : calls(o.calls), destroyed(std::exchange(o.destroyed, nullptr)) {}
  counter& operator=(counter&&) = delete;
  ~counter() {
    if (destroyed != nullptr) *destroyed = true;
  }
  void operator()(const frugal::exhausted_event&) { ++*calls; }
};

// Decision hooks for amend(): accept records which callbacks amended the decision.
void amend(frugal::callback_list& list, frugal::decision& d, names_t& amended_by) {
  list.amend(d, frugal::checkpoint::step, 1, 0,
             [&](const frugal::decision&, frugal::decision&, const std::string& name) { amended_by.push_back(name); });
}

// ---------------------------------------------------------------------------------------------
// Adding during a dispatch.

TEST(CallbackList, AddedDuringNotifyReceivesFromTheNextDispatchOn) {
  frugal::callback_list list;
  std::vector<int> late_calls(8, 0);
  int adder_calls = 0;
  list.add("adder", [&](const frugal::exhausted_event&) {
    if (adder_calls++ > 0) return;
    // Enough additions that a vector iterated by the dispatch would reallocate.
    for (std::size_t i = 0; i < late_calls.size(); ++i)
      list.add("late" + std::to_string(i), counter{&late_calls[i]});
    EXPECT_EQ(list.size(), 2 + late_calls.size());
    EXPECT_TRUE(list.handles(frugal::event_kind::exhausted));
  });
  int after_calls = 0;
  list.add("after", counter{&after_calls});  // registered before the additions: gets the event

  notify(list);
  EXPECT_EQ(adder_calls, 1);
  EXPECT_EQ(after_calls, 1);
  for (int c : late_calls) EXPECT_EQ(c, 0) << "a callback added during a dispatch received the event in flight";
  ASSERT_EQ(list.size(), 2 + late_calls.size());
  const names_t names = list.names();
  EXPECT_EQ(names[0], "adder");
  EXPECT_EQ(names[1], "after");
  EXPECT_EQ(names[2], "late0");
  EXPECT_EQ(names.back(), "late7");

  notify(list);
  EXPECT_EQ(adder_calls, 2);
  EXPECT_EQ(after_calls, 2);
  for (int c : late_calls) EXPECT_EQ(c, 1);
}

TEST(CallbackList, AddedDuringNotifyForOneKindHandlesItsKinds) {
  frugal::callback_list list;
  int stops = 0;
  list.add("adder", [&](const frugal::exhausted_event&) {
    if (!list.handles(frugal::event_kind::stopped))
      list.add("on_stop", [&](const frugal::stop_event&) { ++stops; });
  });
  EXPECT_FALSE(list.handles(frugal::event_kind::stopped));
  notify(list);
  EXPECT_TRUE(list.handles(frugal::event_kind::stopped));
  list.notify(frugal::event_kind::stopped,
              frugal::stop_event{3, 0, frugal::checkpoint::step, frugal::stop_reason::user, "why"}, 3);
  EXPECT_EQ(stops, 1);
}

// ---------------------------------------------------------------------------------------------
// Removing during a dispatch.

// Removes itself from its hook, then reads the flag its destructor sets.
struct self_remover {
  frugal::callback_list* list;
  int* calls;
  bool* destroyed;
  bool* destroyed_during_hook;

  self_remover(frugal::callback_list* l, int* c, bool* d, bool* dd)
      : list(l), calls(c), destroyed(d), destroyed_during_hook(dd) {}
  self_remover(const self_remover&) = delete;
  self_remover& operator=(const self_remover&) = delete;
  self_remover(self_remover&& o) noexcept
      : list(o.list), calls(o.calls), destroyed(std::exchange(o.destroyed, nullptr)),
        destroyed_during_hook(o.destroyed_during_hook) {}
  self_remover& operator=(self_remover&&) = delete;
  ~self_remover() {
    if (destroyed != nullptr) *destroyed = true;
  }

  void operator()(const frugal::exhausted_event&) {
    bool* const flag = destroyed;
    bool* const out = destroyed_during_hook;
    ++*calls;
    EXPECT_TRUE(list->remove("me"));
    *out = *flag;
  }
};

TEST(CallbackList, HookRemovingItselfIsDestroyedAfterItsHookReturned) {
  frugal::callback_list list;
  int calls = 0;
  int after_calls = 0;
  bool destroyed = false;
  bool destroyed_during_hook = false;
  list.add("me", self_remover{&list, &calls, &destroyed, &destroyed_during_hook});
  list.add("after", [&](const frugal::exhausted_event&) {
    if (++after_calls == 1) {
      EXPECT_FALSE(destroyed) << "destroyed during the dispatch";
    }
    EXPECT_EQ(list.size(), 1u);
    EXPECT_EQ(list.names(), names_t{"after"});
  });
  ASSERT_FALSE(destroyed);

  notify(list);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(after_calls, 1);  // the callbacks after it still got the event
  EXPECT_FALSE(destroyed_during_hook) << "the callback was destroyed while its own hook was running";
  EXPECT_TRUE(destroyed) << "not destroyed once the dispatch ended";
  EXPECT_EQ(list.size(), 1u);
  EXPECT_EQ(list.names(), names_t{"after"});
  EXPECT_FALSE(list.remove("me"));

  notify(list);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(after_calls, 2);
}

TEST(CallbackList, CallbackRemovedBeforeItsTurnMissesTheEventInFlight) {
  frugal::callback_list list;
  int second_calls = 0;
  int third_calls = 0;
  int fourth_calls = 0;
  bool second_destroyed = false;
  list.add("first", [&](const frugal::exhausted_event&) {
    if (list.remove("second")) {
      EXPECT_EQ(list.names(), (names_t{"first", "third", "fourth"}));
    }
  });
  list.add("second", counter{&second_calls, &second_destroyed});
  list.add("third", [&](const frugal::exhausted_event&) {
    if (++third_calls == 1) {
      EXPECT_FALSE(second_destroyed) << "a removed callback was destroyed during the dispatch";
    }
  });
  list.add("fourth", counter{&fourth_calls});

  notify(list);
  EXPECT_EQ(second_calls, 0) << "a callback removed during a dispatch received the rest of it";
  EXPECT_EQ(third_calls, 1);
  EXPECT_EQ(fourth_calls, 1);
  EXPECT_TRUE(second_destroyed);
  EXPECT_EQ(list.size(), 3u);

  notify(list);
  EXPECT_EQ(second_calls, 0);
  EXPECT_EQ(third_calls, 2);
  EXPECT_EQ(fourth_calls, 2);
}

TEST(CallbackList, RemovingAndReAddingTheSameNameDuringADispatch) {
  frugal::callback_list list;
  int old_calls = 0;
  int new_calls = 0;
  bool old_destroyed = false;
  bool done = false;
  list.add("a", [&](const frugal::exhausted_event&) {
    if (done) return;
    done = true;
    EXPECT_TRUE(list.remove("b"));
    list.add("b", counter{&new_calls});
    EXPECT_THROW(list.add("b", counter{&new_calls}), std::invalid_argument);  // unique among live ones
    EXPECT_FALSE(list.remove("nobody"));
    EXPECT_EQ(list.size(), 3u);
    EXPECT_EQ(list.names(), (names_t{"a", "c", "b"}));
  });
  list.add("b", counter{&old_calls, &old_destroyed});
  list.add("c", [](const frugal::exhausted_event&) {});

  notify(list);
  EXPECT_EQ(old_calls, 0);
  EXPECT_EQ(new_calls, 0);
  EXPECT_TRUE(old_destroyed);
  EXPECT_EQ(list.names(), (names_t{"a", "c", "b"}));  // the new "b" went last

  notify(list);
  EXPECT_EQ(old_calls, 0);
  EXPECT_EQ(new_calls, 1);
}

TEST(CallbackList, HookRemovingAndReAddingItself) {
  frugal::callback_list list;
  int first_calls = 0;
  int second_calls = 0;
  list.add("me", [&](const frugal::exhausted_event&) {
    ++first_calls;
    EXPECT_TRUE(list.remove("me"));
    list.add("me", counter{&second_calls});
  });
  notify(list);
  notify(list);
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(second_calls, 1);
  EXPECT_EQ(list.names(), names_t{"me"});
}

TEST(CallbackList, AddedAndRemovedDuringOneDispatchNeverRuns) {
  frugal::callback_list list;
  int calls = 0;
  bool destroyed = false;
  list.add("a", [&](const frugal::exhausted_event&) {
    if (list.size() > 1) return;
    list.add("tmp", counter{&calls, &destroyed});
    EXPECT_TRUE(list.remove("tmp"));
    EXPECT_EQ(list.size(), 1u);
    EXPECT_FALSE(list.handles(frugal::event_kind::step_end));
  });
  notify(list);
  notify(list);
  EXPECT_EQ(calls, 0);
  EXPECT_TRUE(destroyed);
  EXPECT_EQ(list.names(), names_t{"a"});
}

TEST(CallbackList, RemovedDuringANestedDispatchIsDestroyedWhenTheOutermostEnds) {
  frugal::callback_list list;
  int victim_calls = 0;
  bool victim_destroyed = false;
  bool destroyed_after_inner = true;
  list.add("outer", [&](const frugal::exhausted_event&) {
    list.notify(frugal::event_kind::approaching, frugal::approaching_event{"wall", 0.9, 1.0, 0.8}, 1);
    destroyed_after_inner = victim_destroyed;
  });
  list.add("inner", [&](const frugal::approaching_event&) { (void)list.remove("victim"); });
  list.add("victim", counter{&victim_calls, &victim_destroyed});
  notify(list);
  EXPECT_FALSE(destroyed_after_inner);
  EXPECT_TRUE(victim_destroyed);
  EXPECT_EQ(victim_calls, 0);
  EXPECT_EQ(list.size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// amend.

TEST(CallbackList, AddAndRemoveDuringAmend) {
  frugal::callback_list list;
  bool second_destroyed = false;
  bool second_destroyed_in_dispatch = false;
  int rounds = 0;
  list.add("first", [&](frugal::decision_event&) {
    if (rounds++ > 0) return;
    EXPECT_TRUE(list.remove("second"));
    list.add("third", [](frugal::decision_event& e) { e.decision.stop("third says so"); });
    for (int i = 0; i < 8; ++i) list.add("filler" + std::to_string(i), [](frugal::decision_event&) {});
  });
  struct second_hook {
    bool* destroyed;
    explicit second_hook(bool* d) : destroyed(d) {}
    second_hook(const second_hook&) = delete;
    second_hook& operator=(const second_hook&) = delete;
    second_hook(second_hook&& o) noexcept : destroyed(std::exchange(o.destroyed, nullptr)) {}
    second_hook& operator=(second_hook&&) = delete;
    ~second_hook() {
      if (destroyed != nullptr) *destroyed = true;
    }
    void operator()(frugal::decision_event& e) { e.decision.stop("second says so"); }
  };
  list.add("second", second_hook{&second_destroyed});
  list.add("last", [&](frugal::decision_event&) { second_destroyed_in_dispatch = second_destroyed; });

  names_t amended_by;
  frugal::decision d;
  amend(list, d, amended_by);
  EXPECT_EQ(amended_by, (names_t{"first", "last"}));
  EXPECT_FALSE(d.stops()) << "the removed callback amended the decision, or the added one did";
  EXPECT_FALSE(second_destroyed_in_dispatch);
  EXPECT_TRUE(second_destroyed);
  EXPECT_EQ(list.size(), 11u);

  amended_by.clear();
  frugal::decision d2;
  amend(list, d2, amended_by);
  ASSERT_EQ(amended_by.size(), 11u);
  EXPECT_EQ(amended_by[2], "third");
  EXPECT_TRUE(d2.stops());
  EXPECT_EQ(d2.cause(), frugal::stop_reason::user);
}

TEST(CallbackList, DecisionHookRemovingItselfKeepsItsAmendment) {
  frugal::callback_list list;
  int calls = 0;
  list.add("once", [&](frugal::decision_event& e) {
    ++calls;
    e.decision.stop("once");
    EXPECT_TRUE(list.remove("once"));
  });
  names_t amended_by;
  frugal::decision d;
  amend(list, d, amended_by);
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(amended_by, names_t{"once"});
  frugal::decision d2;
  amend(list, d2, amended_by);
  EXPECT_FALSE(d2.stops());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(list.size(), 0u);
}

// ---------------------------------------------------------------------------------------------
// A hook that throws.

TEST(CallbackList, ThrowingHookWithPendingChangesIsRecordedAndTheChangesHappen) {
  frugal::callback_list list;
  int late_calls = 0;
  int victim_calls = 0;
  bool victim_destroyed = false;
  bool thrower_destroyed = false;
  bool thrown = false;
  list.add("thrower", [&](const frugal::exhausted_event&) {
    if (std::exchange(thrown, true)) return;
    list.add("late", counter{&late_calls});
    EXPECT_TRUE(list.remove("victim"));
    throw std::runtime_error("boom");
  });
  list.add("victim", counter{&victim_calls, &victim_destroyed});
  struct self_thrower {
    frugal::callback_list* list;
    bool* destroyed;
    explicit self_thrower(frugal::callback_list* l, bool* d) : list(l), destroyed(d) {}
    self_thrower(const self_thrower&) = delete;
    self_thrower& operator=(const self_thrower&) = delete;
    self_thrower(self_thrower&& o) noexcept : list(o.list), destroyed(std::exchange(o.destroyed, nullptr)) {}
    self_thrower& operator=(self_thrower&&) = delete;
    ~self_thrower() {
      if (destroyed != nullptr) *destroyed = true;
    }
    void operator()(const frugal::exhausted_event&) {
      (void)list->remove("self_thrower");
      throw 42;  // NOLINT(hicpp-exception-baseclass): the unknown-exception path
    }
  };
  list.add("self_thrower", self_thrower{&list, &thrower_destroyed});

  notify(list);
  ASSERT_EQ(list.errors().size(), 2u);
  EXPECT_EQ(list.errors()[0].callback, "thrower");
  EXPECT_EQ(list.errors()[0].event, frugal::event_kind::exhausted);
  EXPECT_EQ(list.errors()[0].what, "boom");
  EXPECT_EQ(list.errors()[1].callback, "self_thrower");
  EXPECT_EQ(list.errors()[1].what, "unknown exception");
  EXPECT_EQ(list.error_count(), 2u);
  EXPECT_EQ(victim_calls, 0);
  EXPECT_TRUE(victim_destroyed);
  EXPECT_TRUE(thrower_destroyed);
  EXPECT_EQ(list.names(), (names_t{"thrower", "late"}));

  notify(list);
  EXPECT_EQ(late_calls, 1);
  EXPECT_EQ(list.error_count(), 2u);
}

// ---------------------------------------------------------------------------------------------
// The new events.

struct new_events {
  std::vector<std::string>* seen;
  void operator()(const frugal::stop_event& e) {
    seen->push_back("stopped " + std::to_string(e.step_index) + " " + std::to_string(e.epoch_index) + " " +
                    (e.where == frugal::checkpoint::epoch ? "epoch " : "step ") +
                    std::string(frugal::to_string(e.reason)) + " " + std::string(e.message));
  }
  void operator()(const frugal::level_crossed_event& e) {
    seen->push_back("level_crossed " + std::string(e.resource) + " " + std::to_string(static_cast<int>(e.level)) +
                    " " + std::to_string(static_cast<int>(e.limit)));
  }
  void operator()(const frugal::best_metric_event& e) {
    seen->push_back("best_metric " + std::string(e.metric) + " " + std::to_string(static_cast<int>(e.value * 100)) +
                    " " + std::to_string(e.epoch_index) + " " +
                    (e.previous_best ? std::to_string(static_cast<int>(*e.previous_best * 100)) : "-") + " " +
                    (e.previous_best_epoch ? std::to_string(*e.previous_best_epoch) : "-"));
  }
};

struct only_stop {
  void operator()(const frugal::stop_event&) {}
};
struct stop_by_value {
  void operator()(frugal::stop_event) {}
};
struct mutable_stop {
  void operator()(frugal::stop_event&) {}
};
struct mutable_level {
  void operator()(frugal::level_crossed_event&) {}
};
struct mutable_best {
  void operator()(frugal::best_metric_event&) {}
};
struct best_returns_bool {
  bool operator()(const frugal::best_metric_event&) { return true; }
};
struct level_returns_int {
  int operator()(const frugal::level_crossed_event&) { return 0; }
};
static_assert(frugal::is_callback_v<only_stop>);
static_assert(frugal::is_callback_v<stop_by_value>);
static_assert(frugal::is_callback_v<new_events>);
static_assert(!frugal::is_callback_v<mutable_stop>);
static_assert(!frugal::is_callback_v<mutable_level>);
static_assert(!frugal::is_callback_v<mutable_best>);
static_assert(!frugal::is_callback_v<best_returns_bool>);
static_assert(!frugal::is_callback_v<level_returns_int>);

TEST(CallbackList, NewEventsReachTheirHooks) {
  frugal::callback_list list;
  std::vector<std::string> seen;
  list.add("new", new_events{&seen});
  list.add("stop_only", only_stop{});
  EXPECT_TRUE(list.handles(frugal::event_kind::stopped));
  EXPECT_TRUE(list.handles(frugal::event_kind::level_crossed));
  EXPECT_TRUE(list.handles(frugal::event_kind::best_metric));
  EXPECT_FALSE(list.handles(frugal::event_kind::exhausted));

  list.notify(frugal::event_kind::stopped,
              frugal::stop_event{12, 3, frugal::checkpoint::epoch, frugal::stop_reason::budget_exhausted, "wall: out"},
              12);
  list.notify(frugal::event_kind::level_crossed, frugal::level_crossed_event{"peak_bytes", 2048, 1024}, 12);
  list.notify(frugal::event_kind::best_metric,
              frugal::best_metric_event{"val_loss", 0.25, 4, std::nullopt, std::nullopt}, 12);
  list.notify(frugal::event_kind::best_metric, frugal::best_metric_event{"val_loss", 0.125, 6, 0.25, 4}, 12);
  EXPECT_EQ(seen, (std::vector<std::string>{"stopped 12 3 epoch budget_exhausted wall: out",
                                            "level_crossed peak_bytes 2048 1024", "best_metric val_loss 25 4 - -",
                                            "best_metric val_loss 12 6 25 4"}));

  EXPECT_TRUE(list.remove("new"));
  EXPECT_TRUE(list.handles(frugal::event_kind::stopped));
  EXPECT_FALSE(list.handles(frugal::event_kind::best_metric));
  EXPECT_TRUE(list.remove("stop_only"));
  EXPECT_FALSE(list.handles(frugal::event_kind::stopped));
}

TEST(EventKind, NamesOfEveryKind) {
  EXPECT_EQ(frugal::event_kind_count, 9u);
  EXPECT_EQ(frugal::to_string(frugal::event_kind::decision), "decision");
  EXPECT_EQ(frugal::to_string(frugal::event_kind::stopped), "stopped");
  EXPECT_EQ(frugal::to_string(frugal::event_kind::level_crossed), "level_crossed");
  EXPECT_EQ(frugal::to_string(frugal::event_kind::best_metric), "best_metric");
  for (std::size_t k = 0; k < frugal::event_kind_count; ++k)
    EXPECT_NE(frugal::to_string(static_cast<frugal::event_kind>(k)), "unknown") << k;
  static_assert(frugal::to_string(frugal::event_kind::best_metric) == "best_metric");
}

}  // namespace
