/// @file
/// FLOP counts of Eigen expressions, derived from the expression's type and runtime sizes
/// (frugal::flops_of), and assignments that evaluate an expression and charge its count.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <frugal/meter.hpp>
#include <type_traits>
#include <utility>

/// FLOPs charged per coefficient for a transcendental function (exp, log, tanh, pow, sin,
/// logistic, ...). One, as PyTorch's FlopCounterMode and most papers count them; hardware
/// spends 10-40 instructions on each, so a budget dominated by them may set a larger weight.
#ifndef FRUGAL_TRANSCENDENTAL_FLOPS
#define FRUGAL_TRANSCENDENTAL_FLOPS 1
#endif

namespace frugal {

// The conventions, for real scalars (a complex operation also counts as one):
//
//   expression                                       FLOPs
//   A * B  (M x K times K x N, GEMM/GEMV/dot/outer)  2*M*N*K: PyTorch's convention, a MAC is 2
//                                                    FLOPs (the exact count is (2K-1)*M*N)
//   A.lazyProduct(B), (A * B).diagonal()             2*K per coefficient the consumer reads
//   A * d.asDiagonal(), d.asDiagonal() * A           1 per coefficient read
//   a + b, a - b, a * s, a / b, a.cwiseProduct(b),
//   cwiseMax/Min, comparisons, -a, abs, sqrt, square 1 per coefficient read (cube, |a-b|: 2)
//   exp, log, tanh, pow, logistic, sin, ...          FRUGAL_TRANSCENDENTAL_FLOPS (1) per coefficient
//   colwise()/rowwise() sum, prod, minCoeff, maxCoeff  n-1 per reduced vector of length n
//   colwise().squaredNorm() / .norm()                n squares + n-1 adds (+1 sqrt)
//   cast, real, imag, conj (real scalars), &&, ||, !,
//   transpose, block, row/col, head/tail, reverse, diagonal, replicate/broadcast, Map, Ref,
//   Matrix/Array leaves, Constant/Zero/Identity/Random, asDiagonal, select's choice   0
//
// Only what Eigen computes is counted: a coefficient-wise expression under a block is charged
// for the block's coefficients, a replicated expression once (Eigen evaluates it once), while
// a product is always charged in full (Eigen materialises it before any block of it is read).
// Scalar reductions (x.sum(), x.dot(y)) return a scalar, not an expression: count them with
// frugal::sum, frugal::dot, ... below, or flops_of(expr, reduction::sum). Likewise, whatever
// Eigen computes eagerly while the expression is built (x.normalized(), y.eval(), a scalar
// reduction used inside it, a Ref<const> bound to an expression) is already done and is not
// part of the expression: count it where it is computed.
//
// Unknown expression types do not count as zero: they stop the build. Solve, Inverse,
// decompositions, triangular/self-adjoint views and products, permutations, sparse matrices,
// CwiseTernaryOp and user functors (unaryExpr/binaryExpr) have no rule. To count one,
// specialise frugal::flop_counter (expression nodes) or frugal::op_cost (functors):
//
//   template <> struct frugal::flop_counter<MyExpr> {
//     static constexpr bool counted = true;
//     // demand: how many of the expression's coefficients its consumer reads (its size,
//     // unless the consumer is a block); per-coefficient work scales with it, work that
//     // materialises a whole result does not.
//     static std::uint64_t count(const MyExpr& e, std::uint64_t demand);
//   };
//   template <class S> struct frugal::op_cost<my_functor<S>> { static constexpr std::uint64_t value = 3; };
//
// or wrap a lambda: x.unaryExpr(frugal::with_flops<3>([](double v) { return v * v * v + 1; })).

/// Per-coefficient FLOPs of an Eigen functor, as a static constexpr std::uint64_t value.
/// Specialise it for your own functors; without a specialisation a functor has no cost.
template <class Functor, class Enable = void>
struct op_cost {};

/// FLOPs of an expression node, given how many of its coefficients are read. Specialise it
/// for expression types frugal does not know (see above).
template <class Expr, class Enable = void>
struct flop_counter {
  /// False: an expression type without a rule is not counted.
  static constexpr bool counted = false;
  /// Does not compile (a static_assert names the type): specialise flop_counter for it.
  static std::uint64_t count(const Expr&, std::uint64_t) {
    static_assert(sizeof(Expr) == 0,
                  "frugal::flop_counter: no FLOP rule for this Eigen expression type (named in the "
                  "'In instantiation of' line above). Solve, Inverse, decompositions, triangular and "
                  "self-adjoint views and products, permutations, sparse matrices and CwiseTernaryOp are "
                  "not counted. Specialise frugal::flop_counter<YourExpr> to count it (see "
                  "<frugal/eigen/flops.hpp>).");
    return 0;
  }
};

/// Whether flops_of accepts Expr: every node and functor in it has a rule.
template <class Expr>
inline constexpr bool is_counted_v = flop_counter<std::remove_cv_t<std::remove_reference_t<Expr>>>::counted;

/// A functor with a declared cost, for unaryExpr/binaryExpr/redux:
/// x.unaryExpr(frugal::with_flops<2>(f)). f may be a lambda, a function object or a function pointer.
template <class F, std::uint64_t Flops>
class flop_functor {
 public:
  /// Wraps `f`; every call is charged Flops per coefficient by flops_of (the call itself charges
  /// nothing).
  explicit flop_functor(F f) : f_(std::move(f)) {}
  /// Calls f with the arguments, as Eigen's functors are called.
  template <class... Args>
  auto operator()(Args&&... args) const -> decltype(std::declval<const F&>()(std::forward<Args>(args)...)) {
    return f_(std::forward<Args>(args)...);
  }

 private:
  F f_;
};
/// `f` declared to cost Flops FLOPs per call: x.unaryExpr(frugal::with_flops<2>(f)).
template <std::uint64_t Flops, class F>
[[nodiscard]] flop_functor<F, Flops> with_flops(F f) {
  return flop_functor<F, Flops>(std::move(f));
}

namespace detail {
template <class T>
using bare_t = std::remove_cv_t<std::remove_reference_t<T>>;

template <class Functor, class = void>
inline constexpr bool op_known_v = false;
template <class Functor>
inline constexpr bool op_known_v<Functor, std::void_t<decltype(op_cost<Functor>::value)>> = true;

template <class Functor>
[[nodiscard]] constexpr std::uint64_t op_flops() noexcept {
  static_assert(op_known_v<Functor>,
                "frugal::op_cost: no FLOP cost for this Eigen functor (named in the 'In instantiation "
                "of' line above). Specialise frugal::op_cost<Functor> with a static constexpr "
                "std::uint64_t value, or wrap a lambda in frugal::with_flops<N>(f).");
  if constexpr (op_known_v<Functor>)
    return op_cost<Functor>::value;
  else
    return 0;
}

[[nodiscard]] constexpr std::uint64_t size_of(Eigen::Index rows, Eigen::Index cols) noexcept {
  return static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(cols);
}

// A node never computes more of a nested expression than that expression has: this is also
// where a replicated expression stops being charged per copy.
template <class E>
[[nodiscard]] std::uint64_t count_node(const E& e, std::uint64_t demand) {
  return flop_counter<bare_t<E>>::count(e, std::min(demand, size_of(e.rows(), e.cols())));
}
template <class E>
[[nodiscard]] std::uint64_t count_full(const E& e) {
  return flop_counter<bare_t<E>>::count(e, size_of(e.rows(), e.cols()));
}

template <class E>
using nested_t = bare_t<decltype(std::declval<const E&>().nestedExpression())>;

struct costs {
  static constexpr std::uint64_t free = 0;
  static constexpr std::uint64_t one = 1;
  static constexpr std::uint64_t transcendental = FRUGAL_TRANSCENDENTAL_FLOPS;
};

template <std::uint64_t V>
struct fixed_cost {
  static constexpr std::uint64_t value = V;
};

// Nodes that move, select or reshape coefficients without arithmetic.
template <class Expr>
struct pass_through {
  static constexpr bool counted = is_counted_v<nested_t<Expr>>;
  static std::uint64_t count(const Expr& e, std::uint64_t demand) { return count_node(e.nestedExpression(), demand); }
};

struct leaf {
  static constexpr bool counted = true;
  template <class E>
  static std::uint64_t count(const E&, std::uint64_t) noexcept {
    return 0;
  }
};

template <class T, class Shape>
inline constexpr bool has_shape_v = std::is_same_v<typename Eigen::internal::evaluator_traits<T>::Shape, Shape>;

template <class L, class R>
inline constexpr bool dense_product_v = has_shape_v<L, Eigen::DenseShape>&& has_shape_v<R, Eigen::DenseShape>;
template <class L, class R>
inline constexpr bool diagonal_product_v = (has_shape_v<L, Eigen::DiagonalShape> &&
                                            has_shape_v<R, Eigen::DenseShape>) ||
                                           (has_shape_v<L, Eigen::DenseShape> && has_shape_v<R, Eigen::DiagonalShape>);

// Work of a dense product that materialises: 2*M*N*K, plus its operands, each evaluated once.
template <class P>
[[nodiscard]] std::uint64_t materialised_product(const P& p) {
  return 2 * size_of(p.lhs().rows(), p.rhs().cols()) * static_cast<std::uint64_t>(p.lhs().cols()) +
         count_full(p.lhs()) + count_full(p.rhs());
}
// A coefficient-based product computes only the coefficients read: 2*K each.
template <class P>
[[nodiscard]] std::uint64_t lazy_product(const P& p, std::uint64_t demand) {
  return 2 * static_cast<std::uint64_t>(p.lhs().cols()) * demand + count_full(p.lhs()) + count_full(p.rhs());
}

template <class Member>
struct member_cost {
  static constexpr bool known = false;
};
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Functor costs.
// ---------------------------------------------------------------------------------------------
#define FRUGAL_DETAIL_OP_COST(FUNCTOR, COST) \
  template <class... T>                      \
  struct op_cost<Eigen::internal::FUNCTOR<T...>> : detail::fixed_cost<detail::costs::COST> {}

FRUGAL_DETAIL_OP_COST(scalar_sum_op, one);
FRUGAL_DETAIL_OP_COST(scalar_difference_op, one);
FRUGAL_DETAIL_OP_COST(scalar_product_op, one);
FRUGAL_DETAIL_OP_COST(scalar_conj_product_op, one);
FRUGAL_DETAIL_OP_COST(scalar_quotient_op, one);
FRUGAL_DETAIL_OP_COST(scalar_opposite_op, one);
FRUGAL_DETAIL_OP_COST(scalar_abs_op, one);
FRUGAL_DETAIL_OP_COST(scalar_abs2_op, one);
FRUGAL_DETAIL_OP_COST(scalar_sqrt_op, one);
FRUGAL_DETAIL_OP_COST(scalar_rsqrt_op, one);
FRUGAL_DETAIL_OP_COST(scalar_inverse_op, one);
FRUGAL_DETAIL_OP_COST(scalar_square_op, one);
FRUGAL_DETAIL_OP_COST(scalar_floor_op, one);
FRUGAL_DETAIL_OP_COST(scalar_ceil_op, one);
FRUGAL_DETAIL_OP_COST(scalar_round_op, one);
FRUGAL_DETAIL_OP_COST(scalar_rint_op, one);
FRUGAL_DETAIL_OP_COST(scalar_cast_op, free);
FRUGAL_DETAIL_OP_COST(scalar_real_op, free);
FRUGAL_DETAIL_OP_COST(scalar_imag_op, free);
FRUGAL_DETAIL_OP_COST(scalar_real_ref_op, free);
FRUGAL_DETAIL_OP_COST(scalar_imag_ref_op, free);
FRUGAL_DETAIL_OP_COST(scalar_boolean_not_op, free);
FRUGAL_DETAIL_OP_COST(scalar_exp_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_expm1_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_log_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_log1p_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_log10_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_log2_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_sin_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_cos_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_tan_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_asin_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_acos_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_atan_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_sinh_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_cosh_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_tanh_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_asinh_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_acosh_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_atanh_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_logistic_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_arg_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_pow_op, transcendental);
FRUGAL_DETAIL_OP_COST(scalar_hypot_op, transcendental);
#undef FRUGAL_DETAIL_OP_COST

/// Functors with non-type template parameters, one by one.
template <class L, class R, int P>
struct op_cost<Eigen::internal::scalar_min_op<L, R, P>> : detail::fixed_cost<1> {};
template <class L, class R, int P>
struct op_cost<Eigen::internal::scalar_max_op<L, R, P>> : detail::fixed_cost<1> {};
template <class L, class R, Eigen::internal::ComparisonName C>
struct op_cost<Eigen::internal::scalar_cmp_op<L, R, C>> : detail::fixed_cost<1> {};
/// |a - b| is a subtraction and an absolute value.
template <class L, class R>
struct op_cost<Eigen::internal::scalar_absolute_difference_op<L, R>> : detail::fixed_cost<2> {};
template <class S>
struct op_cost<Eigen::internal::scalar_cube_op<S>> : detail::fixed_cost<2> {};
template <class S, bool C, bool I>
struct op_cost<Eigen::internal::scalar_sign_op<S, C, I>> : detail::fixed_cost<1> {};
/// Complex conjugation negates the imaginary part; for real scalars it is the identity.
template <class S>
struct op_cost<Eigen::internal::scalar_conjugate_op<S>> : detail::fixed_cost<(Eigen::NumTraits<S>::IsComplex ? 1 : 0)> {
};
/// Logic on booleans is not floating-point work (the comparisons that made them are counted).
template <>
struct op_cost<Eigen::internal::scalar_boolean_and_op> : detail::fixed_cost<0> {};
template <>
struct op_cost<Eigen::internal::scalar_boolean_or_op> : detail::fixed_cost<0> {};
template <>
struct op_cost<Eigen::internal::scalar_boolean_xor_op> : detail::fixed_cost<0> {};
template <class Op>
struct op_cost<Eigen::internal::bind1st_op<Op>> : op_cost<Op> {};
template <class Op>
struct op_cost<Eigen::internal::bind2nd_op<Op>> : op_cost<Op> {};
template <class F, std::uint64_t Flops>
struct op_cost<flop_functor<F, Flops>> : detail::fixed_cost<Flops> {};

// ---------------------------------------------------------------------------------------------
// Partial reductions: FLOPs to reduce one vector of length n.
// ---------------------------------------------------------------------------------------------
namespace detail {
[[nodiscard]] constexpr std::uint64_t fold(std::uint64_t n) noexcept { return n > 0 ? n - 1 : 0; }

struct fold_cost {
  static constexpr bool known = true;
  static constexpr bool ops_known = true;
  static constexpr std::uint64_t of(std::uint64_t n) noexcept { return fold(n); }
};
struct free_reduction {
  static constexpr bool known = true;
  static constexpr bool ops_known = true;
  static constexpr std::uint64_t of(std::uint64_t) noexcept { return 0; }
};
// n squares, n-1 adds, one square root: what norm() means, whatever scaling the
// algorithm (stableNorm, blueNorm) adds to stay in range.
struct norm_cost {
  static constexpr bool known = true;
  static constexpr bool ops_known = true;
  static constexpr std::uint64_t of(std::uint64_t n) noexcept { return n > 0 ? 2 * n : 0; }
};

template <class R, class S>
struct member_cost<Eigen::internal::member_sum<R, S>> : fold_cost {};
template <class R, class S>
struct member_cost<Eigen::internal::member_prod<R, S>> : fold_cost {};
template <class R, class S>
struct member_cost<Eigen::internal::member_minCoeff<R, S>> : fold_cost {};
template <class R, class S>
struct member_cost<Eigen::internal::member_maxCoeff<R, S>> : fold_cost {};
template <class R, class S>
struct member_cost<Eigen::internal::member_norm<R, S>> : norm_cost {};
template <class R, class S>
struct member_cost<Eigen::internal::member_stableNorm<R, S>> : norm_cost {};
template <class R, class S>
struct member_cost<Eigen::internal::member_blueNorm<R, S>> : norm_cost {};
template <class R, class S>
struct member_cost<Eigen::internal::member_all<R, S>> : free_reduction {};
template <class R, class S>
struct member_cost<Eigen::internal::member_any<R, S>> : free_reduction {};
template <class R, class S>
struct member_cost<Eigen::internal::member_count<R, S>> : free_reduction {};
// An unknown op reports itself through op_flops.
template <class Op, class S>
struct member_cost<Eigen::internal::member_redux<Op, S>> {
  static constexpr bool known = true;
  static constexpr bool ops_known = op_known_v<Op>;
  static constexpr std::uint64_t of(std::uint64_t n) noexcept { return fold(n) * op_flops<Op>(); }
};
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Expression nodes.
// ---------------------------------------------------------------------------------------------

/// Leaves: matrices, arrays (and classes derived from them), maps, refs, generated constants.
template <class E>
struct flop_counter<E, std::enable_if_t<std::is_base_of_v<Eigen::PlainObjectBase<E>, E>>> : detail::leaf {};
template <class P, int O, class S>
struct flop_counter<Eigen::Map<P, O, S>> : detail::leaf {};
template <class P, int O, class S>
struct flop_counter<Eigen::Ref<P, O, S>> : detail::leaf {};
template <class F, class P>
struct flop_counter<Eigen::CwiseNullaryOp<F, P>> : detail::leaf {};
template <class S, int N, int M>
struct flop_counter<Eigen::DiagonalMatrix<S, N, M>> : detail::leaf {};

/// Views that move coefficients: free, and they pass the demand through.
template <class X>
struct flop_counter<Eigen::Transpose<X>> : detail::pass_through<Eigen::Transpose<X>> {};
template <class X, int R, int C, bool P>
struct flop_counter<Eigen::Block<X, R, C, P>> : detail::pass_through<Eigen::Block<X, R, C, P>> {};
template <class X, int N>
struct flop_counter<Eigen::VectorBlock<X, N>> : detail::pass_through<Eigen::VectorBlock<X, N>> {};
template <class X, int D>
struct flop_counter<Eigen::Reverse<X, D>> : detail::pass_through<Eigen::Reverse<X, D>> {};
template <class X, int I>
struct flop_counter<Eigen::Diagonal<X, I>> : detail::pass_through<Eigen::Diagonal<X, I>> {};
template <class X>
struct flop_counter<Eigen::ArrayWrapper<X>> : detail::pass_through<Eigen::ArrayWrapper<X>> {};
template <class X>
struct flop_counter<Eigen::MatrixWrapper<X>> : detail::pass_through<Eigen::MatrixWrapper<X>> {};
template <class F, class X>
struct flop_counter<Eigen::CwiseUnaryView<F, X>> : detail::pass_through<Eigen::CwiseUnaryView<F, X>> {};
template <class X, class R, class C>
struct flop_counter<Eigen::IndexedView<X, R, C>> : detail::pass_through<Eigen::IndexedView<X, R, C>> {};
template <class X, int R, int C, int O>
struct flop_counter<Eigen::Reshaped<X, R, C, O>> : detail::pass_through<Eigen::Reshaped<X, R, C, O>> {};
/// Eigen evaluates a costly replicated expression once; count_node caps the demand at its size.
template <class X, int R, int C>
struct flop_counter<Eigen::Replicate<X, R, C>> : detail::pass_through<Eigen::Replicate<X, R, C>> {};

/// d.asDiagonal(): the vector's coefficients, each read once.
template <class V>
struct flop_counter<Eigen::DiagonalWrapper<V>> {
  /// Whether flops_of accepts the node: every node and functor below it has a rule.
  static constexpr bool counted =
      is_counted_v<detail::bare_t<decltype(std::declval<const Eigen::DiagonalWrapper<V>&>().diagonal())>>;
  /// FLOPs of reading `demand` of the node's coefficients, its operands' included. A read of the
  /// diagonal matrix reads one vector coefficient.
  static std::uint64_t count(const Eigen::DiagonalWrapper<V>& e, std::uint64_t demand) {
    return detail::count_node(e.diagonal(), demand);
  }
};

/// x.unaryExpr(f), -x, x.abs(), x.exp(), ...: the functor's cost (op_cost) per coefficient read,
/// plus the operand's.
template <class F, class X>
struct flop_counter<Eigen::CwiseUnaryOp<F, X>> {
  /// The node type.
  using expr = Eigen::CwiseUnaryOp<F, X>;
  /// Whether flops_of accepts the node: every node and functor below it has a rule.
  static constexpr bool counted = detail::op_known_v<F> && is_counted_v<detail::nested_t<expr>>;
  /// op_cost<F> * demand, plus the operand's FLOPs for the same demand.
  static std::uint64_t count(const expr& e, std::uint64_t demand) {
    return detail::op_flops<F>() * demand + detail::count_node(e.nestedExpression(), demand);
  }
};

/// a + b, a.cwiseProduct(b), a.binaryExpr(b, f), ...: the functor's cost per coefficient read, plus
/// both operands'.
template <class F, class L, class R>
struct flop_counter<Eigen::CwiseBinaryOp<F, L, R>> {
  /// The node type.
  using expr = Eigen::CwiseBinaryOp<F, L, R>;
  /// Whether flops_of accepts the node: every node and functor below it has a rule.
  static constexpr bool counted = detail::op_known_v<F> && is_counted_v<decltype(std::declval<const expr&>().lhs())> &&
                                  is_counted_v<decltype(std::declval<const expr&>().rhs())>;
  /// op_cost<F> * demand, plus both operands' FLOPs for the same demand.
  static std::uint64_t count(const expr& e, std::uint64_t demand) {
    return detail::op_flops<F>() * demand + detail::count_node(e.lhs(), demand) + detail::count_node(e.rhs(), demand);
  }
};

/// cond.select(a, b): the condition's work, and both branches' (an upper bound when both branches
/// compute: Eigen reads one of them per coefficient; in the usual case they are plain or constant).
template <class C, class T, class E>
struct flop_counter<Eigen::Select<C, T, E>> {
  /// Whether flops_of accepts the node: every node and functor below it has a rule.
  static constexpr bool counted = is_counted_v<C> && is_counted_v<T> && is_counted_v<E>;
  /// FLOPs of reading `demand` of the node's coefficients, its operands' included.
  static std::uint64_t count(const Eigen::Select<C, T, E>& e, std::uint64_t demand) {
    return detail::count_node(e.conditionMatrix(), demand) + detail::count_node(e.thenMatrix(), demand) +
           detail::count_node(e.elseMatrix(), demand);
  }
};

/// x.colwise().sum() and friends: each output coefficient reduces one column (row) of x.
template <class X, class Member, int Direction>
struct flop_counter<Eigen::PartialReduxExpr<X, Member, Direction>> {
  /// The node type.
  using expr = Eigen::PartialReduxExpr<X, Member, Direction>;
  /// Whether flops_of accepts the node: every node and functor below it has a rule.
  static constexpr bool counted = detail::member_cost<Member>::known && detail::member_cost<Member>::ops_known &&
                                  is_counted_v<detail::nested_t<expr>>;
  /// Per output coefficient read, the reduction of n = rows (colwise) or cols (rowwise) of x, plus
  /// x's FLOPs for demand * n coefficients.
  static std::uint64_t count(const expr& e, std::uint64_t demand) {
    static_assert(detail::member_cost<Member>::known,
                  "frugal::flop_counter: this colwise()/rowwise() reduction (named in the 'In "
                  "instantiation of' line above) has no FLOP rule; sum, prod, minCoeff, maxCoeff, "
                  "squaredNorm, norm, all, any, count and redux(op) do.");
    const auto& x = e.nestedExpression();
    const auto n = static_cast<std::uint64_t>(Direction == Eigen::Vertical ? x.rows() : x.cols());
    return detail::member_cost<Member>::of(n) * demand + detail::count_node(x, demand * n);
  }
};

/// A * B: dense x dense costs 2*M*N*K when materialised (PyTorch's convention: a multiply-add is 2
/// FLOPs), 2*K per coefficient read for a lazy product; a diagonal x dense product costs 1 per
/// coefficient read.
template <class L, class R, int Option>
struct flop_counter<Eigen::Product<L, R, Option>> {
  /// The node type.
  using expr = Eigen::Product<L, R, Option>;
  /// The left operand's expression type.
  using lhs_t = detail::bare_t<decltype(std::declval<const expr&>().lhs())>;
  /// The right operand's expression type.
  using rhs_t = detail::bare_t<decltype(std::declval<const expr&>().rhs())>;
  /// Whether both operands are dense (matrix or array expressions).
  static constexpr bool dense = detail::dense_product_v<lhs_t, rhs_t>;
  /// Whether one operand is a diagonal matrix and the other dense.
  static constexpr bool diagonal = detail::diagonal_product_v<lhs_t, rhs_t>;
  /// Whether flops_of accepts the node: every node and functor below it has a rule. Triangular,
  /// self-adjoint, permutation and sparse products are not.
  static constexpr bool counted = (dense || diagonal) && is_counted_v<lhs_t> && is_counted_v<rhs_t>;
  /// The product's FLOPs (see above) plus its operands'; does not compile for a product that is not
  /// counted.
  static std::uint64_t count(const expr& e, std::uint64_t demand) {
    static_assert(dense || diagonal,
                  "frugal::flop_counter: only dense x dense and diagonal x dense products are counted; "
                  "this Eigen::Product (named in the 'In instantiation of' line above) multiplies a "
                  "triangular, self-adjoint, permutation or sparse operand.");
    if constexpr (diagonal) {
      // One multiply per coefficient read; the diagonal's vector is computed once.
      return demand + detail::count_node(e.lhs(), demand) + detail::count_node(e.rhs(), demand);
    } else if constexpr (Option == Eigen::LazyProduct) {
      return detail::lazy_product(e, demand);
    } else {
      return detail::materialised_product(e);
    }
  }
};

/// Eigen computes only the diagonal of a product: 2*K per diagonal coefficient.
template <class L, class R, int I>
struct flop_counter<Eigen::Diagonal<const Eigen::Product<L, R, Eigen::DefaultProduct>, I>> {
  /// The product whose diagonal is taken.
  using product = Eigen::Product<L, R, Eigen::DefaultProduct>;
  /// Whether the product is a counted dense one.
  static constexpr bool counted = flop_counter<product>::counted && flop_counter<product>::dense;
  /// 2*K per diagonal coefficient read, plus the operands' FLOPs.
  static std::uint64_t count(const Eigen::Diagonal<const product, I>& e, std::uint64_t demand) {
    static_assert(flop_counter<product>::dense, "frugal::flop_counter: diagonal of a non-dense product");
    return detail::lazy_product(e.nestedExpression(), demand);
  }
};

// ---------------------------------------------------------------------------------------------
// Counting.
// ---------------------------------------------------------------------------------------------

/// FLOPs of evaluating expr once, in full: compile-time rules on runtime sizes; evaluates nothing.
template <class Derived>
[[nodiscard]] std::uint64_t flops_of(const Eigen::EigenBase<Derived>& expr) {
  return detail::count_full(expr.derived());
}

/// Scalar reductions of an expression: the expression's own FLOPs plus these.
enum class reduction { sum, mean, prod, min_coeff, max_coeff, squared_norm, norm };

/// FLOPs to reduce n values: n-1 for sum, prod, min/max; sum + 1 division for mean;
/// n squares + (n-1) adds for squared_norm, + 1 square root for norm. Zero values: zero FLOPs.
[[nodiscard]] constexpr std::uint64_t reduction_flops(reduction r, std::uint64_t n) noexcept {
  if (n == 0) return 0;
  switch (r) {
    case reduction::sum:
    case reduction::prod:
    case reduction::min_coeff:
    case reduction::max_coeff:
      return n - 1;
    case reduction::mean:
      return n;
    case reduction::squared_norm:
      return 2 * n - 1;
    case reduction::norm:
      return 2 * n;
  }
  return 0;
}

/// FLOPs of evaluating expr once and reducing its rows * cols values with `r` (reduction_flops).
template <class Derived>
[[nodiscard]] std::uint64_t flops_of(const Eigen::DenseBase<Derived>& expr, reduction r) {
  return flops_of(expr) + reduction_flops(r, detail::size_of(expr.rows(), expr.cols()));
}

///@{
/// Counted scalar reductions: evaluate as Eigen does and charge the current scope.
template <class Derived>
[[nodiscard]] auto sum(const Eigen::DenseBase<Derived>& x) {
  const std::uint64_t n = flops_of(x, reduction::sum);
  auto r = x.sum();
  add_flops(n);
  return r;
}
template <class Derived>
[[nodiscard]] auto mean(const Eigen::DenseBase<Derived>& x) {
  const std::uint64_t n = flops_of(x, reduction::mean);
  auto r = x.mean();
  add_flops(n);
  return r;
}
template <class Derived>
[[nodiscard]] auto prod(const Eigen::DenseBase<Derived>& x) {
  const std::uint64_t n = flops_of(x, reduction::prod);
  auto r = x.prod();
  add_flops(n);
  return r;
}
template <class Derived>
[[nodiscard]] auto min_coeff(const Eigen::DenseBase<Derived>& x) {
  const std::uint64_t n = flops_of(x, reduction::min_coeff);
  auto r = x.minCoeff();
  add_flops(n);
  return r;
}
template <class Derived>
[[nodiscard]] auto max_coeff(const Eigen::DenseBase<Derived>& x) {
  const std::uint64_t n = flops_of(x, reduction::max_coeff);
  auto r = x.maxCoeff();
  add_flops(n);
  return r;
}
template <class Derived>
[[nodiscard]] auto squared_norm(const Eigen::MatrixBase<Derived>& x) {
  const std::uint64_t n = flops_of(x, reduction::squared_norm);
  auto r = x.squaredNorm();
  add_flops(n);
  return r;
}
template <class Derived>
[[nodiscard]] auto norm(const Eigen::MatrixBase<Derived>& x) {
  const std::uint64_t n = flops_of(x, reduction::norm);
  auto r = x.norm();
  add_flops(n);
  return r;
}
///@}
/// 2n, as x.transpose() * y counts (a 1 x 1 product); the exact count is 2n-1.
template <class A, class B>
[[nodiscard]] auto dot(const Eigen::MatrixBase<A>& x, const Eigen::MatrixBase<B>& y) {
  const std::uint64_t n = 2 * static_cast<std::uint64_t>(x.size()) + flops_of(x) + flops_of(y);
  auto r = x.dot(y);
  add_flops(n);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Counted assignment: evaluates exactly as the Eigen statement in the comment, charges the
// expression's FLOPs to the calling thread's innermost scope once, returns the destination.
// A destination given as a temporary view (H.col(0), H.block(...)) is returned by value.
// ---------------------------------------------------------------------------------------------

/// dst = expr
template <class Dst, class Expr>
Dst& assign(Dst& dst, const Expr& expr) {
  const std::uint64_t n = flops_of(expr);
  dst = expr;
  add_flops(n);
  return dst;
}
/// The same for a destination given as a temporary view (H.col(0), H.block(...)), returned by
/// value.
template <class Dst, class Expr, std::enable_if_t<!std::is_lvalue_reference_v<Dst>, int> = 0>
Dst assign(Dst&& dst, const Expr& expr) {
  assign(dst, expr);
  return std::move(dst);
}

/// dst.noalias() = expr: the caller promises expr does not read dst (no temporary).
template <class Dst, class Expr>
Dst& assign_noalias(Dst& dst, const Expr& expr) {
  const std::uint64_t n = flops_of(expr);
  dst.noalias() = expr;
  add_flops(n);
  return dst;
}
/// The same for a destination given as a temporary view (H.col(0), H.block(...)), returned by
/// value.
template <class Dst, class Expr, std::enable_if_t<!std::is_lvalue_reference_v<Dst>, int> = 0>
Dst assign_noalias(Dst&& dst, const Expr& expr) {
  assign_noalias(dst, expr);
  return std::move(dst);
}

/// dst += expr: expr's FLOPs plus one add per coefficient of dst.
template <class Dst, class Expr>
Dst& add_assign(Dst& dst, const Expr& expr) {
  const std::uint64_t n = flops_of(expr) + detail::size_of(expr.rows(), expr.cols());
  dst += expr;
  add_flops(n);
  return dst;
}
/// The same for a destination given as a temporary view (H.col(0), H.block(...)), returned by
/// value.
template <class Dst, class Expr, std::enable_if_t<!std::is_lvalue_reference_v<Dst>, int> = 0>
Dst add_assign(Dst&& dst, const Expr& expr) {
  add_assign(dst, expr);
  return std::move(dst);
}

/// dst.noalias() += expr (gradient accumulation: dW.noalias() += dY * X.transpose()).
template <class Dst, class Expr>
Dst& add_assign_noalias(Dst& dst, const Expr& expr) {
  const std::uint64_t n = flops_of(expr) + detail::size_of(expr.rows(), expr.cols());
  dst.noalias() += expr;
  add_flops(n);
  return dst;
}
/// The same for a destination given as a temporary view (H.col(0), H.block(...)), returned by
/// value.
template <class Dst, class Expr, std::enable_if_t<!std::is_lvalue_reference_v<Dst>, int> = 0>
Dst add_assign_noalias(Dst&& dst, const Expr& expr) {
  add_assign_noalias(dst, expr);
  return std::move(dst);
}

/// dst -= expr
template <class Dst, class Expr>
Dst& sub_assign(Dst& dst, const Expr& expr) {
  const std::uint64_t n = flops_of(expr) + detail::size_of(expr.rows(), expr.cols());
  dst -= expr;
  add_flops(n);
  return dst;
}
/// The same for a destination given as a temporary view (H.col(0), H.block(...)), returned by
/// value.
template <class Dst, class Expr, std::enable_if_t<!std::is_lvalue_reference_v<Dst>, int> = 0>
Dst sub_assign(Dst&& dst, const Expr& expr) {
  sub_assign(dst, expr);
  return std::move(dst);
}

/// dst.noalias() -= expr
template <class Dst, class Expr>
Dst& sub_assign_noalias(Dst& dst, const Expr& expr) {
  const std::uint64_t n = flops_of(expr) + detail::size_of(expr.rows(), expr.cols());
  dst.noalias() -= expr;
  add_flops(n);
  return dst;
}
/// The same for a destination given as a temporary view (H.col(0), H.block(...)), returned by
/// value.
template <class Dst, class Expr, std::enable_if_t<!std::is_lvalue_reference_v<Dst>, int> = 0>
Dst sub_assign_noalias(Dst&& dst, const Expr& expr) {
  sub_assign_noalias(dst, expr);
  return std::move(dst);
}

}  // namespace frugal
