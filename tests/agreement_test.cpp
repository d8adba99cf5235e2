// Decisions shared by several processes: merge_votes() (the rule that makes every process take the
// same decision, <frugal/agreement.hpp>), controller::agree_with() (the agreement's last word on
// every checkpoint's decision), controller::set_decision_horizon() (forecasts that cover the steps
// until the next agreement) and request_stop() with a cause. A manual clock: nothing sleeps.
#include <frugal/agreement.hpp>
#include <frugal/controller.hpp>
#include <frugal/decision.hpp>
#include <frugal/scope.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/checks.hpp"
#include "support/run_step.hpp"

using namespace std::chrono_literals;

namespace {

using frugal::action;
using frugal::decision_vote;
using frugal::stop_reason;
using frugal_test::error_of;
using frugal_test::run_step;

constexpr std::size_t no_rule = decision_vote::no_rule;

std::uint8_t bits(std::initializer_list<action> actions) {
  std::uint8_t out = 0;
  for (action a : actions) out = static_cast<std::uint8_t>(out | static_cast<std::uint8_t>(a));
  return out;
}

// A vote, built clause by clause as a controller's decision would be.
class vote {
 public:
  explicit vote(std::size_t batch = 64) { v_.batch_size = batch; }
  vote& stop(stop_reason cause, const std::string& why) {
    set(action::stop);
    v_.cause = cause;
    return words(why);
  }
  vote& cancel(stop_reason cause, const std::string& why) {
    set(action::cancelled);
    v_.cause = cause;
    return words(why);
  }
  vote& end_epoch(const std::string& why) {
    set(action::end_epoch);
    return words(why);
  }
  vote& batch(std::size_t to, std::size_t from, const std::string& why) {
    v_.batch_size = to;
    set(to < from ? action::shrink_batch : action::grow_batch);
    return words(why);
  }
  vote& prune(double fraction, std::size_t rule, const std::string& why) {
    set(action::prune);
    v_.prune_fraction = fraction;
    v_.prune_rule = rule;
    return words(why);
  }
  vote& quantize(int b, std::size_t rule, const std::string& why) {
    set(action::quantize);
    v_.quantize_bits = b;
    v_.quantize_rule = rule;
    return words(why);
  }
  vote& words(const std::string& why) {
    if (why.empty()) return *this;
    if (!v_.reason.empty()) v_.reason += "; ";
    v_.reason += why;
    return *this;
  }
  operator decision_vote() const { return v_; }  // NOLINT: implicit on purpose, for vote lists

 private:
  void set(action a) { v_.actions = static_cast<std::uint8_t>(v_.actions | static_cast<std::uint8_t>(a)); }
  decision_vote v_;
};

// Nothing but the stop (or cancellation) of the winning vote: no batch change, epoch end, prune
// or quantize rides along.
void expect_bare_stop(const decision_vote& d, std::uint8_t stop_bits, std::size_t current_batch) {
  EXPECT_EQ(d.actions, stop_bits);
  EXPECT_EQ(d.batch_size, current_batch);
  EXPECT_EQ(d.prune_fraction, 0.0);
  EXPECT_EQ(d.prune_rule, no_rule);
  EXPECT_EQ(d.quantize_bits, 0);
  EXPECT_EQ(d.quantize_rule, no_rule);
}

// =============================================================================================
// merge_votes

TEST(MergeVotes, NoVotesIsAnError) {
  EXPECT_EQ(error_of([] { (void)frugal::merge_votes({}, 64); }),
            "frugal::merge_votes: votes must not be empty, got none");
}

TEST(MergeVotes, AnyStopWinsWithTheLowestStoppingRanksCauseAndWords) {
  const std::vector<decision_vote> votes = {
      vote{}.batch(32, 64, "shrink batch 64 -> 32: memory"),
      vote{}.stop(stop_reason::signal, "stop (signal): SIGTERM"),
      vote{}.stop(stop_reason::forecast, "stop (forecast): wall: 29 s used of 30 s"),
      vote{}.prune(0.4, 0, "prune 40 %: short").quantize(8, 0, "quantize to 8 bits: short"),
  };
  const decision_vote d = frugal::merge_votes(votes, 64);
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(d.cause, stop_reason::signal);
  EXPECT_EQ(d.reason, "rank 1: stop (signal): SIGTERM");
  // The stop takes nothing else with it: rank 0's shrink and rank 3's prune and quantize are dropped.
  expect_bare_stop(d, bits({action::stop}), 64);
  EXPECT_FALSE(d.repeats_stop);

  // Whichever rank stops, all stop: the last rank alone is enough.
  const decision_vote last = frugal::merge_votes({vote{}, vote{}, vote{}.stop(stop_reason::user, "stop (user): asked")}, 64);
  EXPECT_EQ(last.actions, bits({action::stop}));
  EXPECT_EQ(last.cause, stop_reason::user);
  EXPECT_EQ(last.reason, "rank 2: stop (user): asked");
}

TEST(MergeVotes, ACancellationBeatsAStopOfALowerRank) {
  const std::vector<decision_vote> votes = {
      vote{}.stop(stop_reason::user, "stop (user): asked"),
      vote{},
      vote{}.cancel(stop_reason::deadline, "cancelled (deadline): the watchdog fired"),
      vote{}.cancel(stop_reason::signal, "cancelled (signal): a flag"),
  };
  const decision_vote d = frugal::merge_votes(votes, 64);
  EXPECT_EQ(d.cause, stop_reason::deadline);
  EXPECT_EQ(d.reason, "rank 2: cancelled (deadline): the watchdog fired");
  expect_bare_stop(d, bits({action::cancelled}), 64);

  // A vote carrying both keeps both (and still nothing else).
  decision_vote both = vote{}.cancel(stop_reason::deadline, "cancelled (deadline): w").end_epoch("end epoch: e");
  both.actions = static_cast<std::uint8_t>(both.actions | bits({action::stop}));
  const decision_vote e = frugal::merge_votes({vote{}.stop(stop_reason::user, "stop (user): u"), both}, 64);
  EXPECT_EQ(e.cause, stop_reason::deadline);
  expect_bare_stop(e, bits({action::stop, action::cancelled}), 64);
  EXPECT_EQ(e.reason, "rank 1: cancelled (deadline): w; end epoch: e");
}

TEST(MergeVotes, TheSmallestBatchWinsAndShrinks) {
  const std::vector<decision_vote> votes = {
      vote{64},
      vote{}.batch(48, 64, "shrink batch 64 -> 48: a"),
      vote{}.batch(32, 64, "shrink batch 64 -> 32: b"),
      vote{}.batch(32, 64, "shrink batch 64 -> 32: c"),  // a tie: the lower rank's words
  };
  const decision_vote d = frugal::merge_votes(votes, 64);
  EXPECT_EQ(d.actions, bits({action::shrink_batch}));
  EXPECT_EQ(d.batch_size, 32u);
  EXPECT_EQ(d.cause, stop_reason::none);
  EXPECT_EQ(d.reason, "rank 2: shrink batch 64 -> 32: b");
}

TEST(MergeVotes, TheSmallestBatchWinsAndGrowsWhenEveryVoteIsAbove) {
  const decision_vote d = frugal::merge_votes(
      {vote{}.batch(128, 64, "grow batch 64 -> 128: room"), vote{}.batch(96, 64, "grow batch 64 -> 96: room")}, 64);
  EXPECT_EQ(d.actions, bits({action::grow_batch}));
  EXPECT_EQ(d.batch_size, 96u);
  EXPECT_EQ(d.reason, "rank 1: grow batch 64 -> 96: room");

  // One rank keeping the batch keeps it for all: no grow at all.
  const decision_vote kept = frugal::merge_votes({vote{}.batch(128, 64, "grow batch 64 -> 128: room"), vote{64}}, 64);
  EXPECT_EQ(kept.actions, bits({}));
  EXPECT_TRUE(kept.has(action::continue_run));
  EXPECT_EQ(kept.batch_size, 64u);
  EXPECT_EQ(kept.reason, "");

  // A grow and a shrink: the shrink (the smaller batch).
  const decision_vote mixed = frugal::merge_votes(
      {vote{}.batch(128, 64, "grow batch 64 -> 128: room"), vote{}.batch(32, 64, "shrink batch 64 -> 32: memory")}, 64);
  EXPECT_EQ(mixed.actions, bits({action::shrink_batch}));
  EXPECT_EQ(mixed.batch_size, 32u);
  EXPECT_EQ(mixed.reason, "rank 1: shrink batch 64 -> 32: memory");
}

TEST(MergeVotes, ShrinkAndGrowAreRelativeToTheCurrentBatchNotToTheVotesActions) {
  // Votes of 48 against a current batch of 32 (a vote's action bits say nothing here): a grow.
  decision_vote odd = vote{48};
  odd.actions = bits({action::shrink_batch});
  odd.reason = "x";
  const decision_vote d = frugal::merge_votes({odd, vote{48}}, 32);
  EXPECT_EQ(d.actions, bits({action::grow_batch}));
  EXPECT_EQ(d.batch_size, 48u);
}

TEST(MergeVotes, ACurrentBatchOfZeroIsAnUnmanagedBatch) {
  const decision_vote d = frugal::merge_votes({vote{0}.end_epoch("end epoch: x"), vote{0}}, 0);
  EXPECT_EQ(d.actions, bits({action::end_epoch}));
  EXPECT_EQ(d.batch_size, 0u);
  EXPECT_EQ(d.reason, "rank 0: end epoch: x");

  // Batch sizes voted under an unmanaged batch are ignored: no shrink, no grow, batch 0.
  const decision_vote e = frugal::merge_votes({vote{0}.batch(16, 0, "shrink"), vote{0}.batch(8, 0, "shrink")}, 0);
  EXPECT_FALSE(e.has(action::shrink_batch));
  EXPECT_FALSE(e.has(action::grow_batch));
  EXPECT_EQ(e.batch_size, 0u);
  EXPECT_EQ(e.actions, bits({}));
}

TEST(MergeVotes, AnEpochEndOfAnyRankEndsEveryonesEpoch) {
  const decision_vote d =
      frugal::merge_votes({vote{}, vote{}, vote{}.end_epoch("end epoch: flops: 60 used of 95")}, 64);
  EXPECT_EQ(d.actions, bits({action::end_epoch}));
  EXPECT_EQ(d.batch_size, 64u);
  EXPECT_EQ(d.reason, "rank 2: end epoch: flops: 60 used of 95");

  // With a shrink from another rank: both, the epoch end's clause first.
  const decision_vote both = frugal::merge_votes(
      {vote{}, vote{}.batch(32, 64, "shrink batch 64 -> 32: s"), vote{}.end_epoch("end epoch: e")}, 64);
  EXPECT_EQ(both.actions, bits({action::end_epoch, action::shrink_batch}));
  EXPECT_EQ(both.batch_size, 32u);
  EXPECT_EQ(both.reason, "rank 2: end epoch: e; rank 1: shrink batch 64 -> 32: s");

  // One rank giving two of the clauses taken is named once.
  const decision_vote once = frugal::merge_votes(
      {vote{}, vote{}.end_epoch("end epoch: e").batch(32, 64, "shrink batch 64 -> 32: s"), vote{}.end_epoch("end epoch: f")},
      64);
  EXPECT_EQ(once.actions, bits({action::end_epoch, action::shrink_batch}));
  EXPECT_EQ(once.reason, "rank 1: end epoch: e; shrink batch 64 -> 32: s");
}

TEST(MergeVotes, PruneAndQuantizeComeFromTheLowestRankThatVotedForThem) {
  const std::vector<decision_vote> votes = {
      vote{},
      vote{}.prune(0.5, 1, "prune 50.0 %: a"),
      vote{}.prune(0.2, 0, "prune 20.0 %: b"),  // a higher rank: not taken, smaller fraction or not
      vote{}.quantize(8, 2, "quantize to 8 bits: q"),
      vote{}.quantize(4, 0, "quantize to 4 bits: r"),
  };
  const decision_vote d = frugal::merge_votes(votes, 64);
  EXPECT_EQ(d.actions, bits({action::prune, action::quantize}));
  EXPECT_EQ(d.prune_fraction, 0.5);
  EXPECT_EQ(d.prune_rule, 1u);
  EXPECT_EQ(d.quantize_bits, 8);
  EXPECT_EQ(d.quantize_rule, 2u);
  EXPECT_EQ(d.batch_size, 64u);
  EXPECT_EQ(d.reason, "rank 1: prune 50.0 %: a; rank 3: quantize to 8 bits: q");

  // A prune no rule is behind (a callback's amendment) keeps no_rule.
  const decision_vote amended = frugal::merge_votes({vote{}, vote{}.prune(0.3, no_rule, "prune 30.0 %: cb")}, 64);
  EXPECT_EQ(amended.actions, bits({action::prune}));
  EXPECT_EQ(amended.prune_fraction, 0.3);
  EXPECT_EQ(amended.prune_rule, no_rule);
  EXPECT_EQ(amended.quantize_rule, no_rule);
}

TEST(MergeVotes, UnanimousVotesKeepTheFirstRanksWordsUnprefixed) {
  // The same choice (words are not compared): rank 0's words, as they are.
  const decision_vote stop = frugal::merge_votes({vote{}.stop(stop_reason::forecast, "stop (forecast): rank 0's words"),
                                                  vote{}.stop(stop_reason::forecast, "stop (forecast): rank 1's words"),
                                                  vote{}.stop(stop_reason::forecast, "stop (forecast): rank 2's words")},
                                                 64);
  EXPECT_EQ(stop.actions, bits({action::stop}));
  EXPECT_EQ(stop.cause, stop_reason::forecast);
  EXPECT_EQ(stop.reason, "stop (forecast): rank 0's words");

  const decision_vote shrink = frugal::merge_votes(
      {vote{}.batch(32, 64, "shrink batch 64 -> 32: mine"), vote{}.batch(32, 64, "shrink batch 64 -> 32: theirs")}, 64);
  EXPECT_EQ(shrink.actions, bits({action::shrink_batch}));
  EXPECT_EQ(shrink.batch_size, 32u);
  EXPECT_EQ(shrink.reason, "shrink batch 64 -> 32: mine");

  const decision_vote quiet = frugal::merge_votes({vote{}, vote{}, vote{}}, 64);
  EXPECT_EQ(quiet.actions, bits({}));
  EXPECT_EQ(quiet.batch_size, 64u);
  EXPECT_EQ(quiet.reason, "");

  // One process: its own decision, words and all.
  const decision_vote alone =
      frugal::merge_votes({vote{}.prune(0.25, 0, "prune 25.0 %: p").batch(32, 64, "shrink batch 64 -> 32: s")}, 64);
  EXPECT_EQ(alone.actions, bits({action::prune, action::shrink_batch}));
  EXPECT_EQ(alone.batch_size, 32u);
  EXPECT_EQ(alone.prune_fraction, 0.25);
  EXPECT_EQ(alone.prune_rule, 0u);
  EXPECT_EQ(alone.reason, "prune 25.0 %: p; shrink batch 64 -> 32: s");
}

TEST(MergeVotes, DifferingVotesSayWhoseEachClauseIsAndSkipEmptyWords) {
  // Rank 0 ends the epoch without words; rank 1 shrinks with them.
  const decision_vote d = frugal::merge_votes({vote{}.end_epoch(""), vote{}.batch(32, 64, "shrink batch 64 -> 32: s")}, 64);
  EXPECT_EQ(d.actions, bits({action::end_epoch, action::shrink_batch}));
  EXPECT_EQ(d.reason, "rank 1: shrink batch 64 -> 32: s");
  // A rank whose clause is not taken is not named.
  const decision_vote e = frugal::merge_votes(
      {vote{}.batch(48, 64, "shrink batch 64 -> 48: not taken"), vote{}.batch(32, 64, "shrink batch 64 -> 32: taken")}, 64);
  EXPECT_EQ(e.reason, "rank 1: shrink batch 64 -> 32: taken");
}

TEST(MergeVotes, EveryProcessMergingTheSameVotesGetsTheSameDecision) {
  const std::vector<decision_vote> votes = {vote{}.batch(32, 64, "s"), vote{}.prune(0.5, 0, "p"), vote{}.end_epoch("e")};
  const decision_vote a = frugal::merge_votes(votes, 64);
  const decision_vote b = frugal::merge_votes(votes, 64);
  EXPECT_TRUE(a.same_choice(b));
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.actions, bits({action::end_epoch, action::shrink_batch, action::prune}));
}

// =============================================================================================
// controller::agree_with

// The checkpoints' votes, and the vote to leave in their place (none: pass the vote through).
struct recording_agreement {
  std::vector<decision_vote> seen;
  std::vector<frugal::checkpoint> where;
  std::function<void(decision_vote&, std::size_t call)> change;  // call counts from 1
  std::function<void(decision_vote&, frugal::checkpoint)> fn() {
    return [this](decision_vote& v, frugal::checkpoint c) {
      seen.push_back(v);
      where.push_back(c);
      if (change) change(v, seen.size());
    };
  }
};

TEST(AgreeWith, AnAgreedStopStopsTheRunOnce) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  int stop_events = 0;
  std::string stop_words;
  frugal::checkpoint stop_where = frugal::checkpoint::epoch;
  stop_reason stop_why = stop_reason::none;
  ctl.add_callback("stops", [&](const frugal::stop_event& e) {
    ++stop_events;
    stop_words = std::string(e.message);
    stop_where = e.where;
    stop_why = e.reason;
  });
  recording_agreement agree;
  agree.change = [](decision_vote& v, std::size_t call) {
    if (call != 3) return;
    v.actions = bits({action::stop});
    v.cause = stop_reason::signal;
    v.reason = "rank 2: stop (signal): SIGTERM";
  };
  EXPECT_EQ(&ctl.agree_with(agree.fn()), &ctl);

  for (int i = 0; i < 2; ++i) {
    run_step(run, clock, 1s);
    EXPECT_TRUE(ctl.end_step().is_continue());
  }
  EXPECT_FALSE(ctl.should_stop());
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.stops());
  EXPECT_TRUE(d.has(action::stop));
  EXPECT_FALSE(d.repeats_stop());
  EXPECT_EQ(d.cause(), stop_reason::signal);
  EXPECT_EQ(d.reason(), "rank 2: stop (signal): SIGTERM");
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), stop_reason::signal);
  EXPECT_EQ(ctl.stop_message(), "rank 2: stop (signal): SIGTERM");
  ASSERT_EQ(ctl.history().decisions.size(), 1u);
  const frugal::decision_record& rec = ctl.history().decisions.back();
  EXPECT_EQ(rec.at, "step");
  EXPECT_EQ(rec.actions, "stop");
  EXPECT_EQ(rec.cause, stop_reason::signal);
  EXPECT_EQ(rec.reason, "rank 2: stop (signal): SIGTERM");
  EXPECT_EQ(rec.step_index, 3u);
  EXPECT_EQ(stop_events, 1);
  EXPECT_EQ(stop_words, "rank 2: stop (signal): SIGTERM");
  EXPECT_EQ(stop_where, frugal::checkpoint::step);
  EXPECT_EQ(stop_why, stop_reason::signal);

  // The next checkpoint hands the agreement the stop again, as a repeat; no second stop event.
  run_step(run, clock, 1s);
  const frugal::decision again = ctl.end_step();
  ASSERT_EQ(agree.seen.size(), 4u);
  EXPECT_TRUE(agree.seen.back().stops());
  EXPECT_TRUE(agree.seen.back().repeats_stop);
  EXPECT_EQ(agree.seen.back().cause, stop_reason::signal);
  EXPECT_EQ(agree.seen.back().reason, "rank 2: stop (signal): SIGTERM");
  EXPECT_TRUE(again.stops());
  EXPECT_TRUE(again.repeats_stop());
  EXPECT_EQ(stop_events, 1);
  EXPECT_EQ(ctl.history().repeated_stops, 1u);
  EXPECT_EQ(ctl.end_run(), stop_reason::signal);
  EXPECT_EQ(stop_events, 1);
}

TEST(AgreeWith, AnAgreedStopAtAnEpochEndIsAnEpochStop) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  std::vector<frugal::checkpoint> stop_where;
  ctl.add_callback("stops", [&](const frugal::stop_event& e) { stop_where.push_back(e.where); });
  ctl.agree_with([](decision_vote& v, frugal::checkpoint c) {
    if (c != frugal::checkpoint::epoch) return;
    v.actions = bits({action::stop});
    v.cause = stop_reason::early_stopping;
    v.reason = "rank 1: stop (early_stopping): val_loss did not improve";
  });
  run_step(run, clock, 1s);
  EXPECT_TRUE(ctl.end_step().is_continue());
  const frugal::decision d = ctl.end_epoch();
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(d.cause(), stop_reason::early_stopping);
  EXPECT_EQ(ctl.stop_reason(), stop_reason::early_stopping);
  EXPECT_EQ(ctl.epochs(), 1u);
  EXPECT_EQ(stop_where, std::vector<frugal::checkpoint>{frugal::checkpoint::epoch});
  ASSERT_FALSE(ctl.history().decisions.empty());
  EXPECT_EQ(ctl.history().decisions.back().at, "epoch");
}

TEST(AgreeWith, AnAgreedBatchSizeIsTheControllersBatchSize) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64).batch_limits(16, 128)};
  recording_agreement agree;
  agree.change = [](decision_vote& v, std::size_t call) {
    if (call == 1) {
      v.batch_size = 32;
      v.actions = bits({action::shrink_batch});
      v.reason = "rank 3: shrink batch 64 -> 32: peak_bytes";
    } else if (call == 2) {
      v.batch_size = 128;
      v.actions = bits({action::grow_batch});
      v.reason = "grow batch 32 -> 128: room";
    }
  };
  ctl.agree_with(agree.fn());

  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step(frugal::step{}.samples(64));
  EXPECT_TRUE(d.has(action::shrink_batch));
  EXPECT_EQ(d.batch_size(), 32u);
  EXPECT_EQ(ctl.batch_size(), 32u);
  EXPECT_EQ(ctl.accumulation_steps(), 2u);  // the effective batch (64) is kept
  EXPECT_EQ(d.accumulation_steps(), 2u);
  ASSERT_EQ(ctl.history().batch_changes.size(), 1u);
  EXPECT_EQ(ctl.history().batch_changes[0].from, 64u);
  EXPECT_EQ(ctl.history().batch_changes[0].to, 32u);
  EXPECT_EQ(ctl.history().batch_changes[0].reason, "rank 3: shrink batch 64 -> 32: peak_bytes");
  ASSERT_EQ(ctl.history().decisions.size(), 1u);
  EXPECT_EQ(ctl.history().decisions[0].actions, "shrink_batch");

  run_step(run, clock, 1s);
  const frugal::decision g = ctl.end_step(frugal::step{}.samples(32));
  EXPECT_EQ(agree.seen[1].batch_size, 32u);  // the vote carries the batch in force
  EXPECT_TRUE(g.has(action::grow_batch));
  EXPECT_EQ(g.batch_size(), 128u);
  EXPECT_EQ(ctl.batch_size(), 128u);
  EXPECT_EQ(ctl.accumulation_steps(), 1u);
  ASSERT_EQ(ctl.history().batch_changes.size(), 2u);
  EXPECT_EQ(ctl.history().batch_changes[1].from, 32u);
  EXPECT_EQ(ctl.history().batch_changes[1].to, 128u);
}

TEST(AgreeWith, AStopIgnoresTheBatchSizeItCarries) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64).batch_limits(16, 128)};
  ctl.agree_with([](decision_vote& v, frugal::checkpoint) {
    v.actions = bits({action::stop, action::shrink_batch});
    v.cause = stop_reason::user;
    v.batch_size = 9999;  // outside the limits, but a stop takes no batch change
    v.reason = "stop (user): x";
  });
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.stops());
  EXPECT_FALSE(d.has(action::shrink_batch));
  EXPECT_EQ(d.batch_size(), 64u);
  EXPECT_EQ(ctl.batch_size(), 64u);
  EXPECT_TRUE(ctl.history().batch_changes.empty());
}

// Two prune rules and two quantize rules that never fire on their own (a long warm-up, no limit).
frugal::controller_options rules_that_wait(std::vector<double>& a, std::vector<double>& b, std::vector<int>& q0,
                                           std::vector<int>& q1) {
  return frugal::controller_options{}
      .planned_steps(100)
      .prune(frugal::prune_rule{}.name("a").warmup_steps(1000).action([&](double f) { a.push_back(f); }))
      .prune(frugal::prune_rule{}.name("b").warmup_steps(1000).action([&](double f) { b.push_back(f); }))
      .quantize(frugal::quantize_rule{}.name("q0").warmup_steps(1000).action([&](int x) { q0.push_back(x); }))
      .quantize(frugal::quantize_rule{}.name("q1").warmup_steps(1000).action([&](int x) { q1.push_back(x); }));
}

TEST(AgreeWith, AnAgreedPruneRunsThatRulesActionWithTheAgreedFraction) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  std::vector<double> a, b;
  std::vector<int> q0, q1;
  frugal::controller ctl{run, rules_that_wait(a, b, q0, q1)};
  ctl.agree_with([](decision_vote& v, frugal::checkpoint) {
    v.actions = bits({action::prune, action::quantize});
    v.prune_fraction = 0.25;
    v.prune_rule = 1;
    v.quantize_bits = 8;
    v.quantize_rule = 0;
    v.reason = "rank 1: prune 25.0 %: short [b]; quantize to 8 bits: short [q0]";
  });
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.has(action::prune));
  EXPECT_TRUE(d.has(action::quantize));
  EXPECT_FALSE(d.stops());
  EXPECT_EQ(d.prune_fraction(), 0.25);
  EXPECT_EQ(d.quantize_bits(), 8);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(b, std::vector<double>{0.25});
  EXPECT_EQ(q0, std::vector<int>{8});
  EXPECT_TRUE(q1.empty());
  ASSERT_EQ(ctl.history().compressions.size(), 2u);
  EXPECT_EQ(ctl.history().compressions[0].kind, action::prune);
  EXPECT_EQ(ctl.history().compressions[0].rule, "b");
  EXPECT_EQ(ctl.history().compressions[0].fraction, 0.25);
  EXPECT_EQ(ctl.history().compressions[0].step_index, 1u);
  EXPECT_EQ(ctl.history().compressions[1].kind, action::quantize);
  EXPECT_EQ(ctl.history().compressions[1].rule, "q0");
  EXPECT_EQ(ctl.history().compressions[1].bits, 8);
  ASSERT_EQ(ctl.history().decisions.size(), 1u);
  EXPECT_EQ(ctl.history().decisions[0].actions, "quantize+prune");
  EXPECT_EQ(ctl.history().decisions[0].reason, "rank 1: prune 25.0 %: short [b]; quantize to 8 bits: short [q0]");
}

TEST(AgreeWith, AnAgreedPruneWithoutARuleRunsNoRulesAction) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  std::vector<double> a, b;
  std::vector<int> q0, q1;
  frugal::controller ctl{run, rules_that_wait(a, b, q0, q1)};
  ctl.agree_with([](decision_vote& v, frugal::checkpoint) {
    v.actions = bits({action::prune});
    v.prune_fraction = 0.5;
    v.prune_rule = no_rule;
    v.reason = "prune 50.0 %: amended";
  });
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.has(action::prune));
  EXPECT_EQ(d.prune_fraction(), 0.5);
  EXPECT_TRUE(a.empty());
  EXPECT_TRUE(b.empty());
  EXPECT_TRUE(ctl.history().compressions.empty());
}

// The merge_votes documentation: "a stop takes no batch change, epoch end, prune or quantize with
// it (the controller drops them too)". An agreement that leaves a stop with a prune in the vote:
// the run stops, and no prune rule's action runs on the way out.
TEST(AgreeWith, AnAgreedStopTakesNoPruneOrQuantizeWithIt) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  std::vector<double> a, b;
  std::vector<int> q0, q1;
  frugal::controller ctl{run, rules_that_wait(a, b, q0, q1)};
  ctl.agree_with([](decision_vote& v, frugal::checkpoint) {
    v.actions = bits({action::stop, action::prune, action::quantize});
    v.cause = stop_reason::user;
    v.prune_fraction = 0.5;
    v.prune_rule = 0;
    v.quantize_bits = 8;
    v.quantize_rule = 1;
    v.reason = "stop (user): x";
  });
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.stops());
  EXPECT_FALSE(d.has(action::prune));
  EXPECT_FALSE(d.has(action::quantize));
  EXPECT_TRUE(a.empty()) << "the prune rule's action ran with a stop";
  EXPECT_TRUE(q1.empty()) << "the quantize rule's action ran with a stop";
  EXPECT_TRUE(ctl.history().compressions.empty());
}

// Sets `change` as the agreement, runs one step and expects end_step to throw invalid_argument
// with every one of `parts`; then checks nothing a user relies on changed.
void expect_refused(frugal::controller& ctl, frugal::budget& run, frugal::manual_clock& clock,
                    const std::function<void(decision_vote&)>& change, const std::vector<std::string>& parts,
                    const std::vector<double>& pruned) {
  ctl.agree_with([change](decision_vote& v, frugal::checkpoint) { change(v); });
  const std::uint64_t steps = ctl.steps();
  const std::size_t decisions = ctl.history().decisions.size();
  run_step(run, clock, 1s);
  frugal_test::expect_invalid([&] { (void)ctl.end_step(); }, parts);
  // The step itself was counted (its work was done and charged); the decision was not taken.
  EXPECT_EQ(ctl.steps(), steps + 1);
  EXPECT_EQ(ctl.batch_size(), 64u);
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), stop_reason::none);
  EXPECT_EQ(ctl.stop_message(), "");
  EXPECT_EQ(ctl.history().decisions.size(), decisions);
  EXPECT_TRUE(ctl.history().batch_changes.empty());
  EXPECT_TRUE(ctl.history().compressions.empty());
  EXPECT_TRUE(pruned.empty());
}

TEST(AgreeWith, AnAgreedVoteTheControllerCannotTakeIsRefusedNamingTheField) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  std::vector<double> pruned;
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64).batch_limits(16, 128).planned_steps(100).prune(
                                  frugal::prune_rule{}.warmup_steps(1000).action([&](double f) { pruned.push_back(f); }))};
  const auto batch = [](std::size_t n) {
    return [n](decision_vote& v) {
      v.batch_size = n;
      v.actions = bits({n < 64 ? action::shrink_batch : action::grow_batch});
    };
  };
  expect_refused(ctl, run, clock, batch(8), {"frugal::controller: the agreed decision's batch_size is 8", "[16, 128]"},
                 pruned);
  expect_refused(ctl, run, clock, batch(129), {"batch_size is 129", "outside batch_limits [16, 128]"}, pruned);
  expect_refused(ctl, run, clock, batch(0), {"batch_size is 0"}, pruned);
  // A batch size alone, without a shrink or grow bit, is checked too.
  expect_refused(ctl, run, clock, [](decision_vote& v) { v.batch_size = 1000; }, {"batch_size is 1000"}, pruned);

  const auto prune = [](double f, std::size_t rule) {
    return [f, rule](decision_vote& v) {
      v.actions = bits({action::prune});
      v.prune_fraction = f;
      v.prune_rule = rule;
    };
  };
  expect_refused(ctl, run, clock, prune(0.5, 1), {"prune_rule is 1", "the controller has 1 prune rules"}, pruned);
  expect_refused(ctl, run, clock, prune(0, 0), {"prune_fraction is 0", "not in (0, 1]"}, pruned);
  expect_refused(ctl, run, clock, prune(1.5, 0), {"prune_fraction is 1.5"}, pruned);
  expect_refused(ctl, run, clock, prune(-0.5, 0), {"prune_fraction is -0.5"}, pruned);
  expect_refused(ctl, run, clock, prune(std::numeric_limits<double>::quiet_NaN(), 0), {"prune_fraction is nan"}, pruned);

  const auto quantize = [](int b, std::size_t rule) {
    return [b, rule](decision_vote& v) {
      v.actions = bits({action::quantize});
      v.quantize_bits = b;
      v.quantize_rule = rule;
    };
  };
  expect_refused(ctl, run, clock, quantize(0, no_rule), {"quantize_bits is 0", "not in [1, 64]"}, pruned);
  expect_refused(ctl, run, clock, quantize(65, no_rule), {"quantize_bits is 65"}, pruned);
  expect_refused(ctl, run, clock, quantize(8, 0), {"quantize_rule is 0", "the controller has 0 quantize rules"}, pruned);

  const auto stop_without_cause = [](action a) {
    return [a](decision_vote& v) {
      v.actions = bits({a});
      v.cause = stop_reason::none;
      v.reason = "stop: no cause";
    };
  };
  expect_refused(ctl, run, clock, stop_without_cause(action::stop), {"cause is none for a stop"}, pruned);
  expect_refused(ctl, run, clock, stop_without_cause(action::cancelled), {"cause is none for a stop"}, pruned);

  // The controller still works: a vote it can take is taken.
  ctl.agree_with([](decision_vote& v, frugal::checkpoint) {
    v.batch_size = 16;
    v.actions = bits({action::shrink_batch});
  });
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step();
  EXPECT_EQ(d.batch_size(), 16u);
  EXPECT_EQ(ctl.batch_size(), 16u);
  EXPECT_FALSE(ctl.should_stop());
}

TEST(AgreeWith, ARefusedVoteAtAnEpochEndCountsTheEpochAndTakesNoDecision) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  run_step(run, clock, 1s);
  EXPECT_TRUE(ctl.end_step().is_continue());
  ctl.agree_with([](decision_vote& v, frugal::checkpoint) {
    v.actions = bits({action::stop});
    v.cause = stop_reason::none;
  });
  frugal_test::expect_invalid([&] { (void)ctl.end_epoch(); }, {"the agreed decision's cause is none for a stop"});
  EXPECT_EQ(ctl.epochs(), 1u);
  EXPECT_EQ(ctl.steps_in_epoch(), 0u);
  EXPECT_EQ(ctl.steps(), 1u);
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), stop_reason::none);
  EXPECT_TRUE(ctl.history().decisions.empty());
  ctl.agree_with({});
  EXPECT_TRUE(ctl.end_epoch().is_continue());
  EXPECT_EQ(ctl.epochs(), 2u);
}

TEST(AgreeWith, AnAgreementThatThrowsMakesTheCheckpointThrow) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(25)};
  frugal::controller ctl{run};
  bool fail = true;
  int stop_events = 0;
  ctl.add_callback("stops", [&](const frugal::stop_event&) { ++stop_events; });
  ctl.agree_with([&](decision_vote&, frugal::checkpoint) {
    if (fail) throw std::runtime_error("the other ranks are gone");
  });
  run_step(run, clock, 1s, 10);
  EXPECT_EQ(error_of<std::runtime_error>([&] { (void)ctl.end_step(); }), "the other ranks are gone");
  EXPECT_FALSE(ctl.should_stop());
  // Two steps of 10 FLOPs under 25: the local decision is a stop (forecast), but it is not
  // taken while the agreement throws.
  run_step(run, clock, 1s, 10);
  EXPECT_EQ(error_of<std::runtime_error>([&] { (void)ctl.end_step(); }), "the other ranks are gone");
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), stop_reason::none);
  EXPECT_EQ(stop_events, 0);
  EXPECT_TRUE(ctl.history().decisions.empty());
  EXPECT_EQ(ctl.steps(), 2u);
  // No checkpoint is left open: the next one runs, and takes the stop.
  fail = false;
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(d.cause(), stop_reason::forecast);
  EXPECT_EQ(stop_events, 1);
  ctl.agree_with([&](decision_vote&, frugal::checkpoint) { throw std::runtime_error("epoch"); });
  EXPECT_EQ(error_of<std::runtime_error>([&] { (void)ctl.end_epoch(); }), "epoch");
}

// The agree_with documentation: "`agree` may throw (the checkpoint then throws, before anything
// changed)". At an epoch's end the epoch is then not counted (epochs() stays 0), so a loop that
// retries the checkpoint reports the same epoch again -- and must not have it judged twice: its
// metrics must not already be in early stopping's state and the history.
TEST(AgreeWith, AThrowingAgreementAtAnEpochEndStillCountsTheEpoch) {
  // The epoch happened and its metric was seen; only the decision was not taken. The next
  // end_epoch is the next epoch: counted once each, judged once each.
  frugal::budget run{"train"};
  frugal::controller ctl{run, frugal::controller_options{}.early_stop(frugal::early_stopping{"val_loss"}.patience(1))};
  bool fail = true;
  ctl.agree_with([&](decision_vote&, frugal::checkpoint) {
    if (fail) throw std::runtime_error("the other ranks are gone");
  });
  EXPECT_THROW((void)ctl.end_epoch(frugal::epoch{}.metric("val_loss", 1.0)), std::runtime_error);
  EXPECT_EQ(ctl.epochs(), 1u);
  EXPECT_EQ(ctl.history().metrics.size(), 1u);
  EXPECT_FALSE(ctl.should_stop());
  ASSERT_EQ(ctl.early_stoppers().size(), 1u);
  EXPECT_EQ(ctl.early_stoppers()[0].best(), 1.0);
  fail = false;
  const frugal::decision improved = ctl.end_epoch(frugal::epoch{}.metric("val_loss", 0.5));
  EXPECT_FALSE(improved.stops()) << improved.reason();
  EXPECT_EQ(ctl.epochs(), 2u);
  EXPECT_EQ(ctl.history().metrics.size(), 2u);
  const frugal::decision flat = ctl.end_epoch(frugal::epoch{}.metric("val_loss", 0.5));
  EXPECT_TRUE(flat.stops());
  EXPECT_EQ(flat.cause(), stop_reason::early_stopping);
}

TEST(AgreeWith, TheAgreementSeesTheLocalDecision) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(35)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64)};
  recording_agreement agree;
  ctl.agree_with(agree.fn());
  run_step(run, clock, 1s, 10);
  EXPECT_TRUE(ctl.end_step().is_continue());
  ASSERT_EQ(agree.seen.size(), 1u);
  const decision_vote& quiet = agree.seen[0];
  EXPECT_EQ(quiet.actions, bits({}));
  EXPECT_EQ(quiet.cause, stop_reason::none);
  EXPECT_EQ(quiet.batch_size, 64u);
  EXPECT_EQ(quiet.prune_fraction, 0.0);
  EXPECT_EQ(quiet.quantize_bits, 0);
  EXPECT_EQ(quiet.prune_rule, no_rule);
  EXPECT_EQ(quiet.quantize_rule, no_rule);
  EXPECT_FALSE(quiet.repeats_stop);
  EXPECT_EQ(quiet.reason, "");

  // 20 of 35 used, next step 10: fits. 30 used: the next does not (forecast).
  run_step(run, clock, 1s, 10);
  EXPECT_TRUE(ctl.end_step().is_continue());
  run_step(run, clock, 1s, 10);
  const frugal::decision d = ctl.end_step();
  ASSERT_EQ(agree.seen.size(), 3u);
  EXPECT_EQ(agree.seen[2].actions, bits({action::stop}));
  EXPECT_EQ(agree.seen[2].cause, stop_reason::forecast);
  EXPECT_EQ(agree.seen[2].reason, "stop (forecast): flops: 30 used of 35, next step forecast 10");
  EXPECT_EQ(agree.seen[2].batch_size, 64u);
  EXPECT_FALSE(agree.seen[2].repeats_stop);
  EXPECT_EQ(d.reason(), agree.seen[2].reason);
  EXPECT_EQ(d.cause(), stop_reason::forecast);
}

TEST(AgreeWith, AStopRequestShowsUpInTheVoteWithItsCause) {
  for (const stop_reason cause : {stop_reason::user, stop_reason::signal}) {
    SCOPED_TRACE(std::string(frugal::to_string(cause)));
    frugal::manual_clock clock;
    frugal::budget run{"train"};
    frugal::controller ctl{run};
    recording_agreement agree;
    ctl.agree_with(agree.fn());
    if (cause == stop_reason::user)
      ctl.request_stop("rank 0 was asked");
    else
      ctl.request_stop("rank 0 was asked", cause);
    run_step(run, clock, 1s);
    const frugal::decision d = ctl.end_step();
    ASSERT_EQ(agree.seen.size(), 1u);
    const std::string words = "stop (" + std::string(frugal::to_string(cause)) + "): rank 0 was asked";
    EXPECT_EQ(agree.seen[0].actions, bits({action::stop}));
    EXPECT_EQ(agree.seen[0].cause, cause);
    EXPECT_EQ(agree.seen[0].reason, words);
    EXPECT_TRUE(d.stops());
    EXPECT_EQ(d.cause(), cause);
    EXPECT_EQ(ctl.stop_reason(), cause);
    EXPECT_EQ(ctl.stop_message(), words);
  }
}

TEST(AgreeWith, TheVoteNamesThePruneRuleThatFired) {
  // 100 planned steps of 1 s under 50 s: at step 1, 99 s of work and 49 s left. Rule 0 waits
  // (warm-up), rule 1 fires; the vote says so, and passed through, rule 1's action runs.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(50s)};
  std::vector<double> first, second;
  frugal::controller ctl{run, frugal::controller_options{}
                                  .planned_steps(100)
                                  .prune(frugal::prune_rule{}.name("first").warmup_steps(1000).action(
                                      [&](double f) { first.push_back(f); }))
                                  .prune(frugal::prune_rule{}.name("second").max_fraction(0.9).warmup_steps(0).action(
                                      [&](double f) { second.push_back(f); }))};
  recording_agreement agree;
  ctl.agree_with(agree.fn());
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step();
  ASSERT_EQ(agree.seen.size(), 1u);
  EXPECT_EQ(agree.seen[0].actions, bits({action::prune}));
  EXPECT_EQ(agree.seen[0].prune_rule, 1u);
  EXPECT_DOUBLE_EQ(agree.seen[0].prune_fraction, 1 - 49.0 / 99.0);
  EXPECT_EQ(agree.seen[0].quantize_rule, no_rule);
  EXPECT_TRUE(d.has(action::prune));
  EXPECT_TRUE(first.empty());
  ASSERT_EQ(second.size(), 1u);
  EXPECT_DOUBLE_EQ(second[0], 1 - 49.0 / 99.0);
}

TEST(AgreeWith, AnAgreementCanKeepTheRunGoingWhenItsOwnStopIsOutvoted) {
  // The last word is the agreement's: a local forecast stop it drops is not taken.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(15)};
  frugal::controller ctl{run};
  ctl.agree_with([](decision_vote& v, frugal::checkpoint) { v = decision_vote{}; });
  run_step(run, clock, 1s, 10);
  const frugal::decision d = ctl.end_step();  // 10 used, next 10: over 15 locally
  EXPECT_TRUE(d.is_continue());
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), stop_reason::none);
}

TEST(AgreeWith, AnEmptyAgreementRestoresLocalDecisions) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  int calls = 0;
  ctl.agree_with([&](decision_vote& v, frugal::checkpoint) {
    ++calls;
    v.actions = bits({action::end_epoch});
    v.reason = "end epoch: rank 1 is done";
  });
  run_step(run, clock, 1s);
  const frugal::decision forced = ctl.end_step();
  EXPECT_TRUE(forced.has(action::end_epoch));
  EXPECT_EQ(forced.reason(), "end epoch: rank 1 is done");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(&ctl.agree_with({}), &ctl);
  run_step(run, clock, 1s);
  const frugal::decision local = ctl.end_step();
  EXPECT_TRUE(local.is_continue());
  EXPECT_EQ(local.reason(), "");
  EXPECT_TRUE(ctl.end_epoch().is_continue());
  EXPECT_EQ(calls, 1);
}

TEST(AgreeWith, TheAgreementIsToldWhichCheckpoint) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  recording_agreement agree;
  ctl.agree_with(agree.fn());
  run_step(run, clock, 1s);
  (void)ctl.end_step();
  run_step(run, clock, 1s);
  (void)ctl.end_step();
  (void)ctl.end_epoch();
  run_step(run, clock, 1s);
  (void)ctl.end_step();
  (void)ctl.end_epoch();
  using frugal::checkpoint;
  EXPECT_EQ(agree.where,
            (std::vector<checkpoint>{checkpoint::step, checkpoint::step, checkpoint::epoch, checkpoint::step, checkpoint::epoch}));
}

// =============================================================================================
// set_decision_horizon

TEST(DecisionHorizon, IsOneByDefaultAndZeroIsRefused) {
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  EXPECT_EQ(ctl.decision_horizon(), 1u);
  EXPECT_EQ(error_of([&] { ctl.set_decision_horizon(0); }),
            "frugal::controller: decision_horizon must be at least 1 step, got 0");
  EXPECT_EQ(ctl.decision_horizon(), 1u);
  ctl.set_decision_horizon(5);
  EXPECT_EQ(ctl.decision_horizon(), 5u);
  ctl.set_decision_horizon(1);
  EXPECT_EQ(ctl.decision_horizon(), 1u);
}

// Steps of `flops(i)` FLOPs (i from 1) under `limit` until the controller stops: the step it
// stopped at, and that decision.
struct stopped_at {
  int step = 0;
  frugal::decision last;
};
stopped_at run_flops(double limit, std::size_t horizon, const std::function<std::uint64_t(int)>& flops,
                     frugal::controller_options options = {}) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(limit)};
  frugal::controller ctl{run, std::move(options)};
  ctl.set_decision_horizon(horizon);
  stopped_at out;
  for (int i = 1; i <= 100 && !ctl.should_stop(); ++i) {
    run_step(run, clock, 10ms, flops(i));
    out.last = ctl.end_step();
    out.step = i;
    EXPECT_EQ(ctl.steps(), static_cast<std::uint64_t>(i));
  }
  return out;
}

TEST(DecisionHorizon, AConstantCostStopsWhenTheNextHorizonOfStepsWouldNotFit) {
  // 10 FLOPs a step under 105: stop after step k when k*10 + f(1) + (n-1)*mean > 105, f(1) = mean
  // = 10 (no spread: no headroom). n = 1: 10k + 10 > 105 -> k = 10. n = 5: 10k + 50 > 105 -> k = 6.
  const auto ten = [](int) -> std::uint64_t { return 10; };
  const stopped_at one = run_flops(105, 1, ten);
  EXPECT_EQ(one.step, 10);
  EXPECT_EQ(one.last.cause(), stop_reason::forecast);
  EXPECT_EQ(one.last.reason(), "stop (forecast): flops: 100 used of 105, next step forecast 10");
  const stopped_at five = run_flops(105, 5, ten);
  EXPECT_EQ(five.step, 6);
  EXPECT_EQ(five.last.cause(), stop_reason::forecast);
  EXPECT_EQ(five.last.reason(), "stop (forecast): flops: 60 used of 105, next 5 steps forecast 50");
}

TEST(DecisionHorizon, TheFirstStepIsTheLargestRecentCostTheRestTheMean) {
  // Steps of 10, 20, 10, 20, ... FLOPs under 172, margin 0: after step 2 the largest is 20 and
  // the mean 15 (even steps) or (30m + 10) / (2m + 1) (odd steps 2m + 1).
  // n = 1: stop when used + 20 > 172: used 150 after step 10 fits, 160 after step 11 does not.
  // n = 5: step 6: 90 + 20 + 4 * 15 = 170 fits; step 7: 100 + 20 + 4 * 100/7 = 177.1 does not.
  // (5 x the largest would stop at 6: 90 + 100 > 172; 5 x the mean at 8: 100 + 71.4 fits.)
  const auto alternate = [](int i) -> std::uint64_t { return i % 2 == 1 ? 10 : 20; };
  const stopped_at one = run_flops(172, 1, alternate, frugal::controller_options{}.margin(0));
  EXPECT_EQ(one.step, 11);
  EXPECT_EQ(one.last.cause(), stop_reason::forecast);
  const stopped_at five = run_flops(172, 5, alternate, frugal::controller_options{}.margin(0));
  EXPECT_EQ(five.step, 7);
  EXPECT_EQ(five.last.cause(), stop_reason::forecast);
  EXPECT_EQ(five.last.reason(), "stop (forecast): flops: 100 used of 172, next 5 steps forecast 77.1");
}

TEST(DecisionHorizon, AnEpochEndKeepsRoomForTheHorizonAndTheNextEpochsEnd) {
  // 3 steps of 10 FLOPs and a 10-FLOP evaluation under 85: at the epoch's end 40 used. A new
  // epoch needs n steps and an epoch end: n = 1: 40 + 10 + 10 = 60 fits; n = 5: 40 + 50 + 10 =
  // 100 does not (and every step before fit: 30 + 50 = 80).
  for (const std::size_t horizon : {std::size_t{1}, std::size_t{5}}) {
    SCOPED_TRACE("horizon " + std::to_string(horizon));
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.flops(85)};
    frugal::controller ctl{run};
    ctl.set_decision_horizon(horizon);
    for (int i = 0; i < 3; ++i) {
      run_step(run, clock, 10ms, 10);
      EXPECT_TRUE(ctl.end_step().is_continue());
    }
    {
      frugal::scope s{run, "evaluation"};
      frugal::add_flops(10);
    }
    const frugal::decision d = ctl.end_epoch();
    if (horizon == 1) {
      EXPECT_TRUE(d.is_continue()) << d.reason();
    } else {
      EXPECT_TRUE(d.stops());
      EXPECT_EQ(d.cause(), stop_reason::forecast);
      EXPECT_NE(d.reason().find("flops: 40 used of 85"), std::string::npos) << d.reason();
      EXPECT_NE(d.reason().find("5 steps and an epoch end forecast 60"), std::string::npos) << d.reason();
    }
  }
}

TEST(DecisionHorizon, AnEpochEndsEarlyWhenTheHorizonAndItsEndWouldNotFit) {
  // Epochs of 4 steps of 10 FLOPs and a 10-FLOP evaluation, under 95. After epoch 0, 50 used;
  // epoch 1's first step: 60 used, 3 steps left. n = 3: the next decision is 3 steps away:
  // 60 + 30 + 10 = 100 > 95 (and the step itself fits: 60 + 30 = 90): end the epoch now.
  // n = 1: 60 + 10 + 10 = 80 fits.
  for (const std::size_t horizon : {std::size_t{1}, std::size_t{3}}) {
    SCOPED_TRACE("horizon " + std::to_string(horizon));
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.flops(95)};
    frugal::controller ctl{run};
    ctl.set_decision_horizon(horizon);
    for (int i = 0; i < 4; ++i) {
      run_step(run, clock, 10ms, 10);
      EXPECT_TRUE(ctl.end_step().is_continue());
    }
    {
      frugal::scope s{run, "evaluation"};
      frugal::add_flops(10);
    }
    EXPECT_TRUE(ctl.end_epoch().is_continue());
    run_step(run, clock, 10ms, 10);
    const frugal::decision d = ctl.end_step();
    if (horizon == 1) {
      EXPECT_TRUE(d.is_continue()) << d.reason();
    } else {
      EXPECT_FALSE(d.stops());
      EXPECT_TRUE(d.has(action::end_epoch));
      EXPECT_EQ(d.reason(),
                "end epoch: flops: 60 used of 95; the next 3 steps (30) and the epoch's end (10) would not fit, 3 "
                "steps of the epoch left");
    }
  }
}

// =============================================================================================
// request_stop(message, cause)

TEST(RequestStop, TheCauseAndWordsAreTheCallersAtOnceAndAtTheCheckpoint) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  int stop_events = 0;
  ctl.add_callback("stops", [&](const frugal::stop_event& e) {
    ++stop_events;
    EXPECT_EQ(e.reason, stop_reason::signal);
  });
  ctl.request_stop("rank 3 got SIGTERM", stop_reason::signal);
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), stop_reason::signal);
  EXPECT_EQ(ctl.stop_message(), "stop (signal): rank 3 got SIGTERM");
  // Repeated requests keep the first cause and words.
  ctl.request_stop("later", stop_reason::deadline);
  ctl.request_stop("later still");
  EXPECT_EQ(ctl.stop_reason(), stop_reason::signal);
  EXPECT_EQ(ctl.stop_message(), "stop (signal): rank 3 got SIGTERM");
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(d.cause(), stop_reason::signal);
  EXPECT_EQ(d.reason(), "stop (signal): rank 3 got SIGTERM");
  ASSERT_EQ(ctl.history().decisions.size(), 1u);
  EXPECT_EQ(ctl.history().decisions[0].cause, stop_reason::signal);
  EXPECT_EQ(stop_events, 1);
}

TEST(RequestStop, NoWordsAreStopRequestedAndEveryCauseButNoneIsTaken) {
  for (const stop_reason cause : {stop_reason::budget_exhausted, stop_reason::forecast, stop_reason::early_stopping,
                                  stop_reason::diverged, stop_reason::non_finite, stop_reason::deadline, stop_reason::user,
                                  stop_reason::signal}) {
    frugal::budget run{"train"};
    frugal::controller ctl{run};
    ctl.request_stop("", cause);
    EXPECT_EQ(ctl.stop_reason(), cause);
    EXPECT_EQ(ctl.stop_message(), "stop (" + std::string(frugal::to_string(cause)) + "): stop requested");
  }
}

TEST(RequestStop, TheOneArgumentFormIsAUserStop) {
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  ctl.request_stop("enough");
  EXPECT_EQ(ctl.stop_reason(), stop_reason::user);
  EXPECT_EQ(ctl.stop_message(), "stop (user): enough");
}

TEST(RequestStop, CauseNoneIsRefusedAndChangesNothing) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  EXPECT_EQ(error_of([&] { ctl.request_stop("x", stop_reason::none); }),
            "frugal::controller: request_stop cause must be a reason other than none, got none");
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), stop_reason::none);
  EXPECT_EQ(ctl.stop_message(), "");
  run_step(run, clock, 1s);
  EXPECT_TRUE(ctl.end_step().is_continue());
  // A later request is the first one.
  ctl.request_stop("now", stop_reason::deadline);
  EXPECT_EQ(ctl.stop_reason(), stop_reason::deadline);
  EXPECT_EQ(ctl.stop_message(), "stop (deadline): now");
}

}  // namespace
