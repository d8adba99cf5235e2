/// @file
/// A verification scalar: a double whose arithmetic counts every scalar operation it performs
/// (per thread, per kind), with the Eigen NumTraits that let Eigen matrices hold it.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>

namespace frugal {

/// Scalar operations done by counting_scalar, by kind. Subtraction counts as an add; unary
/// minus, abs, sqrt and rounding count as other; exp, log, tanh, pow and the trigonometric
/// functions as transcendental; <, >, ==, ... (and so std::max, cwiseMax) as compare.
struct scalar_op_counts {
  /// Additions and subtractions.
  std::uint64_t add = 0;
  /// Multiplications.
  std::uint64_t mul = 0;
  /// Divisions.
  std::uint64_t div = 0;
  /// Comparisons (<, >, <=, >=, ==, !=).
  std::uint64_t compare = 0;
  /// exp, expm1, log, log1p, log10, log2, tanh, sin, cos, tan and pow.
  std::uint64_t transcendental = 0;
  /// Unary minus, sqrt, abs, floor, ceil and round.
  std::uint64_t other = 0;

  /// The sum of all six kinds.
  [[nodiscard]] constexpr std::uint64_t total() const noexcept {
    return add + mul + div + compare + transcendental + other;
  }
  /// Kind by kind difference (a later reading minus an earlier one: the operations in between).
  [[nodiscard]] friend constexpr scalar_op_counts operator-(const scalar_op_counts& a,
                                                            const scalar_op_counts& b) noexcept {
    return {a.add - b.add,    a.mul - b.mul, a.div - b.div, a.compare - b.compare, a.transcendental - b.transcendental,
            a.other - b.other};
  }
  ///@{
  /// Equal when every kind is.
  friend constexpr bool operator==(const scalar_op_counts& a, const scalar_op_counts& b) noexcept {
    return a.add == b.add && a.mul == b.mul && a.div == b.div && a.compare == b.compare &&
           a.transcendental == b.transcendental && a.other == b.other;
  }
  friend constexpr bool operator!=(const scalar_op_counts& a, const scalar_op_counts& b) noexcept { return !(a == b); }
  ///@}
  /// Writes `{add A, mul M, div D, compare C, transcendental T, other O; total N}`.
  friend std::ostream& operator<<(std::ostream& os, const scalar_op_counts& c) {
    return os << "{add " << c.add << ", mul " << c.mul << ", div " << c.div << ", compare " << c.compare
              << ", transcendental " << c.transcendental << ", other " << c.other << "; total " << c.total() << "}";
  }
};

namespace detail {
// Thread-local, so tests on several threads never share (or race on) a tally.
inline thread_local scalar_op_counts scalar_ops{};
}  // namespace detail

/// The running totals of the calling thread. Measure a region as a difference:
///   const auto before = frugal::counted_scalar_ops();  C = A * B;  auto d = frugal::counted_scalar_ops() - before;
[[nodiscard]] inline scalar_op_counts counted_scalar_ops() noexcept { return detail::scalar_ops; }

/// Slow on purpose: every operation goes through a counter, and Eigen runs its scalar
/// (non-vectorised) kernels for it. Construction, copies and conversions count nothing.
class counting_scalar {
 public:
  constexpr counting_scalar() noexcept = default;
  /// Implicit, so literals mix with it the way they do with double (Scalar(0), 2 * x).
  constexpr counting_scalar(double v) noexcept : v_(v) {}  // NOLINT(google-explicit-constructor)
  /// The wrapped double (counts nothing).
  [[nodiscard]] constexpr double value() const noexcept { return v_; }
  /// Explicit: an implicit double would let arithmetic bypass the counters.
  constexpr explicit operator double() const noexcept { return v_; }

  ///@{
  /// Arithmetic on the wrapped doubles, each counted in the calling thread's scalar_op_counts:
  /// addition and subtraction as add, multiplication as mul, division as div, unary minus as
  /// other; unary plus counts nothing.
  friend counting_scalar operator+(counting_scalar a, counting_scalar b) noexcept {
    ++detail::scalar_ops.add;
    return counting_scalar(a.v_ + b.v_);
  }
  friend counting_scalar operator-(counting_scalar a, counting_scalar b) noexcept {
    ++detail::scalar_ops.add;
    return counting_scalar(a.v_ - b.v_);
  }
  friend counting_scalar operator*(counting_scalar a, counting_scalar b) noexcept {
    ++detail::scalar_ops.mul;
    return counting_scalar(a.v_ * b.v_);
  }
  friend counting_scalar operator/(counting_scalar a, counting_scalar b) noexcept {
    ++detail::scalar_ops.div;
    return counting_scalar(a.v_ / b.v_);
  }
  friend counting_scalar operator-(counting_scalar a) noexcept {
    ++detail::scalar_ops.other;
    return counting_scalar(-a.v_);
  }
  friend counting_scalar operator+(counting_scalar a) noexcept { return a; }
  ///@}

  ///@{
  /// Compound assignment: counted as the binary operator it applies.
  counting_scalar& operator+=(counting_scalar b) noexcept { return *this = *this + b; }
  counting_scalar& operator-=(counting_scalar b) noexcept { return *this = *this - b; }
  counting_scalar& operator*=(counting_scalar b) noexcept { return *this = *this * b; }
  counting_scalar& operator/=(counting_scalar b) noexcept { return *this = *this / b; }
  ///@}

  ///@{
  /// Comparison of the wrapped doubles, each counted as one compare.
  friend bool operator<(counting_scalar a, counting_scalar b) noexcept { return compared(a.v_ < b.v_); }
  friend bool operator>(counting_scalar a, counting_scalar b) noexcept { return compared(a.v_ > b.v_); }
  friend bool operator<=(counting_scalar a, counting_scalar b) noexcept { return compared(a.v_ <= b.v_); }
  friend bool operator>=(counting_scalar a, counting_scalar b) noexcept { return compared(a.v_ >= b.v_); }
  friend bool operator==(counting_scalar a, counting_scalar b) noexcept { return compared(a.v_ == b.v_); }
  friend bool operator!=(counting_scalar a, counting_scalar b) noexcept { return compared(a.v_ != b.v_); }
  ///@}

  /// Writes the wrapped double, as for a double (counts nothing).
  friend std::ostream& operator<<(std::ostream& os, counting_scalar a) { return os << a.v_; }

  ///@{
  /// The `<cmath>` function of that name on the wrapped double, found by argument-dependent
  /// lookup from Eigen's numext:: functions: sqrt, abs, floor, ceil and round count as other,
  /// the rest as transcendental.
  friend counting_scalar sqrt(counting_scalar a) noexcept { return other(std::sqrt(a.v_)); }
  friend counting_scalar abs(counting_scalar a) noexcept { return other(std::fabs(a.v_)); }
  friend counting_scalar floor(counting_scalar a) noexcept { return other(std::floor(a.v_)); }
  friend counting_scalar ceil(counting_scalar a) noexcept { return other(std::ceil(a.v_)); }
  friend counting_scalar round(counting_scalar a) noexcept { return other(std::round(a.v_)); }
  friend counting_scalar exp(counting_scalar a) noexcept { return transcendental(std::exp(a.v_)); }
  friend counting_scalar expm1(counting_scalar a) noexcept { return transcendental(std::expm1(a.v_)); }
  friend counting_scalar log(counting_scalar a) noexcept { return transcendental(std::log(a.v_)); }
  friend counting_scalar log1p(counting_scalar a) noexcept { return transcendental(std::log1p(a.v_)); }
  friend counting_scalar log10(counting_scalar a) noexcept { return transcendental(std::log10(a.v_)); }
  friend counting_scalar log2(counting_scalar a) noexcept { return transcendental(std::log2(a.v_)); }
  friend counting_scalar tanh(counting_scalar a) noexcept { return transcendental(std::tanh(a.v_)); }
  friend counting_scalar sin(counting_scalar a) noexcept { return transcendental(std::sin(a.v_)); }
  friend counting_scalar cos(counting_scalar a) noexcept { return transcendental(std::cos(a.v_)); }
  friend counting_scalar tan(counting_scalar a) noexcept { return transcendental(std::tan(a.v_)); }
  friend counting_scalar pow(counting_scalar a, counting_scalar b) noexcept {
    return transcendental(std::pow(a.v_, b.v_));
  }
  ///@}
  ///@{
  /// Classification is not arithmetic: Eigen's isfinite checks (e.g. in allFinite) count nothing.
  friend bool isfinite(counting_scalar a) noexcept { return std::isfinite(a.v_); }
  friend bool isnan(counting_scalar a) noexcept { return std::isnan(a.v_); }
  friend bool isinf(counting_scalar a) noexcept { return std::isinf(a.v_); }
  ///@}

 private:
  static bool compared(bool result) noexcept {
    ++detail::scalar_ops.compare;
    return result;
  }
  static counting_scalar other(double v) noexcept {
    ++detail::scalar_ops.other;
    return counting_scalar(v);
  }
  static counting_scalar transcendental(double v) noexcept {
    ++detail::scalar_ops.transcendental;
    return counting_scalar(v);
  }
  double v_ = 0.0;
};

}  // namespace frugal

namespace Eigen {
/// What Eigen needs to hold counting_scalar in a Matrix: a real, signed, non-integer type whose
/// operations cost one unit each (Eigen's cost model picks evaluation strategies with them).
template <>
struct NumTraits<frugal::counting_scalar> {
  ///@{
  /// Eigen's NumTraits contract: every associated type is counting_scalar itself.
  using Real = frugal::counting_scalar;
  using NonInteger = frugal::counting_scalar;
  using Nested = frugal::counting_scalar;
  using Literal = frugal::counting_scalar;
  ///@}
  enum {
    IsComplex = 0,
    IsInteger = 0,
    IsSigned = 1,
    RequireInitialization = 1,
    ReadCost = 1,
    AddCost = 1,
    MulCost = 1
  };
  ///@{
  /// Eigen's NumTraits contract: the value of std::numeric_limits<double> of that name
  /// (dummy_precision: 1e-12, as Eigen's for double).
  static Real epsilon() noexcept { return Real(std::numeric_limits<double>::epsilon()); }
  static Real dummy_precision() noexcept { return Real(1e-12); }
  static Real highest() noexcept { return Real(std::numeric_limits<double>::max()); }
  static Real lowest() noexcept { return Real(std::numeric_limits<double>::lowest()); }
  static Real infinity() noexcept { return Real(std::numeric_limits<double>::infinity()); }
  static Real quiet_NaN() noexcept { return Real(std::numeric_limits<double>::quiet_NaN()); }
  static int digits10() noexcept { return std::numeric_limits<double>::digits10; }
  static int digits() noexcept { return std::numeric_limits<double>::digits; }
  static int min_exponent() noexcept { return std::numeric_limits<double>::min_exponent; }
  static int max_exponent() noexcept { return std::numeric_limits<double>::max_exponent; }
  ///@}
};
}  // namespace Eigen
