// frugal::flops_of derives an Eigen expression's FLOPs from its type and sizes (checked against
// hand formulas), frugal::assign evaluates like Eigen and charges the right scope and stage,
// also from oneTBB workers, and unknown expression types are refused.
#include <gtest/gtest.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <Eigen/Core>
#include <Eigen/LU>
#include <Eigen/SparseCore>
#include <chrono>
#include <cstdint>
#include <frugal/eigen/flops.hpp>
#include <frugal/frugal.hpp>
#include <frugal/tbb.hpp>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

// A user functor with a declared cost: specialising frugal::op_cost is all flops_of needs.
struct affine_op {
  double operator()(double v) const { return 2 * v + 1; }
};
template <>
struct frugal::op_cost<affine_op> {
  static constexpr std::uint64_t value = 2;
};

namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using u64 = std::uint64_t;

constexpr u64 T = FRUGAL_TRANSCENDENTAL_FLOPS;

// Shapes: A is m x k, B is k x n, C is n x p; logits Z are c classes x b samples.
constexpr Eigen::Index m = 12, k = 9, n = 7, p = 5, c = 10, b = 6;

struct fixture {
  MatrixXd A = MatrixXd::Random(m, k);
  MatrixXd A2 = MatrixXd::Random(m, k);
  MatrixXd B = MatrixXd::Random(k, n);
  MatrixXd C = MatrixXd::Random(n, p);
  MatrixXd Z = MatrixXd::Random(c, b);
  VectorXd x = VectorXd::Random(k);
  VectorXd y = VectorXd::Random(k);
  VectorXd u = VectorXd::Random(m);
  VectorXd v = VectorXd::Random(n);
  VectorXd bias = VectorXd::Random(m);
  Eigen::RowVectorXd s = Eigen::RowVectorXd::Random(b);
};

struct flops_case {
  std::string name;
  std::string formula;
  std::function<u64(const fixture&)> counted;
  u64 expected;
};

std::vector<flops_case> table() {
  const auto M = static_cast<u64>(m), K = static_cast<u64>(k), N = static_cast<u64>(n), P = static_cast<u64>(p);
  const auto Cc = static_cast<u64>(c), Bb = static_cast<u64>(b);
  return {
      {"gemm", "2MNK", [](const fixture& f) { return frugal::flops_of(f.A * f.B); }, 2 * M * N * K},
      {"gemv", "2MK", [](const fixture& f) { return frugal::flops_of(f.A * f.x); }, 2 * M * K},
      {"outer product", "2MN (K = 1)", [](const fixture& f) { return frugal::flops_of(f.u * f.v.transpose()); },
       2 * M * N},
      {"inner product as a product", "2K", [](const fixture& f) { return frugal::flops_of(f.x.transpose() * f.y); },
       2 * K},
      {"transposed operand", "2KNM + 2MNK: A'(AB)",
       [](const fixture& f) { return frugal::flops_of(f.A.transpose() * (f.A * f.B)); }, 2 * K * N * M + 2 * M * N * K},
      {"dense layer: bias broadcast", "2MNK + MN",
       [](const fixture& f) { return frugal::flops_of((f.A * f.B).colwise() + f.bias); }, 2 * M * N * K + M * N},
      {"ReLU via cwiseMax", "MK", [](const fixture& f) { return frugal::flops_of(f.A.cwiseMax(0.0)); }, M * K},
      {"ReLU gradient via select", "MK (the comparison)",
       [](const fixture& f) { return frugal::flops_of((f.A.array() > 0).select(f.A2, 0.0)); }, M * K},
      {"softmax: column max", "(C-1)B", [](const fixture& f) { return frugal::flops_of(f.Z.colwise().maxCoeff()); },
       (Cc - 1) * Bb},
      {"softmax: subtract the max", "(C-1)B + CB",
       [](const fixture& f) { return frugal::flops_of(f.Z.rowwise() - f.Z.colwise().maxCoeff()); },
       (Cc - 1) * Bb + Cc * Bb},
      {"softmax: exp of the shifted logits", "(C-1)B + CB + CB*T",
       [](const fixture& f) {
         return frugal::flops_of((f.Z.array().rowwise() - f.Z.array().colwise().maxCoeff()).exp());
       },
       (Cc - 1) * Bb + Cc * Bb + Cc * Bb * T},
      {"softmax: column sums", "(C-1)B", [](const fixture& f) { return frugal::flops_of(f.Z.colwise().sum()); },
       (Cc - 1) * Bb},
      {"softmax: normalise", "CB",
       [](const fixture& f) { return frugal::flops_of(f.Z.array().rowwise() / f.s.array()); }, Cc * Bb},
      {"column squared norms", "B(C + C-1)",
       [](const fixture& f) { return frugal::flops_of(f.Z.colwise().squaredNorm()); }, Bb * (2 * Cc - 1)},
      {"row norms", "C(B + B-1 + 1)", [](const fixture& f) { return frugal::flops_of(f.Z.rowwise().norm()); },
       Cc * 2 * Bb},
      {"row means", "C(B-1) + C", [](const fixture& f) { return frugal::flops_of(f.Z.rowwise().mean()); },
       Cc * (Bb - 1) + Cc},
      {"sum, a scalar reduction", "MK-1",
       [](const fixture& f) { return frugal::flops_of(f.A, frugal::reduction::sum); }, M * K - 1},
      {"squaredNorm", "MK + MK-1",
       [](const fixture& f) { return frugal::flops_of(f.A, frugal::reduction::squared_norm); }, 2 * M * K - 1},
      {"maxCoeff of a difference", "MK + MK-1",
       [](const fixture& f) { return frugal::flops_of(f.A - f.A2, frugal::reduction::max_coeff); }, M * K + M * K - 1},
      {"chained products (AB)C", "2MNK + 2MPN", [](const fixture& f) { return frugal::flops_of(f.A * f.B * f.C); },
       2 * M * N * K + 2 * M * P * N},
      {"chained products A(BC)", "2KPN + 2MPK", [](const fixture& f) { return frugal::flops_of(f.A * (f.B * f.C)); },
       2 * K * P * N + 2 * M * P * K},
      {"product of sums", "MK + KN + 2MNK",
       [](const fixture& f) { return frugal::flops_of((f.A + f.A2) * (2.0 * f.B)); }, M * K + K * N + 2 * M * N * K},
      {"scalar times matrix", "MK", [](const fixture& f) { return frugal::flops_of(3.0 * f.A); }, M * K},
      {"block of a sum: only the block", "3*2",
       [](const fixture& f) { return frugal::flops_of((f.A + f.A2).block(1, 1, 3, 2)); }, 6},
      {"indexed view of a sum: only the indexed coefficients", "3*2",
       [](const fixture& f) { return frugal::flops_of((f.A + f.A2)(Eigen::seqN(0, 3), Eigen::seqN(1, 2, 3))); }, 6},
      {"reshaped sum", "MK", [](const fixture& f) { return frugal::flops_of((f.A + f.A2).reshaped(k, m)); }, M * K},
      {"column of a product: the whole product", "2MNK",
       [](const fixture& f) { return frugal::flops_of((f.A * f.B).col(0)); }, 2 * M * N * K},
      {"diagonal of a product: lazy", "2K per diagonal coefficient",
       [](const fixture& f) { return frugal::flops_of((f.A * f.A2.transpose()).diagonal()); }, 2 * K * M},
      {"replicated sum: computed once", "M",
       [](const fixture& f) { return frugal::flops_of((f.u + f.bias).replicate(1, 4)); }, M},
      {"diagonal scaling", "MK", [](const fixture& f) { return frugal::flops_of(f.A * f.x.asDiagonal()); }, M * K},
      {"lazyProduct", "2MNK", [](const fixture& f) { return frugal::flops_of(f.A.lazyProduct(f.B)); }, 2 * M * N * K},
      {"tanh", "MK*T", [](const fixture& f) { return frugal::flops_of(f.A.array().tanh()); }, M * K * T},
      {"cube", "2MK", [](const fixture& f) { return frugal::flops_of(f.A.array().cube()); }, 2 * M * K},
      {"cast, transpose, reverse, Map: free", "0",
       [](const fixture& f) {
         return frugal::flops_of(Eigen::Map<const MatrixXd>(f.A.data(), m, k).transpose().reverse().cast<float>());
       },
       0},
      {"Map operands", "MK",
       [](const fixture& f) {
         return frugal::flops_of(Eigen::Map<const MatrixXd>(f.A.data(), m, k) +
                                 Eigen::Map<const MatrixXd>(f.A2.data(), m, k));
       },
       M * K},
      {"constants are free, the add is not", "MK",
       [](const fixture& f) { return frugal::flops_of(f.A + MatrixXd::Constant(m, k, 1.0)); }, M * K},
      {"counting positives", "MK comparisons",
       [](const fixture& f) { return frugal::flops_of((f.A.array() > 0).colwise().count()); }, M * K},
      {"a lambda with a declared cost", "3MK",
       [](const fixture& f) {
         return frugal::flops_of(f.A.unaryExpr(frugal::with_flops<3>([](double e) { return e * e * e + 1; })));
       },
       3 * M * K},
      {"empty product", "0", [](const fixture&) { return frugal::flops_of(MatrixXd(0, 3) * MatrixXd(3, 4)); }, 0},
  };
}

TEST(FlopsOf, MatchesTheHandFormulaForEveryExpressionInTheTable) {
  const fixture f;
  const auto cases = table();
  ASSERT_GE(cases.size(), 15u);
  for (const flops_case& t : cases) EXPECT_EQ(t.counted(f), t.expected) << t.name << ": " << t.formula;
}

TEST(FlopsOf, UsesRuntimeSizes) {
  for (Eigen::Index size : {1, 2, 17, 64}) {
    const MatrixXd a = MatrixXd::Random(size, size + 1), bm = MatrixXd::Random(size + 1, 3);
    const auto s = static_cast<u64>(size);
    EXPECT_EQ(frugal::flops_of(a * bm), 2 * s * 3 * (s + 1)) << size;
    EXPECT_EQ(frugal::flops_of(a.array().exp()), s * (s + 1) * T) << size;
  }
}

TEST(FlopsOf, FixedSizeExpressionsCountLikeDynamicOnes) {
  const Eigen::Matrix4d a = Eigen::Matrix4d::Random();
  const Eigen::Vector4d x = Eigen::Vector4d::Random();
  EXPECT_EQ(frugal::flops_of(a * x), 2u * 4 * 4);
  EXPECT_EQ(frugal::flops_of(a * a + a), 2u * 4 * 4 * 4 + 16);
}

TEST(FlopsOf, EvaluatesNothing) {
  // Maps of no memory at all: evaluating the product would crash; counting needs only sizes.
  const Eigen::Map<const MatrixXd> big_a(nullptr, 2000, 3000), big_b(nullptr, 3000, 1000);
  EXPECT_EQ(frugal::flops_of(big_a * big_b), 2ull * 2000 * 1000 * 3000);
  EXPECT_EQ(frugal::flops_of((big_a * big_b).array().exp().colwise().sum()),
            2ull * 2000 * 1000 * 3000 + 2000ull * 1000 * T + 1999ull * 1000);
}

TEST(FlopsOf, ReductionFlopsOfNothingIsZero) {
  for (auto r : {frugal::reduction::sum, frugal::reduction::mean, frugal::reduction::prod, frugal::reduction::min_coeff,
                 frugal::reduction::max_coeff, frugal::reduction::squared_norm, frugal::reduction::norm})
    EXPECT_EQ(frugal::reduction_flops(r, 0), 0u);
  EXPECT_EQ(frugal::reduction_flops(frugal::reduction::mean, 10), 10u);
  EXPECT_EQ(frugal::reduction_flops(frugal::reduction::norm, 10), 20u);
}

TEST(FlopsOf, FunctorsWithADeclaredCostEvaluateAndCount) {
  const MatrixXd a = MatrixXd::Random(4, 3);
  EXPECT_EQ(frugal::flops_of(a.unaryExpr(affine_op{}) + a), 2u * 12 + 12);
  EXPECT_TRUE(frugal::is_counted_v<decltype(a.unaryExpr(affine_op{}))>);
  MatrixXd out;
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "custom"};
    frugal::assign(out, a.unaryExpr(frugal::with_flops<3>([](double e) { return e * e * e + 1; })));
  }
  EXPECT_TRUE(out.isApprox((a.array().cube() + 1).matrix()));
  EXPECT_EQ(run.stage("custom").flops, 3u * 12);
  double (*magnitude)(double) = [](double e) { return e < 0 ? -e : e; };
  const auto abs_expr = a.unaryExpr(frugal::with_flops<1>(magnitude));
  EXPECT_EQ(frugal::flops_of(abs_expr), 12u);
  EXPECT_TRUE(MatrixXd(abs_expr).isApprox(a.cwiseAbs()));
  const auto column_sums = a.colwise().redux(frugal::with_flops<1>([](double x, double y) { return x + y; }));
  EXPECT_EQ(frugal::flops_of(column_sums), 3u * (4 - 1));
  EXPECT_TRUE(Eigen::RowVectorXd(column_sums).isApprox(a.colwise().sum()));
}

// Unknown expression types are refused at compile time rather than counted as zero:
// flops_of(lu.solve(x)) does not compile. is_counted_v makes the rule visible to a test.
TEST(FlopsOf, UnknownExpressionTypesAreNotCounted) {
  const MatrixXd a = MatrixXd::Random(4, 4);
  const VectorXd x = VectorXd::Random(4);
  const Eigen::PartialPivLU<MatrixXd> lu(a);
  const Eigen::SparseMatrix<double> sparse(4, 4);
  EXPECT_FALSE(frugal::is_counted_v<decltype(lu.solve(x))>);
  EXPECT_FALSE(frugal::is_counted_v<decltype(a.inverse())>);
  EXPECT_FALSE(frugal::is_counted_v<decltype(a.triangularView<Eigen::Lower>() * x)>);
  EXPECT_FALSE(frugal::is_counted_v<decltype(sparse * x)>);
  const auto identity = [](double e) { return e; };
  EXPECT_FALSE(frugal::is_counted_v<decltype(a.unaryExpr(identity))>);
  // An unknown node anywhere inside makes the whole expression unknown.
  EXPECT_FALSE(frugal::is_counted_v<decltype(a * lu.solve(x) + x)>);
  EXPECT_TRUE(frugal::is_counted_v<decltype(a * x + x)>);
  EXPECT_TRUE(frugal::is_counted_v<decltype((a * a).colwise().sum())>);
}

// ---------------------------------------------------------------------------------------------
// Counted assignment.
// ---------------------------------------------------------------------------------------------

TEST(Assign, EvaluatesLikeEigenReturnsTheDestinationAndChargesTheScope) {
  const fixture f;
  frugal::budget run{"run"};
  MatrixXd H;
  {
    frugal::scope s{run, "forward"};
    MatrixXd& out = frugal::assign(H, (f.A * f.B).colwise() + f.bias);
    EXPECT_EQ(&out, &H);
  }
  const MatrixXd expected = (f.A * f.B).colwise() + f.bias;
  EXPECT_TRUE(H.isApprox(expected));
  const u64 flops = 2 * u64{m} * n * k + u64{m} * n;
  EXPECT_EQ(run.stage("forward").flops, flops);
  EXPECT_EQ(run.used(frugal::resource::flops), static_cast<double>(flops));
}

TEST(Assign, AliasingIsHandledAsByOperatorEquals) {
  MatrixXd a = MatrixXd::Random(6, 6);
  const MatrixXd expected = a * a;
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "square"};
    frugal::assign(a, a * a);  // Eigen evaluates a product into a temporary first
  }
  EXPECT_TRUE(a.isApprox(expected));
  EXPECT_EQ(run.stage("square").flops, 2u * 6 * 6 * 6);
}

TEST(Assign, NoaliasAndCompoundForms) {
  const fixture f;
  frugal::budget run{"run"};
  MatrixXd H = MatrixXd::Zero(m, n), expected = MatrixXd::Zero(m, n);
  const u64 mn = u64{m} * n, product = 2 * mn * k;
  {
    frugal::scope s{run, "noalias"};
    frugal::assign_noalias(H, f.A * f.B);
  }
  expected.noalias() = f.A * f.B;
  EXPECT_TRUE(H.isApprox(expected));
  EXPECT_EQ(run.stage("noalias").flops, product);
  {
    frugal::scope s{run, "accumulate"};
    frugal::add_assign_noalias(H, f.A * f.B);  // a product plus one add per coefficient
    frugal::add_assign(H, 2.0 * H);            // one multiply and one add per coefficient
  }
  expected.noalias() += f.A * f.B;
  expected += 2.0 * expected;
  EXPECT_TRUE(H.isApprox(expected));
  EXPECT_EQ(run.stage("accumulate").flops, product + mn + 2 * mn);
  {
    frugal::scope s{run, "subtract"};
    frugal::sub_assign(H, H.cwiseAbs());
    frugal::sub_assign_noalias(H, f.A * f.B);
  }
  expected -= expected.cwiseAbs();
  expected.noalias() -= f.A * f.B;
  EXPECT_TRUE(H.isApprox(expected));
  EXPECT_EQ(run.stage("subtract").flops, 2 * mn + product + mn);
}

TEST(Assign, IntoATemporaryViewWritesThroughAndReturnsTheView) {
  MatrixXd H = MatrixXd::Zero(4, 3);
  const VectorXd a = VectorXd::Random(4);
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "column"};
    auto col = frugal::assign(H.col(1), a + a);
    EXPECT_EQ(col.data(), H.col(1).data());
    frugal::add_assign(H.block(0, 0, 4, 1), a);
  }
  EXPECT_TRUE(H.col(1).isApprox(2 * a));
  EXPECT_TRUE(H.col(0).isApprox(a));
  EXPECT_EQ(H.col(2).squaredNorm(), 0.0);
  EXPECT_EQ(run.stage("column").flops, 4u + 4u);
}

TEST(Assign, CountedReductionsReturnEigensValue) {
  const fixture f;
  frugal::budget run{"run"};
  const u64 mk = u64{m} * k;
  {
    frugal::scope s{run, "reduce"};
    EXPECT_EQ(frugal::sum(f.A), f.A.sum());
    EXPECT_EQ(frugal::mean(f.A), f.A.mean());
    EXPECT_EQ(frugal::prod(f.A), f.A.prod());
    EXPECT_EQ(frugal::min_coeff(f.A), f.A.minCoeff());
    EXPECT_EQ(frugal::max_coeff(f.A - f.A2), (f.A - f.A2).maxCoeff());
    EXPECT_EQ(frugal::squared_norm(f.A), f.A.squaredNorm());
    EXPECT_EQ(frugal::norm(f.A), f.A.norm());
    EXPECT_EQ(frugal::dot(f.x, f.y), f.x.dot(f.y));
  }
  const u64 expected = (mk - 1) + mk + (mk - 1) + (mk - 1) + (mk + mk - 1) + (2 * mk - 1) + 2 * mk + 2 * u64{k};
  EXPECT_EQ(run.stage("reduce").flops, expected);
}

TEST(Assign, FlopsLandInTheInnermostScopesStageAndEveryAncestorBudget) {
  const fixture f;
  frugal::budget run{"run"};
  frugal::budget& train = run.child("train");
  frugal::budget& eval = run.child("eval");
  MatrixXd H, G;
  const u64 gemm = 2 * u64{m} * n * k;
  {
    frugal::scope step{train, "step"};
    {
      frugal::scope fwd{train, "forward"};
      frugal::assign(H, f.A * f.B);
    }
    {
      frugal::scope bwd{train, "backward"};
      frugal::assign(G, H.transpose() * f.A);  // (n x m)(m x k): 2nkm
      frugal::assign(G, f.B * G);              // (k x n)(n x k): 2kkn
    }
  }
  {
    frugal::scope s{eval, "evaluate"};
    frugal::assign(H, f.A * f.B);
  }
  const u64 backward = 2 * u64{n} * k * m + 2 * u64{k} * k * n;
  EXPECT_EQ(train.stage("forward").flops, gemm);
  EXPECT_EQ(train.stage("backward").flops, backward);
  EXPECT_EQ(train.stage("step").flops, gemm + backward);
  EXPECT_EQ(train.used(frugal::resource::flops), static_cast<double>(gemm + backward));
  EXPECT_EQ(eval.used(frugal::resource::flops), static_cast<double>(gemm));
  EXPECT_EQ(run.used(frugal::resource::flops), static_cast<double>(2 * gemm + backward));
}

class AssignFromWorkers : public ::testing::TestWithParam<int> {};

// Each oneTBB chunk computes a block of columns of Y = W X and charges it with frugal::assign;
// the chunks' charges add up to the whole product's, in the caller's stage.
TEST_P(AssignFromWorkers, ChunksChargeTheCallersStageExactly) {
  const int threads = GetParam();
  tbb::global_control allow(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
  tbb::task_arena arena(threads);
  const Eigen::Index rows = 16, inner = 24, cols = 256;
  const MatrixXd W = MatrixXd::Random(rows, inner), X = MatrixXd::Random(inner, cols);
  MatrixXd Y = MatrixXd::Zero(rows, cols);
  frugal::budget run{"run"};
  frugal::budget& train = run.child("train");
  std::mutex mu;
  std::set<std::thread::id> seen;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  arena.execute([&] {
    frugal::scope step{train, "step"};
    frugal::scope fwd{train, "forward"};
    frugal::parallel_for(tbb::blocked_range<Eigen::Index>(0, cols, 8), [&](const tbb::blocked_range<Eigen::Index>& r) {
      {
        std::lock_guard<std::mutex> lock(mu);
        seen.insert(std::this_thread::get_id());
      }
      // Hold the first chunks until a second thread joins, so the threaded cases really are.
      for (;;) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (threads == 1 || seen.size() >= 2) break;
        }
        if (std::chrono::steady_clock::now() > give_up) break;
        std::this_thread::yield();
      }
      const auto width = static_cast<Eigen::Index>(r.size());
      frugal::assign_noalias(Y.middleCols(r.begin(), width), W * X.middleCols(r.begin(), width));
    });
  });
  const MatrixXd expected = W * X;
  EXPECT_TRUE(Y.isApprox(expected));
  const u64 total = 2 * u64{rows} * cols * inner;
  EXPECT_EQ(train.stage("forward").flops, total);
  EXPECT_EQ(train.stage("step").flops, total);
  EXPECT_EQ(run.used(frugal::resource::flops), static_cast<double>(total));
  if (threads > 1) {
    EXPECT_GT(seen.size(), 1u) << "the loop never ran on a second thread";
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, AssignFromWorkers, ::testing::Values(1, 2, 4));

}  // namespace
