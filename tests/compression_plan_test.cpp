// Compression sized by the budget: mlp_shape's FLOPs are exactly what the ops charge, plans pick
// the widest layer that fits (FLOPs or bytes), say so in words, and a run pruned by its plan
// finishes inside its FLOP limit. Bad input gets clear errors.
#include <frugal/eigen/compression_plan.hpp>
#include <frugal/eigen/ops.hpp>
#include <frugal/eigen/quantize.hpp>
#include <frugal/eigen/structured_prune.hpp>
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/checks.hpp"

namespace {

using frugal_test::expect_invalid;

using Eigen::Index;
using Eigen::MatrixXf;
using Eigen::VectorXf;
using frugal::optimizer_kind;
using u64 = std::uint64_t;


// A ReLU MLP of any depth, trained through frugal's ops.
struct net {
  std::vector<MatrixXf> w, vw, mw;
  std::vector<VectorXf> b, vb, mb;
  std::int64_t steps = 0;

  explicit net(const std::vector<Index>& widths) {
    for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
      w.push_back(MatrixXf::Random(widths[l + 1], widths[l]) * 0.3f);
      b.push_back(VectorXf::Zero(widths[l + 1]));
      vw.push_back(MatrixXf::Zero(widths[l + 1], widths[l]));
      mw.push_back(MatrixXf::Zero(widths[l + 1], widths[l]));
      vb.push_back(VectorXf::Zero(widths[l + 1]));
      mb.push_back(VectorXf::Zero(widths[l + 1]));
    }
  }

  MatrixXf forward(const MatrixXf& x, std::vector<MatrixXf>* pre = nullptr, std::vector<MatrixXf>* act = nullptr) const {
    MatrixXf a = x;
    for (std::size_t l = 0; l < w.size(); ++l) {
      if (act) act->push_back(a);
      MatrixXf z;
      frugal::dense_forward(w[l], b[l], a, z);
      if (pre) pre->push_back(z);
      if (l + 1 < w.size())
        frugal::relu(z, a);
      else
        a = z;
    }
    return a;
  }

  void step(const MatrixXf& x, const std::vector<int>& labels, optimizer_kind o) {
    std::vector<MatrixXf> pre, act;
    const MatrixXf logits = forward(x, &pre, &act);
    MatrixXf d;
    (void)frugal::softmax_cross_entropy(logits, labels, d);
    ++steps;
    for (std::size_t l = w.size(); l-- > 0;) {
      MatrixXf dw(w[l].rows(), w[l].cols()), dx;
      VectorXf db(b[l].size());
      if (l > 0) {
        dx.resize(w[l].cols(), x.cols());
        frugal::dense_backward(w[l], act[l], d, dw, db, dx);
        MatrixXf dz(dx.rows(), dx.cols());
        frugal::relu_backward(pre[l - 1], dx, dz);
        d = dz;
      } else {
        frugal::dense_backward(w[l], act[l], d, dw, db);
      }
      update(w[l], dw, vw[l], mw[l], o);
      update(b[l], db, vb[l], mb[l], o);
    }
  }

  template <class P, class G, class S>
  void update(P& p, const G& g, S& v, S& m, optimizer_kind o) const {
    switch (o) {
      case optimizer_kind::none: break;
      case optimizer_kind::sgd: frugal::sgd_update(p, g, 0.05); break;
      case optimizer_kind::sgd_momentum: frugal::sgd_momentum_update(p, g, v, 0.05, 0.9); break;
      case optimizer_kind::adam: frugal::adam_update(p, g, m, v, steps); break;
    }
  }
};

std::vector<int> labels_for(Index batch, Index classes) {
  std::vector<int> labels;
  for (Index j = 0; j < batch; ++j) labels.push_back(static_cast<int>((j * 5 + 1) % classes));
  return labels;
}

TEST(MlpShape, FlopsAreExactlyWhatTheOpsCharge) {
  const std::vector<Index> widths{6, 5, 4, 3};
  const frugal::mlp_shape shape({6, 5, 4, 3});
  constexpr Index batch = 7;
  const MatrixXf x = MatrixXf::Random(6, batch);
  for (auto o : {optimizer_kind::none, optimizer_kind::sgd, optimizer_kind::sgd_momentum, optimizer_kind::adam}) {
    net n(widths);
    frugal::budget run{"run"};
    {
      frugal::scope s{run, "step"};
      n.step(x, labels_for(batch, 3), o);
    }
    {
      frugal::scope s{run, "forward"};
      (void)n.forward(x);
    }
    EXPECT_EQ(run.stage("step").flops, shape.training_step_flops(batch, o)) << static_cast<int>(o);
    EXPECT_EQ(run.stage("forward").flops, shape.forward_flops(batch));
  }
  EXPECT_EQ(shape.parameters(), u64{6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3});
  EXPECT_EQ(shape.training_step_flops(0, optimizer_kind::adam), 0u);
  EXPECT_EQ(frugal::optimizer_flops(optimizer_kind::adam, 10), 120u);
}

TEST(MlpShape, PlannedWorkIsStepByStepWithAShortLastStep) {
  const frugal::mlp_shape shape({8, 6, 2});
  frugal::training_work work{10, 4, optimizer_kind::sgd};
  EXPECT_EQ(frugal::planned_flops(shape, work),
            2 * shape.training_step_flops(4, optimizer_kind::sgd) + shape.training_step_flops(2, optimizer_kind::sgd));
  work.training = false;
  EXPECT_EQ(frugal::planned_flops(shape, work), 2 * shape.forward_flops(4) + shape.forward_flops(2));
  work.samples = 8;
  EXPECT_EQ(frugal::planned_flops(shape, work), 2 * shape.forward_flops(4));
}

TEST(MlpShape, BytesAgreeWithQuantizedMatrices) {
  const frugal::mlp_shape shape({30, 20, 7});
  EXPECT_EQ(shape.float_bytes(), 4 * shape.parameters());
  u64 int8 = 0;
  for (std::size_t l = 0; l < shape.layers(); ++l) {
    const auto d = shape.layer(l);
    const MatrixXf w = MatrixXf::Random(static_cast<Index>(d.out), static_cast<Index>(d.in));
    int8 += frugal::quantize(w, frugal::quant_granularity::per_channel).bytes() + 4 * d.out;  // + float biases
  }
  EXPECT_EQ(shape.int8_bytes(frugal::quant_granularity::per_channel), int8);
  EXPECT_EQ(shape.int8_bytes(frugal::quant_granularity::per_tensor), u64{30 * 20 + 20 * 7 + 2 * 4 + 4 * 27});
  EXPECT_EQ(shape.activation_bytes(10), u64{4 * 10 * (30 + 20 + 7)});
  EXPECT_EQ(shape.with_width(1, 5).widths(), (std::vector<u64>{30, 5, 7}));
}

// The issue's example: the plan reads "prune 37 % of hidden units (256 → 161) to fit the
// remaining 2.1e11 FLOPs".
TEST(PlanPrune, TheWidestLayerThatFitsTheFlopsLeft) {
  const frugal::mlp_shape shape({784, 256, 10});
  const frugal::training_work work{403'456, 64, optimizer_kind::sgd};
  const auto cost = [&](u64 h) { return static_cast<double>(frugal::planned_flops(shape.with_width(1, h), work)); };
  const double remaining = (cost(161) + cost(162)) / 2;
  const frugal::prune_plan p = frugal::plan_prune_for_flops(shape, 1, remaining, work);
  EXPECT_TRUE(p.needed);
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.units_before, 256u);
  EXPECT_EQ(p.units_after, 161u);
  EXPECT_EQ(p.units_to_remove, 95u);
  EXPECT_DOUBLE_EQ(p.fraction, 95.0 / 256.0);
  EXPECT_EQ(p.planned_flops_before, cost(256));
  EXPECT_EQ(p.planned_flops_after, cost(161));
  EXPECT_LE(p.planned_flops_after, remaining);
  EXPECT_GT(cost(162), remaining);
  EXPECT_DOUBLE_EQ(p.flops_per_sample_after, cost(161) / 403'456);
  EXPECT_EQ(p.message, "prune 37 % of hidden units (256 → 161) to fit the remaining " + frugal::format_count(remaining) + " FLOPs");
  EXPECT_EQ(frugal::format_count(remaining).substr(0, 4), "2.10");  // 2.10e11: the numbers

  // Exactly on the boundary still fits.
  EXPECT_EQ(frugal::plan_prune_for_flops(shape, 1, cost(161), work).units_after, 161u);
}

TEST(PlanPrune, NotNeededCannotFitAndMinimumWidth) {
  const frugal::mlp_shape shape({20, 16, 4});
  const frugal::training_work work{1000, 10, optimizer_kind::adam};
  const double all = static_cast<double>(frugal::planned_flops(shape, work));
  const auto easy = frugal::plan_prune_for_flops(shape, 1, all, work);
  EXPECT_FALSE(easy.needed);
  EXPECT_TRUE(easy.fits);
  EXPECT_EQ(easy.units_to_remove, 0u);
  EXPECT_EQ(easy.message, "no pruning needed: the planned " + frugal::format_count(all) + " FLOPs fit the remaining " +
                              frugal::format_count(all) + " FLOPs");
  const auto hopeless = frugal::plan_prune_for_flops(shape, 1, 1000, work);
  EXPECT_TRUE(hopeless.needed);
  EXPECT_FALSE(hopeless.fits);
  EXPECT_EQ(hopeless.units_after, 1u);
  EXPECT_NE(hopeless.message.find("pruning cannot fit the remaining 1.00k FLOPs: even 1 hidden unit needs "), std::string::npos)
      << hopeless.message;
  const auto floor4 = frugal::plan_prune_for_flops(shape, 1, 0.5 * all, work, 12);
  EXPECT_FALSE(floor4.fits);
  EXPECT_EQ(floor4.units_after, 12u);
  EXPECT_NE(floor4.message.find("even 12 hidden units need"), std::string::npos) << floor4.message;
  // A deeper network: any hidden layer can be the one pruned.
  const frugal::mlp_shape deep({10, 30, 20, 5});
  const frugal::training_work w{100, 10};
  const auto p = frugal::plan_prune_for_flops(deep, 2, 0.8 * static_cast<double>(frugal::planned_flops(deep, w)), w);
  EXPECT_TRUE(p.fits);
  EXPECT_EQ(p.hidden, 2u);
  EXPECT_LT(p.units_after, 20u);
}

TEST(PlanPrune, FromTheControllersCostFraction) {
  const frugal::mlp_shape shape({100, 64, 10});
  const frugal::training_work work{5000, 50};
  const double before = static_cast<double>(frugal::planned_flops(shape, work));
  const auto p = frugal::plan_prune_for_cost_fraction(shape, 1, 0.3, work);
  EXPECT_LE(p.planned_flops_after, 0.7 * before);
  EXPECT_GT(static_cast<double>(frugal::planned_flops(shape.with_width(1, p.units_after + 1), work)), 0.7 * before);
  EXPECT_EQ(frugal::plan_prune_for_cost_fraction(shape, 1, 0.0, work).units_to_remove, 0u);
}

TEST(PlanBytes, QuantizeFirstThenPrune) {
  const frugal::mlp_shape shape({784, 256, 10});
  const double float_bytes = static_cast<double>(shape.float_bytes());
  const double int8_bytes = static_cast<double>(shape.int8_bytes(frugal::quant_granularity::per_channel));
  EXPECT_GT(float_bytes / int8_bytes, 3.9);

  const auto none = frugal::plan_for_bytes(shape, 1, float_bytes);
  EXPECT_FALSE(none.needed);
  EXPECT_FALSE(none.quantize);
  EXPECT_EQ(none.message, "no compression needed: " + frugal::format_bytes(float_bytes) + " fit " + frugal::format_bytes(float_bytes));

  const auto quantize_only = frugal::plan_for_bytes(shape, 1, 0.5 * float_bytes);
  EXPECT_TRUE(quantize_only.quantize);
  EXPECT_EQ(quantize_only.units_to_remove, 0u);
  EXPECT_EQ(quantize_only.bytes_after, int8_bytes);
  EXPECT_TRUE(quantize_only.fits);
  EXPECT_EQ(quantize_only.message, "quantize weights to int8 (" + frugal::format_bytes(float_bytes) + " → " +
                                       frugal::format_bytes(int8_bytes) + ") to fit " + frugal::format_bytes(0.5 * float_bytes));

  const double tight = 0.5 * int8_bytes;
  const auto both = frugal::plan_for_bytes(shape, 1, tight);
  EXPECT_TRUE(both.quantize);
  EXPECT_TRUE(both.fits);
  EXPECT_LE(both.bytes_after, tight);
  EXPECT_GT(static_cast<double>(shape.with_width(1, both.units_after + 1).int8_bytes(frugal::quant_granularity::per_channel)), tight);
  EXPECT_NE(both.message.find("quantize weights to int8 and prune 5"), std::string::npos) << both.message;

  frugal::bytes_options no_int8;
  no_int8.allow_quantize = false;
  const auto prune_only = frugal::plan_for_bytes(shape, 1, 0.5 * float_bytes, no_int8);
  EXPECT_FALSE(prune_only.quantize);
  EXPECT_EQ(prune_only.units_after, 127u);  // half the float model: (784 + 1 + 10) * h + 10 <= half
  EXPECT_EQ(prune_only.message.rfind("prune 50 % of hidden units (256 → 127)", 0), 0u) << prune_only.message;

  frugal::bytes_options with_batch;
  with_batch.batch = 64;
  const auto activations = frugal::plan_for_bytes(shape, 1, int8_bytes, with_batch);
  EXPECT_EQ(activations.bytes_before, float_bytes + static_cast<double>(shape.activation_bytes(64)));
  EXPECT_LT(activations.units_after, 256u);  // the activations do not shrink with int8: units must go

  const auto impossible = frugal::plan_for_bytes(shape, 1, 500);
  EXPECT_FALSE(impossible.fits);
  EXPECT_EQ(impossible.message.rfind("compression cannot fit 500 B: quantize weights to int8 and prune", 0), 0u)
      << impossible.message;
}

TEST(PlanCompression, FlopsFirstThenBytes) {
  const frugal::mlp_shape shape({784, 256, 10});
  const frugal::training_work work{100'000, 64};
  const double all = static_cast<double>(frugal::planned_flops(shape, work));
  const auto c = frugal::plan_compression(shape, 1, 0.6 * all, work, 0.2 * static_cast<double>(shape.float_bytes()));
  EXPECT_TRUE(c.fits);
  EXPECT_TRUE(c.flops.needed);
  EXPECT_TRUE(c.quantize);
  EXPECT_EQ(c.units_after, c.bytes.units_after);
  EXPECT_LE(c.units_after, c.flops.units_after);
  EXPECT_EQ(c.message.find(c.flops.message), 0u);
  EXPECT_NE(c.message.find("; then "), std::string::npos);
  const auto relaxed = frugal::plan_compression(shape, 1, all, work, static_cast<double>(shape.float_bytes()));
  EXPECT_EQ(relaxed.units_to_remove, 0u);
  EXPECT_FALSE(relaxed.quantize);
  EXPECT_EQ(relaxed.message.rfind("no compression needed: the planned", 0), 0u) << relaxed.message;
}

// The whole loop: a budget with a FLOP limit, a few steps, a plan from what is left, the pruning,
// and the rest of the run. Unpruned the rest would overrun; pruned it finishes inside the limit,
// and the FLOPs it used are the plan's prediction to the unit.
TEST(PlanPrune, APrunedRunFinishesInsideItsFlopLimit) {
  std::srand(8);
  const std::vector<Index> widths{20, 32, 5};
  const frugal::mlp_shape shape({20, 32, 5});
  constexpr Index batch = 8;
  constexpr u64 total_samples = 400, first_samples = 80;
  const frugal::training_work whole{total_samples, batch};
  const double limit = 0.7 * static_cast<double>(frugal::planned_flops(shape, whole));
  frugal::budget run{"train", frugal::limits{}.flops(limit)};
  net n(widths);
  const MatrixXf x = MatrixXf::Random(20, batch);
  const auto labels = labels_for(batch, 5);
  for (u64 s = 0; s < first_samples; s += batch) {
    frugal::scope step{run, "step"};
    n.step(x, labels, optimizer_kind::sgd);
  }
  const frugal::training_work rest{total_samples - first_samples, batch};
  const double left = run.remaining(frugal::resource::flops);
  const frugal::prune_plan plan = frugal::plan_prune_for_flops(shape, 1, left, rest);
  ASSERT_TRUE(plan.needed);
  ASSERT_TRUE(plan.fits);
  const auto p = frugal::prune_hidden_units(n.w[0], n.b[0], n.w[1], static_cast<Index>(plan.units_to_remove));
  n.w[0] = p.w1;
  n.b[0] = p.b1;
  n.w[1] = p.w2;
  n.vw[0] = p.selection.incoming(n.vw[0]);
  n.vb[0] = p.selection.bias(n.vb[0]);
  n.vw[1] = p.selection.outgoing(n.vw[1]);
  const double used_before = run.used(frugal::resource::flops);
  for (u64 s = first_samples; s < total_samples; s += batch) {
    frugal::scope step{run, "step"};
    n.step(x, labels, optimizer_kind::sgd);
  }
  EXPECT_EQ(run.used(frugal::resource::flops) - used_before, plan.planned_flops_after);
  EXPECT_LE(run.used(frugal::resource::flops), limit);
  EXPECT_FALSE(run.exhausted());
}

TEST(PlanBadInput, ClearErrors) {
  expect_invalid([] { frugal::mlp_shape s({784}); }, {"frugal::mlp_shape", "widths must hold at least {in, out}, got 1"});
  expect_invalid([] { frugal::mlp_shape s({784, 0, 10}); }, {"widths[1] must be > 0, got 0"});
  const frugal::mlp_shape shape({10, 8, 3});
  const frugal::training_work work{100, 10};
  expect_invalid([&] { (void)frugal::plan_prune_for_flops(shape, 0, 1e9, work); },
                 {"frugal::plan_prune_for_flops", "hidden must name a hidden layer, in [1, 2) for 3 widths, got 0"});
  expect_invalid([&] { (void)frugal::plan_prune_for_flops(shape, 2, 1e9, work); }, {"got 2"});
  expect_invalid([&] { (void)frugal::plan_prune_for_flops(shape, 1, -1, work); }, {"remaining_flops must be >= 0, got -1"});
  expect_invalid([&] { (void)frugal::plan_prune_for_flops(shape, 1, std::nan(""), work); }, {"remaining_flops", "got nan"});
  expect_invalid([&] { (void)frugal::plan_prune_for_flops(shape, 1, 1e9, {100, 0}); }, {"work.batch must be > 0, got 0"});
  expect_invalid([&] { (void)frugal::plan_prune_for_flops(shape, 1, 1e9, {0, 10}); }, {"work.samples must be > 0, got 0"});
  expect_invalid([&] { (void)frugal::plan_prune_for_flops(shape, 1, 1e9, work, 0); }, {"min_units must be in [1, 8]", "got 0"});
  expect_invalid([&] { (void)frugal::plan_prune_for_flops(shape, 1, 1e9, work, 9); }, {"got 9"});
  expect_invalid([&] { (void)frugal::plan_prune_for_cost_fraction(shape, 1, 1.0, work); },
                 {"frugal::plan_prune_for_cost_fraction", "cost_fraction must be in [0, 1), got 1"});
  expect_invalid([&] { (void)frugal::plan_for_bytes(shape, 1, -5); }, {"frugal::plan_for_bytes", "target_bytes must be >= 0, got -5"});
  expect_invalid([&] { (void)frugal::planned_flops(shape, {10, 0}); }, {"frugal::planned_flops", "work.batch must be > 0"});
  expect_invalid([&] { (void)shape.with_width(2, 4); }, {"frugal::mlp_shape::with_width", "got 2"});
}

}  // namespace
