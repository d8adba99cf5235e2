/// @file
/// Symmetric int8 quantization of Eigen weight matrices (per tensor or per output channel): quantize,
/// dequantize, fake-quantize for quantization-aware fine-tuning, and the counted quantized product.
#pragma once

#include <frugal/eigen/flops.hpp>
#include <frugal/eigen/ops.hpp>
#include <frugal/meter.hpp>
#include <frugal/units.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define FRUGAL_DETAIL_QUANT_SSE2 1
#else
#define FRUGAL_DETAIL_QUANT_SSE2 0
#endif

namespace frugal {

/// A weight w of a group (the whole tensor, or one output channel = one row of W) with scale
/// s = max|w in group| / 127 is stored as q = round(w / s) in [-127, 127] (half away from zero;
/// -128 is never used, so the range is symmetric), and read back as q * s. Hence
///   |w - q * s| <= s / 2                    for every weight (plus float rounding of q * s),
/// one byte per weight plus one float per group: a float matrix shrinks by 4x (per tensor) or
/// 4 * in / (in + 4) (per channel). An all-zero group gets s = 0 and reads back as zeros.
enum class quant_granularity {
  per_tensor,   ///< one scale for the matrix
  per_channel,  ///< one scale per output channel (row of W): a row of small weights keeps its precision
};

/// The largest magnitude of a quantized value: int8 values lie in [-127, 127] (symmetric, -128
/// unused).
inline constexpr int quant_max = 127;

/// An int8 weight matrix (out x in, rows contiguous) and its float scales.
class quantized_matrix {
 public:
  /// The int8 values: out x in, row-major.
  using values_type = Eigen::Matrix<std::int8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  quantized_matrix() = default;
  /// values in [-127, 127]; scales finite and >= 0, one (per_tensor) or values.rows() (per_channel).
  quantized_matrix(values_type values, Eigen::VectorXf scales, quant_granularity granularity)
      : values_(std::move(values)), scales_(std::move(scales)), granularity_(granularity) {
    constexpr const char* op = "quantized_matrix";
    if (values_.size() == 0)
      detail::bad_argument(op, "values must not be empty, got " + std::to_string(values_.rows()) + " x " +
                                   std::to_string(values_.cols()));
    const Eigen::Index groups = granularity_ == quant_granularity::per_tensor ? 1 : values_.rows();
    detail::require_equal(op, "scales.size()", scales_.size(),
                          granularity_ == quant_granularity::per_tensor ? "1 (per_tensor)" : "values.rows() (per_channel)",
                          groups);
    for (Eigen::Index g = 0; g < scales_.size(); ++g)
      if (!(std::isfinite(scales_(g)) && scales_(g) >= 0))
        detail::bad_argument(op, "scales(" + std::to_string(g) + ") must be finite and >= 0, got " +
                                     detail::units_impl::shortest(static_cast<double>(scales_(g))));
    for (Eigen::Index i = 0; i < values_.rows(); ++i)
      for (Eigen::Index j = 0; j < values_.cols(); ++j)
        if (values_(i, j) < -quant_max)
          detail::bad_argument(op, "values(" + std::to_string(i) + ", " + std::to_string(j) + ") must be in [-127, 127], got " +
                                       std::to_string(static_cast<int>(values_(i, j))));
  }

  /// Output channels (rows of W).
  [[nodiscard]] Eigen::Index rows() const noexcept { return values_.rows(); }
  /// Input features (columns of W).
  [[nodiscard]] Eigen::Index cols() const noexcept { return values_.cols(); }
  /// One scale for the matrix, or one per row.
  [[nodiscard]] quant_granularity granularity() const noexcept { return granularity_; }
  /// The int8 values; a weight reads back as value * scale of its row.
  [[nodiscard]] const values_type& values() const noexcept { return values_; }
  /// The scales: one (per_tensor) or rows() (per_channel), each finite and >= 0.
  [[nodiscard]] const Eigen::VectorXf& scales() const noexcept { return scales_; }
  /// The scale of row i.
  [[nodiscard]] float scale(Eigen::Index i) const noexcept {
    return scales_(granularity_ == quant_granularity::per_tensor ? 0 : i);
  }
  /// Storage: one byte per weight, four per scale.
  [[nodiscard]] std::uint64_t bytes() const noexcept {
    return static_cast<std::uint64_t>(values_.size()) + sizeof(float) * static_cast<std::uint64_t>(scales_.size());
  }

 private:
  values_type values_;
  Eigen::VectorXf scales_;
  quant_granularity granularity_ = quant_granularity::per_channel;
};

/// Bytes of a float matrix of this shape, to compare with quantized_matrix::bytes().
[[nodiscard]] constexpr std::uint64_t float_bytes(std::uint64_t rows, std::uint64_t cols) noexcept {
  return sizeof(float) * rows * cols;
}

/// FLOPs of quantizing n weights in `groups` groups: |w| and the running max (2 per weight), one
/// division per group for its scale, w * (1/s) and the rounding (2 per weight).
[[nodiscard]] constexpr std::uint64_t quantize_flops(std::uint64_t n, std::uint64_t groups) noexcept {
  return 4 * n + groups;
}
/// q * s: one per weight (the int8 -> float conversion is a cast: free, as in flops.hpp).
[[nodiscard]] constexpr std::uint64_t dequantize_flops(std::uint64_t n) noexcept { return n; }

namespace detail {
// round(w / s) half away from zero, clamped to [-127, 127]. Without SSE4.1 std::round is a libm
// call; truncation by conversion is one instruction, and v - trunc(v) is exact.
[[nodiscard]] inline std::int8_t quantize_value(double w, double inverse_scale) noexcept {
  const double v = std::clamp(w * inverse_scale, -static_cast<double>(quant_max), static_cast<double>(quant_max));
  auto t = static_cast<int>(v);
  const double fraction = v - static_cast<double>(t);
  t += static_cast<int>(fraction >= 0.5) - static_cast<int>(fraction <= -0.5);
  return static_cast<std::int8_t>(t);
}
// 1/s in double (so w * (1/s) rounds like w / s to within 2^-52), 0 for an all-zero group.
[[nodiscard]] inline double inverse_scale(float s) noexcept { return s > 0 ? 1.0 / static_cast<double>(s) : 0.0; }
[[nodiscard]] inline float scale_of(double max_abs) noexcept {
  return static_cast<float>(max_abs / static_cast<double>(quant_max));
}
}  // namespace detail

namespace detail {

// d[i] = quantize_value(c[i], inverse[i]) for i < n, two doubles at a time with SSE2 (the scalar
// code's exact arithmetic: double products, truncation, and a comparison of the exact fraction).
inline void quantize_span(const float* c, const double* inverse, Eigen::Index n, std::int8_t* d) noexcept {
  Eigen::Index i = 0;
#if FRUGAL_DETAIL_QUANT_SSE2
  const __m128d hi = _mm_set1_pd(quant_max), lo = _mm_set1_pd(-quant_max), half = _mm_set1_pd(0.5),
                neg_half = _mm_set1_pd(-0.5), one = _mm_set1_pd(1.0);
  const auto two = [&](__m128d x, __m128d inv) {
    const __m128d v = _mm_min_pd(_mm_max_pd(_mm_mul_pd(x, inv), lo), hi);
    const __m128i t = _mm_cvttpd_epi32(v);
    const __m128d fraction = _mm_sub_pd(v, _mm_cvtepi32_pd(t));
    const __m128d up = _mm_and_pd(_mm_cmpge_pd(fraction, half), one);
    const __m128d down = _mm_and_pd(_mm_cmple_pd(fraction, neg_half), one);
    return _mm_cvttpd_epi32(_mm_sub_pd(_mm_add_pd(_mm_cvtepi32_pd(t), up), down));
  };
  for (; i + 4 <= n; i += 4) {
    const __m128 x = _mm_loadu_ps(c + i);
    const __m128i q01 = two(_mm_cvtps_pd(x), _mm_loadu_pd(inverse + i));
    const __m128i q23 = two(_mm_cvtps_pd(_mm_movehl_ps(x, x)), _mm_loadu_pd(inverse + i + 2));
    const __m128i q32 = _mm_unpacklo_epi64(q01, q23);  // four int32
    const __m128i q8 = _mm_packs_epi16(_mm_packs_epi32(q32, q32), _mm_setzero_si128());
    const int packed = _mm_cvtsi128_si32(q8);
    std::memcpy(d + i, &packed, 4);
  }
#endif
  for (; i < n; ++i) d[i] = quantize_value(static_cast<double>(c[i]), inverse[i]);
}

// The quantized values column by column (column-major, the storage order of Eigen's default)
// and the scales; rejects empty and non-finite matrices.
template <class W>
Eigen::Matrix<std::int8_t, Eigen::Dynamic, Eigen::Dynamic> quantize_by_column(const Eigen::MatrixBase<W>& w,
                                                                             quant_granularity granularity,
                                                                             Eigen::VectorXf& scales) {
  static_assert(std::is_same_v<typename W::Scalar, float>, "frugal::quantize: weights must be float");
  constexpr const char* op = "quantize";
  if (w.size() == 0)
    bad_argument(op, "w must not be empty, got " + std::to_string(w.rows()) + " x " + std::to_string(w.cols()));
  const Eigen::Index rows = w.rows(), cols = w.cols();
  // Storage order throughout (a plain matrix or a block is mapped; an expression is evaluated once).
  const Eigen::Ref<const Eigen::MatrixXf> wr(w);
  if (!wr.allFinite()) {
    for (Eigen::Index j = 0; j < cols; ++j)
      for (Eigen::Index i = 0; i < rows; ++i)
        if (!std::isfinite(wr(i, j)))
          bad_argument(op, "w(" + std::to_string(i) + ", " + std::to_string(j) + ") must be finite, got " +
                               units_impl::shortest(static_cast<double>(wr(i, j))));
  }
  const Eigen::VectorXf row_max = wr.cwiseAbs().rowwise().maxCoeff();
  if (granularity == quant_granularity::per_tensor) {
    scales.resize(1);
    scales(0) = scale_of(static_cast<double>(row_max.maxCoeff()));
  } else {
    scales.resize(rows);
    for (Eigen::Index i = 0; i < rows; ++i) scales(i) = scale_of(static_cast<double>(row_max(i)));
  }
  Eigen::VectorXd inverse(rows);
  for (Eigen::Index i = 0; i < rows; ++i)
    inverse(i) = inverse_scale(scales(granularity == quant_granularity::per_tensor ? 0 : i));
  Eigen::Matrix<std::int8_t, Eigen::Dynamic, Eigen::Dynamic> q(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j) quantize_span(wr.col(j).data(), inverse.data(), rows, q.col(j).data());
  add_flops(quantize_flops(count(w.size()), count(scales.size())));
  return q;
}

// Column-major int8 values times their rows' scales (scales: one, or one per row).
inline Eigen::MatrixXf dequantize_by_column(const Eigen::Matrix<std::int8_t, Eigen::Dynamic, Eigen::Dynamic>& q,
                                            const Eigen::VectorXf& scales) {
  const Eigen::VectorXf s = scales.size() == 1 ? Eigen::VectorXf::Constant(q.rows(), scales(0)) : scales;
  Eigen::MatrixXf w = q.cast<float>();
  w.array().colwise() *= s.array();
  add_flops(dequantize_flops(count(w.size())));
  return w;
}
}  // namespace detail

/// Quantizes w (float, out x in). Rejects empty and non-finite matrices. Charges quantize_flops.
template <class W>
[[nodiscard]] quantized_matrix quantize(const Eigen::MatrixBase<W>& w,
                                        quant_granularity granularity = quant_granularity::per_channel) {
  Eigen::VectorXf scales;
  quantized_matrix::values_type q = detail::quantize_by_column(w, granularity, scales);
  return quantized_matrix(std::move(q), std::move(scales), granularity);
}

/// q * s for every weight: the float matrix the int8 one stands for. Charges dequantize_flops.
[[nodiscard]] inline Eigen::MatrixXf dequantize(const quantized_matrix& q) {
  return detail::dequantize_by_column(q.values(), q.scales());
}

/// dequantize(quantize(w)): the weights a quantized model will use, in float, for
/// quantization-aware fine-tuning. Run the forward pass with fake_quantize(W) and apply the
/// gradient to the float W unchanged (the straight-through estimator): with max-scaling no weight
/// is clipped, so the estimator's pass-through is exact everywhere. fake_quantize is idempotent.
template <class W>
[[nodiscard]] Eigen::MatrixXf fake_quantize(const Eigen::MatrixBase<W>& w,
                                            quant_granularity granularity = quant_granularity::per_channel) {
  Eigen::VectorXf scales;
  return detail::dequantize_by_column(detail::quantize_by_column(w, granularity, scales), scales);
}

// ---------------------------------------------------------------------------------------------
// The quantized product y = W x, W int8 (m x k), x float (k x n), y float (m x n).
// ---------------------------------------------------------------------------------------------

/// How quantized_product computes y = W x (W int8, m x k; x float, k x n; y float, m x n).
enum class quantized_product_mode {
  /// The mode measured faster for this build and this many columns: resolve_product_mode.
  automatic,
  /// Each column of x is quantized too (symmetric, its own scale t = max|x| / 127); the int8 dot
  /// products accumulate exactly in int32 (SSE2 int16 multiply-adds) and y = s_i * t_j * acc.
  /// Error: the weights' and the inputs'.
  int32_accumulate,
  /// Weights are dequantized on the fly and x stays float: from 4 columns on, a panel of rows at
  /// a time into a float buffer for Eigen's float product; below, converted in registers inside
  /// the dot products. Float accumulation. Error: the weights' only.
  dequantize,
};

namespace detail {
#if defined(__AVX2__) && defined(__FMA__)
inline constexpr bool fma_build = true;
#else
inline constexpr bool fma_build = false;
#endif
}  // namespace detail

/// What `automatic` means, from benchmarks/compression_bench (256 x 784 int8 weights, 1 and 128
/// columns, GCC 12 -O2, 2-vCPU VM; times relative to the float product in the same run):
/// - default x86-64 flags (SSE2): int32_accumulate always (0.87x float at 1 column, 0.62x at 128;
///   dequantize: 2.5x and 1.05x);
/// - AVX2 + FMA (measured with -march=native, AVX-512): int32_accumulate below 4 columns (1.22x
///   float, dequantize 3.4x) and dequantize from 4 (1.14x float, int32_accumulate 3.1x): Eigen's
///   FMA kernels outrun the SSE2 integer ones, and int8 then saves bytes, not time.
[[nodiscard]] constexpr quantized_product_mode resolve_product_mode(quantized_product_mode mode,
                                                                    std::uint64_t columns) noexcept {
  if (mode != quantized_product_mode::automatic) return mode;
  return detail::fma_build && columns >= 4 ? quantized_product_mode::dequantize
                                           : quantized_product_mode::int32_accumulate;
}

/// FLOPs (arithmetic operations, integer ones counted like float ones) of the quantized product.
/// int32_accumulate: 2*m*n*k multiply-adds; quantizing x: |x|, max, x * (1/t), round (4*k*n) and
/// one division per column (n); the output scaling s_i * t_j * acc (2*m*n).
/// dequantize: 2*m*n*k; from 4 columns on, q * s once per weight per call (m*k, the panels);
/// below, the sums are scaled instead (m*n: each weight is converted in registers per column).
[[nodiscard]] constexpr std::uint64_t quantized_product_flops(std::uint64_t m, std::uint64_t n, std::uint64_t k,
                                                              quantized_product_mode mode) noexcept {
  if (resolve_product_mode(mode, n) == quantized_product_mode::int32_accumulate)
    return 2 * m * n * k + 4 * k * n + n + 2 * m * n;
  return 2 * m * n * k + (n < 4 ? m * n : m * k);
}

namespace detail {

// Partial sums of at most this many int8 x int8 products fit an int32: 127 * 127 * 133144 < 2^31.
inline constexpr Eigen::Index int32_chunk = 131072;

// Per-thread scratch kept between calls, so a training step allocates only on its first call.
struct quant_scratch {
  std::vector<std::int16_t> x16;  // quantized columns of x, widened, each zero-padded to a multiple of 8
  std::vector<std::int16_t> w16;  // one widened row of W, zero-padded likewise
  std::vector<float> x_scale;
  std::vector<float> x_column;    // one contiguous float column of x (dequantize, few columns)
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> panel;
};
inline quant_scratch& scratch() {
  thread_local quant_scratch s;
  return s;
}

#if FRUGAL_DETAIL_QUANT_SSE2
[[nodiscard]] inline std::int32_t horizontal_sum(__m128i v) noexcept {
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4E));
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xB1));
  return _mm_cvtsi128_si32(v);
}
[[nodiscard]] inline float horizontal_sum(__m128 v) noexcept {
  v = _mm_add_ps(v, _mm_movehl_ps(v, v));
  v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 0x55));
  return _mm_cvtss_f32(v);
}
// Eight int8 values, sign-extended to int16 (SSE2 has no pmovsxbw).
[[nodiscard]] inline __m128i load8_as_int16(const std::int8_t* a) noexcept {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(a));
  return _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8);
}
[[nodiscard]] inline __m128i load_int16(const std::int16_t* a) noexcept {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(a));
}
#endif

// Few columns (GEMV): four rows of W, sign-extended in registers, against one quantized column;
// exact while len <= int32_chunk. out[r] += dot(row r, x).
inline void int8_dots_4x1(const std::int8_t* const* a, const std::int16_t* x, Eigen::Index len,
                          std::int64_t* out) noexcept {
  Eigen::Index k = 0;
  std::int32_t acc[4] = {};
#if FRUGAL_DETAIL_QUANT_SSE2
  __m128i s0 = _mm_setzero_si128(), s1 = s0, s2 = s0, s3 = s0;
  for (; k + 8 <= len; k += 8) {
    const __m128i xv = load_int16(x + k);
    s0 = _mm_add_epi32(s0, _mm_madd_epi16(load8_as_int16(a[0] + k), xv));
    s1 = _mm_add_epi32(s1, _mm_madd_epi16(load8_as_int16(a[1] + k), xv));
    s2 = _mm_add_epi32(s2, _mm_madd_epi16(load8_as_int16(a[2] + k), xv));
    s3 = _mm_add_epi32(s3, _mm_madd_epi16(load8_as_int16(a[3] + k), xv));
  }
  acc[0] = horizontal_sum(s0);
  acc[1] = horizontal_sum(s1);
  acc[2] = horizontal_sum(s2);
  acc[3] = horizontal_sum(s3);
#endif
  for (; k < len; ++k)
    for (int r = 0; r < 4; ++r) acc[r] += static_cast<std::int32_t>(a[r][k]) * static_cast<std::int32_t>(x[k]);
  for (int r = 0; r < 4; ++r) out[r] += acc[r];
}
inline void int8_dot_1x1(const std::int8_t* a, const std::int16_t* x, Eigen::Index len, std::int64_t* out) noexcept {
  std::int32_t acc = 0;
  for (Eigen::Index k = 0; k < len; ++k) acc += static_cast<std::int32_t>(a[k]) * static_cast<std::int32_t>(x[k]);
  *out += acc;
}

// Many columns (GEMM): one widened row against 4 widened columns, len a multiple of 8 (both sides
// zero-padded); out[c] += dot(row, column c). Four accumulators written out by hand (GCC -O2
// keeps an array of them in memory); 1 x 4 measured faster here than 2 x 4 and 4 x 2.
inline void int16_dots_1x4(const std::int16_t* a, const std::int16_t* x, Eigen::Index x_stride, Eigen::Index len,
                           std::int64_t* out) noexcept {
  const std::int16_t* x0 = x;
  const std::int16_t* x1 = x + x_stride;
  const std::int16_t* x2 = x + 2 * x_stride;
  const std::int16_t* x3 = x + 3 * x_stride;
#if FRUGAL_DETAIL_QUANT_SSE2
  __m128i s0 = _mm_setzero_si128(), s1 = s0, s2 = s0, s3 = s0;
  for (Eigen::Index k = 0; k < len; k += 8) {
    const __m128i w = load_int16(a + k);
    s0 = _mm_add_epi32(s0, _mm_madd_epi16(w, load_int16(x0 + k)));
    s1 = _mm_add_epi32(s1, _mm_madd_epi16(w, load_int16(x1 + k)));
    s2 = _mm_add_epi32(s2, _mm_madd_epi16(w, load_int16(x2 + k)));
    s3 = _mm_add_epi32(s3, _mm_madd_epi16(w, load_int16(x3 + k)));
  }
  out[0] += horizontal_sum(s0);
  out[1] += horizontal_sum(s1);
  out[2] += horizontal_sum(s2);
  out[3] += horizontal_sum(s3);
#else
  std::int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (Eigen::Index k = 0; k < len; ++k) {
    const std::int32_t w = a[k];
    s0 += w * x0[k];
    s1 += w * x1[k];
    s2 += w * x2[k];
    s3 += w * x3[k];
  }
  out[0] += s0;
  out[1] += s1;
  out[2] += s2;
  out[3] += s3;
#endif
}
// One widened row against one widened column, for the last columns.
inline void int16_dot(const std::int16_t* a, const std::int16_t* x, Eigen::Index len, std::int64_t* out) noexcept {
  std::int32_t acc = 0;
  for (Eigen::Index k = 0; k < len; ++k) acc += static_cast<std::int32_t>(a[k]) * static_cast<std::int32_t>(x[k]);
  *out += acc;
}

// Columns from which a product widens W's rows once and reuses them (GEMM kernels); below it the
// rows are sign-extended in registers per column (GEMV kernels).
inline constexpr Eigen::Index gemm_min_columns = 4;

// Quantizes one float column of length k into out (int16, zero-padded to stride); returns its
// scale t = max|x| / 127, or -1 when the column holds a NaN or an infinity. In float, rounding
// half away from zero by truncating p + copysign(0.5, p) (independent of the FPU rounding mode):
// with p = x * fl(1/t), |q - x/t| <= 1/2 + 383 * 2^-24, so |q t - x| <= t (1/2 + 2^-15), the
// activation term of quantized_product_error_bound.
inline float quantize_column(const float* x, Eigen::Index k, Eigen::Index stride, std::int16_t* out) noexcept {
  Eigen::Index r = 0;
  float max_abs = 0;
  bool finite = true;
#if FRUGAL_DETAIL_QUANT_SSE2
  const __m128 sign = _mm_set1_ps(-0.0f);
  __m128 vmax = _mm_setzero_ps(), bad = _mm_setzero_ps();
  for (; r + 4 <= k; r += 4) {
    const __m128 v = _mm_loadu_ps(x + r);
    vmax = _mm_max_ps(vmax, _mm_andnot_ps(sign, v));
    bad = _mm_or_ps(bad, _mm_cmpunord_ps(v, v));
  }
  float lanes[4];
  _mm_storeu_ps(lanes, vmax);
  max_abs = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
  finite = _mm_movemask_ps(bad) == 0;
#endif
  for (; r < k; ++r) {
    finite = finite && !std::isnan(x[r]);
    max_abs = std::max(max_abs, std::abs(x[r]));
  }
  if (!finite || !std::isfinite(max_abs)) return -1;
  const float t = scale_of(static_cast<double>(max_abs));
  const float inv = t > 0 ? static_cast<float>(1.0 / static_cast<double>(t)) : 0.0f;
  r = 0;
#if FRUGAL_DETAIL_QUANT_SSE2
  const __m128 vinv = _mm_set1_ps(inv), half = _mm_set1_ps(0.5f);
  for (; r + 8 <= k; r += 8) {
    const __m128 p0 = _mm_mul_ps(_mm_loadu_ps(x + r), vinv);
    const __m128 p1 = _mm_mul_ps(_mm_loadu_ps(x + r + 4), vinv);
    const __m128i q0 = _mm_cvttps_epi32(_mm_add_ps(p0, _mm_or_ps(_mm_and_ps(p0, sign), half)));
    const __m128i q1 = _mm_cvttps_epi32(_mm_add_ps(p1, _mm_or_ps(_mm_and_ps(p1, sign), half)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + r), _mm_packs_epi32(q0, q1));
  }
#endif
  for (; r < k; ++r) {
    const float p = x[r] * inv;
    out[r] = static_cast<std::int16_t>(static_cast<int>(p + std::copysign(0.5f, p)));
  }
  std::fill(out + k, out + stride, std::int16_t{0});
  return t;
}

// Quantizes x's columns into s.x16 (stride = k rounded up to 8) and their scales into s.x_scale.
template <class X>
void quantize_columns(const Eigen::MatrixBase<X>& x, Eigen::Index stride, quant_scratch& s) {
  const Eigen::Index k = x.rows(), n = x.cols();
  // Contiguous columns: a plain matrix or block is mapped, anything else evaluated once.
  const Eigen::Ref<const Eigen::MatrixXf> xr(x);
  s.x16.resize(static_cast<std::size_t>(stride * n));
  s.x_scale.resize(static_cast<std::size_t>(n));
  for (Eigen::Index j = 0; j < n; ++j) {
    const float t = quantize_column(xr.col(j).data(), k, stride, s.x16.data() + j * stride);
    if (t < 0) {
      for (Eigen::Index r = 0; r < k; ++r)
        if (!std::isfinite(xr(r, j)))
          bad_argument("quantized_product", "x must be finite for int32_accumulate, x(" + std::to_string(r) + ", " +
                                                std::to_string(j) + ") is " +
                                                units_impl::shortest(static_cast<double>(xr(r, j))));
    }
    s.x_scale[static_cast<std::size_t>(j)] = t;
  }
}

// y is resized only after x passed its checks, so a refused call changes nothing.
template <class X, class Y>
void product_int32(const quantized_matrix& q, const Eigen::MatrixBase<X>& x, Eigen::MatrixBase<Y>& y) {
  const Eigen::Index m = q.rows(), k = q.cols(), n = x.cols();
  const Eigen::Index stride = (k + 7) / 8 * 8;
  quant_scratch& s = scratch();
  quantize_columns(x, stride, s);
  y.derived().resize(m, n);
  const std::int8_t* base = q.values().data();
  const auto scale_out = [&](Eigen::Index i, Eigen::Index j, std::int64_t acc) {
    y(i, j) = q.scale(i) * s.x_scale[static_cast<std::size_t>(j)] * static_cast<float>(acc);
  };
  if (n < gemm_min_columns) {
    for (Eigen::Index j = 0; j < n; ++j) {
      const std::int16_t* xj = s.x16.data() + j * stride;
      Eigen::Index i = 0;
      for (; i + 4 <= m; i += 4) {
        std::int64_t acc[4] = {};
        for (Eigen::Index k0 = 0; k0 < k; k0 += int32_chunk) {
          const std::int8_t* rows[4] = {base + i * k + k0, base + (i + 1) * k + k0, base + (i + 2) * k + k0,
                                        base + (i + 3) * k + k0};
          int8_dots_4x1(rows, xj + k0, std::min(int32_chunk, k - k0), acc);
        }
        for (int r = 0; r < 4; ++r) scale_out(i + r, j, acc[r]);
      }
      for (; i < m; ++i) {
        std::int64_t acc = 0;
        for (Eigen::Index k0 = 0; k0 < k; k0 += int32_chunk)
          int8_dot_1x1(base + i * k + k0, xj + k0, std::min(int32_chunk, k - k0), &acc);
        scale_out(i, j, acc);
      }
    }
    return;
  }
  s.w16.resize(static_cast<std::size_t>(stride));
  std::int16_t* row = s.w16.data();
  for (Eigen::Index i = 0; i < m; ++i) {
    const std::int8_t* src = base + i * k;
    for (Eigen::Index c = 0; c < k; ++c) row[c] = src[c];
    std::fill(row + k, row + stride, std::int16_t{0});
    Eigen::Index j = 0;
    for (; j + 4 <= n; j += 4) {
      std::int64_t acc[4] = {};
      for (Eigen::Index k0 = 0; k0 < stride; k0 += int32_chunk)
        int16_dots_1x4(row + k0, s.x16.data() + j * stride + k0, stride, std::min(int32_chunk, stride - k0), acc);
      for (int c = 0; c < 4; ++c) scale_out(i, j + c, acc[c]);
    }
    for (; j < n; ++j) {
      std::int64_t acc = 0;
      for (Eigen::Index k0 = 0; k0 < stride; k0 += int32_chunk)
        int16_dot(row + k0, s.x16.data() + j * stride + k0, std::min(int32_chunk, stride - k0), &acc);
      scale_out(i, j, acc);
    }
  }
}

// Rows [i0, i0 + rows) of q, dequantized into dst (row-major, rows x k).
inline void dequantize_rows(const quantized_matrix& q, Eigen::Index i0, Eigen::Index rows, float* dst) noexcept {
  const Eigen::Index k = q.cols();
  for (Eigen::Index r = 0; r < rows; ++r) {
    const std::int8_t* a = q.values().data() + (i0 + r) * k;
    float* d = dst + r * k;
    const float sc = q.scale(i0 + r);
    Eigen::Index c = 0;
#if FRUGAL_DETAIL_QUANT_SSE2
    const __m128 vs = _mm_set1_ps(sc);
    for (; c + 8 <= k; c += 8) {
      const __m128i w16 = load8_as_int16(a + c);
      const __m128i lo = _mm_srai_epi32(_mm_unpacklo_epi16(w16, w16), 16);
      const __m128i hi = _mm_srai_epi32(_mm_unpackhi_epi16(w16, w16), 16);
      _mm_storeu_ps(d + c, _mm_mul_ps(_mm_cvtepi32_ps(lo), vs));
      _mm_storeu_ps(d + c + 4, _mm_mul_ps(_mm_cvtepi32_ps(hi), vs));
    }
#endif
    for (; c < k; ++c) d[c] = static_cast<float>(a[c]) * sc;
  }
}

// Four rows of W (int8, converted in registers) against one float column: out[r] = sum(q x).
inline void dequantized_dots_4x1(const std::int8_t* const* a, const float* x, Eigen::Index len, float* out) noexcept {
  Eigen::Index k = 0;
  float acc[4] = {};
#if FRUGAL_DETAIL_QUANT_SSE2
  const auto to_float = [](const std::int8_t* p, __m128& lo, __m128& hi) {
    const __m128i w16 = load8_as_int16(p);
    lo = _mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpacklo_epi16(w16, w16), 16));
    hi = _mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpackhi_epi16(w16, w16), 16));
  };
  __m128 s0 = _mm_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (; k + 8 <= len; k += 8) {
    const __m128 x0 = _mm_loadu_ps(x + k), x1 = _mm_loadu_ps(x + k + 4);
    __m128 lo, hi;
    to_float(a[0] + k, lo, hi);
    s0 = _mm_add_ps(s0, _mm_add_ps(_mm_mul_ps(lo, x0), _mm_mul_ps(hi, x1)));
    to_float(a[1] + k, lo, hi);
    s1 = _mm_add_ps(s1, _mm_add_ps(_mm_mul_ps(lo, x0), _mm_mul_ps(hi, x1)));
    to_float(a[2] + k, lo, hi);
    s2 = _mm_add_ps(s2, _mm_add_ps(_mm_mul_ps(lo, x0), _mm_mul_ps(hi, x1)));
    to_float(a[3] + k, lo, hi);
    s3 = _mm_add_ps(s3, _mm_add_ps(_mm_mul_ps(lo, x0), _mm_mul_ps(hi, x1)));
  }
  acc[0] = horizontal_sum(s0);
  acc[1] = horizontal_sum(s1);
  acc[2] = horizontal_sum(s2);
  acc[3] = horizontal_sum(s3);
#endif
  for (; k < len; ++k)
    for (int r = 0; r < 4; ++r) acc[r] += static_cast<float>(a[r][k]) * x[k];
  for (int r = 0; r < 4; ++r) out[r] = acc[r];
}

template <class X, class Y>
void product_dequantize(const quantized_matrix& q, const Eigen::MatrixBase<X>& x, Eigen::MatrixBase<Y>& y) {
  const Eigen::Index m = q.rows(), k = q.cols(), n = x.cols();
  y.derived().resize(m, n);
  if (n < gemm_min_columns) {
    // Few columns: each weight is read once per column anyway, so convert it in registers and
    // scale the sums, rather than writing and re-reading a dequantized panel.
    std::vector<float>& col = scratch().x_column;
    col.resize(static_cast<std::size_t>(k));
    const std::int8_t* base = q.values().data();
    for (Eigen::Index j = 0; j < n; ++j) {
      for (Eigen::Index r = 0; r < k; ++r) col[static_cast<std::size_t>(r)] = x(r, j);
      Eigen::Index i = 0;
      for (; i + 4 <= m; i += 4) {
        const std::int8_t* rows[4] = {base + i * k, base + (i + 1) * k, base + (i + 2) * k, base + (i + 3) * k};
        float sums[4];
        dequantized_dots_4x1(rows, col.data(), k, sums);
        for (int r = 0; r < 4; ++r) y(i + r, j) = q.scale(i + r) * sums[r];
      }
      for (; i < m; ++i) {
        float sum = 0;
        for (Eigen::Index c = 0; c < k; ++c) sum += static_cast<float>(base[i * k + c]) * col[static_cast<std::size_t>(c)];
        y(i, j) = q.scale(i) * sum;
      }
    }
    return;
  }
  // Panels of at most 64 rows and 256 KiB, so the dequantized rows stay in cache for the product.
  const Eigen::Index panel_rows = std::max<Eigen::Index>(1, std::min<Eigen::Index>(64, (Eigen::Index{1} << 16) / k));
  auto& panel = scratch().panel;
  if (panel.rows() < panel_rows || panel.cols() != k) panel.resize(panel_rows, k);
  for (Eigen::Index i = 0; i < m; i += panel_rows) {
    const Eigen::Index rows = std::min(panel_rows, m - i);
    dequantize_rows(q, i, rows, panel.data());
    y.middleRows(i, rows).noalias() = panel.topRows(rows) * x;
  }
}

template <class X>
void require_product(const char* op, const quantized_matrix& q, const Eigen::MatrixBase<X>& x) {
  static_assert(std::is_same_v<typename X::Scalar, float>, "frugal::quantized_product: x must be float");
  if (q.values().size() == 0) bad_argument(op, "w must not be empty (a default-constructed quantized_matrix)");
  require_equal(op, "x.rows()", x.rows(), "w.cols()", q.cols());
}
}  // namespace detail

/// y = W x with W quantized. y is resized if it is a Matrix and must not alias x. Charges
/// quantized_product_flops. Keeps a per-thread scratch buffer between calls (int32_accumulate:
/// 2 bytes per element of x; dequantize: at most 256 KiB of dequantized rows).
template <class X, class Y>
void quantized_product(const quantized_matrix& w, const Eigen::MatrixBase<X>& x, Eigen::MatrixBase<Y>& y,
                       quantized_product_mode mode = quantized_product_mode::automatic) {
  detail::require_product("quantized_product", w, x);
  if (resolve_product_mode(mode, detail::count(x.cols())) == quantized_product_mode::int32_accumulate)
    detail::product_int32(w, x, y);
  else
    detail::product_dequantize(w, x, y);
  add_flops(quantized_product_flops(detail::count(w.rows()), detail::count(x.cols()), detail::count(w.cols()), mode));
}

/// y = W x + b 1', the quantized twin of dense_forward (b stays float): adds rows * cols FLOPs.
template <class B, class X, class Y>
void quantized_forward(const quantized_matrix& w, const Eigen::MatrixBase<B>& b, const Eigen::MatrixBase<X>& x,
                       Eigen::MatrixBase<Y>& y, quantized_product_mode mode = quantized_product_mode::automatic) {
  detail::require_product("quantized_forward", w, x);
  detail::require_equal("quantized_forward", "b.size()", b.size(), "w.rows()", w.rows());
  quantized_product(w, x, y, mode);
  y.colwise() += b;
  add_flops(detail::count(w.rows()) * detail::count(x.cols()));
}

/// A bound on |y_ij - (W x)_ij| for the quantized product of the float W that q came from, per
/// output, in double. With s_i the row's weight scale, t_j = max|x_j| / 127 the column's input
/// scale and W^ = dequantize(q):
///   dequantize:        s_i/2 * ||x_j||_1
///   int32_accumulate:  s_i/2 * ||x_j||_1 + t_j (1/2 + 2^-15) * ||W^_i||_1
/// because W^ x^ - W x = (W^ - W) x + W^ (x^ - x), every |W^ - W| <= s/2 and every
/// |x^ - x| <= t (1/2 + 2^-15) (x is quantized in float: see detail::quantize_column).
/// Plus float rounding, u = 2^-24: dequantize's float accumulation over k terms and the rounding of
/// q * s, (k+1)u / (1 - (k+1)u) * sum_k |W^_ik| |x_kj|; int32_accumulate's integer sums are exact
/// and only the final scaling rounds, 4u * sum_k |W^_ik| (|x_kj| + t_j (1/2 + 2^-15)). Charges nothing.
template <class X>
[[nodiscard]] Eigen::MatrixXd quantized_product_error_bound(const quantized_matrix& w, const Eigen::MatrixBase<X>& x,
                                                            quantized_product_mode mode = quantized_product_mode::automatic) {
  detail::require_product("quantized_product_error_bound", w, x);
  mode = resolve_product_mode(mode, detail::count(x.cols()));
  const Eigen::Index m = w.rows(), k = w.cols(), n = x.cols();
  Eigen::MatrixXd w_hat_abs(m, k);
  Eigen::VectorXd s(m);
  for (Eigen::Index i = 0; i < m; ++i) {
    s(i) = static_cast<double>(w.scale(i));
    for (Eigen::Index c = 0; c < k; ++c) w_hat_abs(i, c) = std::abs(static_cast<double>(w.values()(i, c))) * s(i);
  }
  const Eigen::MatrixXd x_abs = x.template cast<double>().cwiseAbs();
  const Eigen::RowVectorXd x_l1 = x_abs.colwise().sum();
  const Eigen::MatrixXd magnitude = w_hat_abs * x_abs;  // sum_k |W^_ik| |x_kj|
  constexpr double u = 0x1p-24;
  Eigen::MatrixXd bound = 0.5 * s * x_l1;
  if (mode == quantized_product_mode::dequantize) {
    const double kk = static_cast<double>(k + 1);
    bound += (kk * u / (1 - kk * u)) * magnitude;
  } else {
    const Eigen::VectorXd w_l1 = w_hat_abs.rowwise().sum();
    Eigen::RowVectorXd t(n);
    for (Eigen::Index j = 0; j < n; ++j) t(j) = static_cast<double>(detail::scale_of(x_abs.col(j).maxCoeff()));
    constexpr double activation_error = 0.5 + 0x1p-15;
    bound += activation_error * w_l1 * t;
    bound += 4 * u * (magnitude + activation_error * w_l1 * t);
  }
  return bound;
}

}  // namespace frugal

#undef FRUGAL_DETAIL_QUANT_SSE2
