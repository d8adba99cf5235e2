// Verification mode: the same Eigen expressions run on frugal::counting_scalar, whose every
// scalar operation is tallied, and the exact tally is compared with frugal::flops_of.
//
// The convention difference, stated once: frugal counts a product as 2*M*N*K (PyTorch's
// FlopCounterMode convention, a MAC = 2 FLOPs), while a dot product of length K really takes
// K multiplies and K-1 adds, so the exact count of C = A*B is (2K-1)*M*N. What Eigen 3.4
// actually executes (measured below, for a scalar without SIMD) is slightly different again:
//   - small products (K + M + N < 20), coefficient-based: (2K-1)*M*N, plus 1 multiply that
//     combines the operands' scalar factors (1 * 1);
//   - larger products, GEMM kernel: each coefficient accumulates K multiply-adds starting from
//     zero (2K), then res += alpha * acc (2 more): 2(K+1)*M*N, plus 2 multiplies for alpha
//     (and 8 more when M is not a multiple of the kernel's 4-row register block);
//   - matrix * vector, GEMV kernel: the same shape of count, 2(K+1)*M + 2;
//   - lazy products (lazyProduct, the diagonal of a product): (2K-1) per coefficient.
// Everything that is not a product matches flops_of exactly, operation for operation, except
// the logistic function, which Eigen computes as 1 / (1 + exp(-x)): 4 operations where frugal
// charges one transcendental.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <array>
#include <cstdint>
#include <frugal/eigen/counting_scalar.hpp>
#include <frugal/eigen/flops.hpp>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using frugal::counting_scalar;
using cmatrix = Eigen::Matrix<counting_scalar, Eigen::Dynamic, Eigen::Dynamic>;
using cvector = Eigen::Matrix<counting_scalar, Eigen::Dynamic, 1>;
using crow = Eigen::Matrix<counting_scalar, 1, Eigen::Dynamic>;
using u64 = std::uint64_t;

constexpr u64 T = FRUGAL_TRANSCENDENTAL_FLOPS;

template <class F>
frugal::scalar_op_counts tally(F&& f) {
  const frugal::scalar_op_counts before = frugal::counted_scalar_ops();
  f();
  return frugal::counted_scalar_ops() - before;
}

TEST(CountingScalar, EachOperatorCountsItsKind) {
  const counting_scalar a(3.0), b(2.0);
  counting_scalar r;
  EXPECT_EQ(tally([&] { r = a + b; }).add, 1u);
  EXPECT_EQ(r.value(), 5.0);
  EXPECT_EQ(tally([&] { r = a - b; }).add, 1u);
  EXPECT_EQ(tally([&] { r = a * b; }).mul, 1u);
  EXPECT_EQ(r.value(), 6.0);
  EXPECT_EQ(tally([&] { r = a / b; }).div, 1u);
  EXPECT_EQ(tally([&] { r = -a; }).other, 1u);
  EXPECT_EQ(tally([&] { r += a; }).add, 1u);
  EXPECT_EQ(tally([&] { r = sqrt(a); }).other, 1u);
  EXPECT_EQ(tally([&] { r = exp(a); }).transcendental, 1u);
  EXPECT_EQ(tally([&] { r = tanh(a) + log(b); }).transcendental, 2u);
  EXPECT_EQ(tally([&] { EXPECT_TRUE(b < a); }).compare, 1u);
  EXPECT_EQ(tally([&] { EXPECT_TRUE(std::max(a, b) == a); }).compare, 2u);
  const auto nothing = tally([&] {
    counting_scalar copy = a;
    counting_scalar converted = 4.0;
    r = copy;
    EXPECT_EQ(static_cast<double>(converted), 4.0);
  });
  EXPECT_EQ(nothing.total(), 0u) << nothing;
}

TEST(CountingScalar, TalliesArePerThread) {
  const frugal::scalar_op_counts before = frugal::counted_scalar_ops();
  u64 other_thread = 0;
  std::thread t([&] {
    counting_scalar x(1.0);
    for (int i = 0; i < 100; ++i) x = x * counting_scalar(1.01);
    other_thread = frugal::counted_scalar_ops().mul;
  });
  t.join();
  EXPECT_EQ(other_thread, 100u);
  EXPECT_EQ((frugal::counted_scalar_ops() - before).total(), 0u);
}

TEST(CountingScalar, EigenComputesTheSameValuesAsWithDouble) {
  const Eigen::MatrixXd a = Eigen::MatrixXd::Random(13, 11), b = Eigen::MatrixXd::Random(11, 9);
  const cmatrix ca = a.cast<counting_scalar>(), cb = b.cast<counting_scalar>();
  const cmatrix cc = (ca * cb).array().tanh().matrix().colwise().normalized();
  const Eigen::MatrixXd expected = (a * b).array().tanh().matrix().colwise().normalized();
  const Eigen::MatrixXd got = cc.cast<double>();
  EXPECT_TRUE(got.isApprox(expected, 1e-12));
}

// ---------------------------------------------------------------------------------------------
// Everything but products: frugal's count is the exact count.
// ---------------------------------------------------------------------------------------------

constexpr Eigen::Index m = 9, k = 7, c = 6, b = 5;

struct fixture {
  cmatrix A = Eigen::MatrixXd::Random(m, k).cast<counting_scalar>();
  cmatrix A2 = Eigen::MatrixXd::Random(m, k).cast<counting_scalar>();
  cmatrix Z = Eigen::MatrixXd::Random(c, b).cast<counting_scalar>();
  cvector x = Eigen::VectorXd::Random(k).cast<counting_scalar>();
  cvector u = Eigen::VectorXd::Random(m).cast<counting_scalar>();
  crow s = Eigen::RowVectorXd::Random(b).cast<counting_scalar>();
};

// (frugal's count, the exact count) of evaluating an expression into a matrix.
template <class Expr>
std::pair<u64, u64> counts_of(const Expr& e) {
  const u64 counted = frugal::flops_of(e);
  cmatrix out;
  const u64 exact = tally([&] { out = e; }).total();
  return {counted, exact};
}
// ... and of a scalar reduction of it.
template <class Expr, class Reduce>
std::pair<u64, u64> counts_of(const Expr& e, frugal::reduction r, Reduce reduce) {
  const u64 counted = frugal::flops_of(e, r);
  counting_scalar out;
  const u64 exact = tally([&] { out = reduce(e); }).total();
  return {counted, exact};
}

struct exact_case {
  std::string name;
  std::function<std::pair<u64, u64>(const fixture&)> run;
};

std::vector<exact_case> exact_cases() {
  return {
      {"a + b", [](const fixture& f) { return counts_of(f.A + f.A2); }},
      {"s * a - b", [](const fixture& f) { return counts_of(counting_scalar(2.0) * f.A - f.A2); }},
      {"ReLU: cwiseMax(0)", [](const fixture& f) { return counts_of(f.A.cwiseMax(counting_scalar(0.0))); }},
      {"ReLU gradient: select",
       [](const fixture& f) {
         return counts_of((f.A.array() > counting_scalar(0.0)).select(f.A2, counting_scalar(0.0)));
       }},
      {"column max", [](const fixture& f) { return counts_of(f.Z.colwise().maxCoeff()); }},
      {"logits minus column max", [](const fixture& f) { return counts_of(f.Z.rowwise() - f.Z.colwise().maxCoeff()); }},
      {"exp of shifted logits",
       [](const fixture& f) {
         return counts_of((f.Z.array().rowwise() - f.Z.array().colwise().maxCoeff()).exp().matrix());
       }},
      {"column sums", [](const fixture& f) { return counts_of(f.Z.colwise().sum()); }},
      {"normalise by column",
       [](const fixture& f) { return counts_of((f.Z.array().rowwise() / f.s.array()).matrix()); }},
      {"column squared norms", [](const fixture& f) { return counts_of(f.Z.colwise().squaredNorm()); }},
      {"row norms", [](const fixture& f) { return counts_of(f.Z.rowwise().norm()); }},
      {"row means", [](const fixture& f) { return counts_of(f.Z.rowwise().mean()); }},
      {"block of a sum", [](const fixture& f) { return counts_of((f.A + f.A2).block(1, 2, 3, 4)); }},
      {"replicated sum", [](const fixture& f) { return counts_of((f.u + f.u).replicate(1, 6)); }},
      {"diagonal scaling", [](const fixture& f) { return counts_of(f.A * f.x.asDiagonal()); }},
      {"tanh", [](const fixture& f) { return counts_of(f.A.array().tanh().matrix()); }},
      {"cube", [](const fixture& f) { return counts_of(f.A.array().cube().matrix()); }},
      {"square root of |a|", [](const fixture& f) { return counts_of(f.A.cwiseAbs().cwiseSqrt()); }},
      {"quotient", [](const fixture& f) { return counts_of(f.A.cwiseQuotient(f.A2)); }},
      {"sum",
       [](const fixture& f) { return counts_of(f.A, frugal::reduction::sum, [](const auto& e) { return e.sum(); }); }},
      {"mean",
       [](const fixture& f) {
         return counts_of(f.A, frugal::reduction::mean, [](const auto& e) { return e.mean(); });
       }},
      {"squaredNorm",
       [](const fixture& f) {
         return counts_of(f.A, frugal::reduction::squared_norm, [](const auto& e) { return e.squaredNorm(); });
       }},
      {"norm",
       [](const fixture& f) {
         return counts_of(f.A, frugal::reduction::norm, [](const auto& e) { return e.norm(); });
       }},
      {"maxCoeff of a difference",
       [](const fixture& f) {
         return counts_of(f.A - f.A2, frugal::reduction::max_coeff, [](const auto& e) { return e.maxCoeff(); });
       }},
      {"minCoeff",
       [](const fixture& f) {
         return counts_of(f.A, frugal::reduction::min_coeff, [](const auto& e) { return e.minCoeff(); });
       }},
      {"prod",
       [](const fixture& f) {
         return counts_of(f.A, frugal::reduction::prod, [](const auto& e) { return e.prod(); });
       }},
  };
}

TEST(CountingScalar, NonProductExpressionsCountExactlyAsFlopsOfSays) {
  static_assert(T == 1, "the exact comparison assumes one operation per transcendental");
  const fixture f;
  for (const exact_case& t : exact_cases()) {
    const auto [counted, exact] = t.run(f);
    EXPECT_EQ(counted, exact) << t.name;
    EXPECT_GT(exact, 0u) << t.name;
  }
}

TEST(CountingScalar, LogisticIsFourOperationsInEigenAndOneTranscendentalInFrugal) {
  const fixture f;
  const auto [counted, exact] = counts_of(f.A.array().logistic().matrix());
  const u64 n = u64{m} * k;
  EXPECT_EQ(counted, n * T);
  EXPECT_EQ(exact, 4 * n);  // -x, exp, 1 + ., 1 / .
}

// ---------------------------------------------------------------------------------------------
// Products: the convention against what Eigen executes.
// ---------------------------------------------------------------------------------------------

struct shape {
  u64 m, k, n;
};

TEST(CountingScalar, SmallProductsAreCoefficientBased2KMinus1MN) {
  for (const shape s : {shape{5, 4, 3}, shape{2, 9, 3}, shape{6, 6, 6}, shape{3, 1, 4}}) {
    ASSERT_LT(s.k + s.m + s.n, 20u);
    const cmatrix A = Eigen::MatrixXd::Random(s.m, s.k).cast<counting_scalar>();
    const cmatrix B = Eigen::MatrixXd::Random(s.k, s.n).cast<counting_scalar>();
    const auto [counted, exact] = counts_of(A * B);
    EXPECT_EQ(counted, 2 * s.m * s.n * s.k) << s.m << "x" << s.k << "x" << s.n;
    EXPECT_EQ(exact, (2 * s.k - 1) * s.m * s.n + 1) << s.m << "x" << s.k << "x" << s.n;
    EXPECT_EQ(counted - exact, s.m * s.n - 1) << "the convention charges one more add per coefficient";
  }
}

TEST(CountingScalar, GemmKernelProductsAccumulateFromZeroAndScaleByAlpha) {
  for (const shape s : {shape{8, 8, 8}, shape{40, 30, 20}, shape{12, 50, 2}, shape{32, 17, 9}}) {
    ASSERT_GE(s.k + s.m + s.n, 20u);
    const cmatrix A = Eigen::MatrixXd::Random(s.m, s.k).cast<counting_scalar>();
    const cmatrix B = Eigen::MatrixXd::Random(s.k, s.n).cast<counting_scalar>();
    const auto [counted, exact] = counts_of(A * B);
    EXPECT_EQ(counted, 2 * s.m * s.n * s.k);
    EXPECT_EQ(exact, 2 * (s.k + 1) * s.m * s.n + 2) << s.m << "x" << s.k << "x" << s.n;
  }
  // Rows past the kernel's 4-row register blocks take a remainder path that spends 8 more
  // operations, whatever K and N (measured with Eigen 3.4.0).
  for (const shape s : {shape{9, 8, 8}, shape{17, 17, 9}, shape{33, 17, 9}}) {
    const cmatrix A = Eigen::MatrixXd::Random(s.m, s.k).cast<counting_scalar>();
    const cmatrix B = Eigen::MatrixXd::Random(s.k, s.n).cast<counting_scalar>();
    const auto [counted, exact] = counts_of(A * B);
    EXPECT_EQ(counted, 2 * s.m * s.n * s.k);
    EXPECT_EQ(exact, 2 * (s.k + 1) * s.m * s.n + 2 + 8) << s.m << "x" << s.k << "x" << s.n;
  }
}

TEST(CountingScalar, GemvKernel) {
  for (const shape s : {shape{5, 4, 1}, shape{40, 30, 1}, shape{7, 64, 1}}) {
    const cmatrix A = Eigen::MatrixXd::Random(s.m, s.k).cast<counting_scalar>();
    const cvector x = Eigen::VectorXd::Random(s.k).cast<counting_scalar>();
    const auto [counted, exact] = counts_of(A * x);
    EXPECT_EQ(counted, 2 * s.m * s.k);
    EXPECT_EQ(exact, 2 * (s.k + 1) * s.m + 2) << s.m << "x" << s.k;
  }
}

TEST(CountingScalar, LazyProductsComputeOnlyWhatIsRead) {
  const cmatrix A = Eigen::MatrixXd::Random(30, 20).cast<counting_scalar>();
  const cmatrix B = Eigen::MatrixXd::Random(20, 30).cast<counting_scalar>();
  const auto [counted_diag, exact_diag] = counts_of((A * B).diagonal());
  EXPECT_EQ(counted_diag, 2u * 20 * 30);
  EXPECT_EQ(exact_diag, (2u * 20 - 1) * 30);
  const auto [counted_lazy, exact_lazy] = counts_of(A.lazyProduct(B));
  EXPECT_EQ(counted_lazy, 2u * 20 * 30 * 30);
  EXPECT_EQ(exact_lazy, (2u * 20 - 1) * 30 * 30);
  // A column of a default product is not lazy: Eigen computes the whole product first.
  const auto [counted_col, exact_col] = counts_of((A * B).col(3));
  EXPECT_EQ(counted_col, 2u * 30 * 30 * 20);
  EXPECT_EQ(exact_col, 2u * (20 + 1) * 30 * 30 + 2);
}

TEST(CountingScalar, DotIs2NByConventionAnd2NMinus1Exactly) {
  const cvector x = Eigen::VectorXd::Random(17).cast<counting_scalar>();
  const cvector y = Eigen::VectorXd::Random(17).cast<counting_scalar>();
  u64 exact = 0;
  counting_scalar r;
  exact = tally([&] { r = x.dot(y); }).total();
  EXPECT_EQ(exact, 2u * 17 - 1);
  EXPECT_EQ(frugal::flops_of(x.transpose() * y), 2u * 17);
}

}  // namespace
