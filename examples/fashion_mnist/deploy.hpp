// The deployment budget (--deploy "model_bytes=64KiB,inference_flops=1e5"): after training, the
// model must fit a limit on its size (the deployed file's bytes) and on its inference cost (FLOPs
// per sample). This header plans the compression, applies it to a copy of the trained model,
// saves the deployed model (model.deployed), reads it back, and measures it against the float
// model on the test set. fashion_mnist_classify (classify.cpp) loads the file and classifies
// with the same code (load_deployed, classify_int8), so it reproduces the accuracy exactly.
//
// What an int8 multiply-accumulate costs. frugal charges it to the `flops` resource, exactly
// like a float one: quantized_product_flops (<frugal/eigen/quantize.hpp>) counts "integer ones
// counted like float ones", 2 FLOPs per MAC, and int32_accumulate adds what a float product
// does not need: quantizing every input column (4 per input + 1) and scaling every output (2 per
// output). So int8 weights cut bytes (4x), never FLOPs: an int8 layer costs slightly MORE FLOPs
// than its float twin. The plan below holds to that -- only pruning hidden units lowers the
// inference FLOPs, and the FLOP limit is checked against the int8 model's own count -- so a
// quantize rule cannot promise FLOP savings that never come. (On this machine's SSE2 build the
// int8 product does run faster than the float one, README "Pruning and quantization": that
// saving is time, measured and reported as time per sample, not a smaller FLOP count.)
//
// The plan, for the first hidden layer (784 inputs: for 784-256-128-10 it holds 85 % of the
// weights and of the inference FLOPs, so a unit there is the most a removal saves; --prune's
// default layer too):
//   1. int8 per-channel weights always: the deployed format is int8 (one byte per weight, one
//      float scale per output unit, float biases). Quantization keeps every unit, and moves each
//      weight by at most half its row's scale.
//   2. model_bytes: frugal::plan_for_bytes on the file's payload (the limit less the format's
//      fixed header and checksum): quantize first, prune only what int8 alone does not fit.
//   3. inference_flops: the widest layer whose int8 inference, as frugal counts it, costs at most
//      the limit per sample (int8_inference_flops; not frugal's float plan_prune_for_flops, which
//      would under-count the int8 model by its quantization of inputs and scaling of outputs).
//   4. The narrower of the two widths; the units of smallest L2 norm go first
//      (frugal::hidden_unit_scores, as --prune), then every layer is quantized.
// No fine-tuning after pruning: the deployment uses no training budget. A limit that even one
// unit cannot meet is a decision, not an error: nothing is deployed, and the report says which
// limit failed and what the smallest model costs.
#pragma once

#include "fnv1a.hpp"
#include "idx.hpp"
#include "mlp.hpp"

#include <frugal/budget.hpp>
#include <frugal/detail/json.hpp>
#include <frugal/durable_file.hpp>
#include <frugal/eigen/compression_plan.hpp>
#include <frugal/eigen/quantize.hpp>
#include <frugal/eigen/structured_prune.hpp>
#include <frugal/scope.hpp>
#include <frugal/units.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fmnist {

// --deploy's limits: either or both.
struct deploy_limits {
  std::optional<std::uint64_t> model_bytes;      // the deployed file, in bytes
  std::optional<std::uint64_t> inference_flops;  // per sample, as frugal counts them
};

// A deployed model file that is missing, cut short, altered or not one of this example's.
class deploy_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- the deployed model and its file --------------------------------------------------------
//
// model.deployed, version 1, native byte order (little-endian on x86-64 and aarch64; a file
// from a big-endian machine is refused, its version reading as 16777216):
//   "fmnist-deployed\n"                      16 bytes
//   u32 version                              1
//   u32 n                                    layer sizes, input and output included, in [2, 10]
//   i32 sizes[n]                             784, the hidden widths, 10
//   per layer l = 0 .. n-2, with out = sizes[l+1], in = sizes[l]:
//     i8  weights[out * in]                  row-major (row i: output unit i), in [-127, 127]
//     f32 scales[out]                        per output unit (per channel): w ~ q * scale
//     f32 biases[out]
//   u64 FNV-1a of every byte before it
// Its size is known from the sizes alone (deployed_file_bytes), and a reader checks it before
// reading the weights.

inline constexpr std::string_view deployed_magic = "fmnist-deployed\n";
inline constexpr std::uint32_t deployed_version = 1;
inline constexpr std::size_t max_deployed_sizes = 10;  // --hidden allows at most 8 hidden layers

// An int8 per-channel MLP: the layers' int8 weights with their scales, and float biases.
struct int8_mlp {
  std::vector<int> sizes;                   // {784, hidden..., 10}
  std::vector<frugal::quantized_matrix> w;  // w[l]: sizes[l+1] x sizes[l], per_channel
  std::vector<Eigen::VectorXf> b;           // b[l]: sizes[l+1]
};

// The file's bytes besides the weights, scales and biases: magic, version, n, sizes, checksum.
[[nodiscard]] constexpr std::uint64_t deployed_file_overhead(std::size_t sizes) noexcept {
  return deployed_magic.size() + 2 * sizeof(std::uint32_t) + sizeof(std::int32_t) * sizes + sizeof(std::uint64_t);
}
// The whole file: the overhead plus what frugal's plan counts as the int8 model's bytes
// (mlp_shape::int8_bytes, per channel: a byte per weight, a float scale and a float bias per unit).
[[nodiscard]] inline std::uint64_t deployed_file_bytes(const std::vector<int>& sizes) {
  return deployed_file_overhead(sizes.size()) + frugal_shape(sizes).int8_bytes(frugal::quant_granularity::per_channel);
}
// The float model's bytes: float32 weights and biases (mlp_shape::float_bytes).
[[nodiscard]] inline std::uint64_t float_model_bytes(const std::vector<int>& sizes) {
  return frugal_shape(sizes).float_bytes();
}

// Writes `file` whole or not at all (frugal::io_error names it on failure).
inline void save_deployed(const std::filesystem::path& file, const int8_mlp& m) {
  frugal::write_file_atomically(file, [&](std::ostream& out) {
    detail::fnv1a hash;
    const auto put = [&](const void* p, std::size_t n) {
      hash.add(static_cast<const char*>(p), n);
      out.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
    };
    put(deployed_magic.data(), deployed_magic.size());
    const std::uint32_t version = deployed_version, n = static_cast<std::uint32_t>(m.sizes.size());
    put(&version, sizeof version);
    put(&n, sizeof n);
    for (const int s : m.sizes) {
      const std::int32_t v = s;
      put(&v, sizeof v);
    }
    for (std::size_t l = 0; l < m.w.size(); ++l) {
      const auto out_units = static_cast<std::size_t>(m.w[l].rows());
      put(m.w[l].values().data(), static_cast<std::size_t>(m.w[l].values().size()));
      put(m.w[l].scales().data(), sizeof(float) * out_units);
      put(m.b[l].data(), sizeof(float) * out_units);
    }
    const std::uint64_t h = hash.value();
    out.write(reinterpret_cast<const char*>(&h), sizeof h);
  });
}

// Reads and checks `file`: everything is checked (size, magic, version, sizes, checksum, values)
// before a model is returned. deploy_error names the file, the field and what is wrong.
[[nodiscard]] inline int8_mlp load_deployed(const std::filesystem::path& file) {
  const std::string name = file.string();
  const auto fail = [&](const std::string& field, const std::string& why) {
    return deploy_error("model '" + name + "': " + field + ": " + why);
  };
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) throw fail("file", ec ? ec.message() : "no such file");
  const std::uintmax_t size = std::filesystem::file_size(file, ec);
  if (ec) throw fail("file", ec.message());
  std::ifstream in(file, std::ios::binary);
  if (!in) throw fail("file", std::string("cannot open: ") + std::strerror(errno));
  detail::fnv1a hash;
  std::uintmax_t left = size;
  const auto get = [&](void* p, std::size_t n, const std::string& field) {
    if (n > left) throw fail(field, "the file is cut short (" + std::to_string(size) + " bytes)");
    in.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
    if (!in) throw fail(field, std::string("read error: ") + std::strerror(errno));
    hash.add(static_cast<const char*>(p), n);
    left -= n;
  };

  std::string magic(deployed_magic.size(), '\0');
  get(magic.data(), magic.size(), "format");
  if (magic != deployed_magic) throw fail("format", "not a deployed model of fashion_mnist (no 'fmnist-deployed' magic)");
  std::uint32_t version = 0, n = 0;
  get(&version, sizeof version, "version");
  if (version != deployed_version)
    throw fail("version", "is " + std::to_string(version) + ", this program reads " + std::to_string(deployed_version));
  get(&n, sizeof n, "layer count");
  if (n < 2 || n > max_deployed_sizes)
    throw fail("layer count", "is " + std::to_string(n) + ", expected 2 to " + std::to_string(max_deployed_sizes));
  int8_mlp m;
  for (std::uint32_t l = 0; l < n; ++l) {
    std::int32_t s = 0;
    get(&s, sizeof s, "layer sizes");
    if (s < 1 || s > 65536) throw fail("layer sizes", "size " + std::to_string(s) + " is outside [1, 65536]");
    m.sizes.push_back(s);
  }
  if (m.sizes.front() != static_cast<int>(image_side * image_side) || m.sizes.back() != classes)
    throw fail("layer sizes", shape_text(m.sizes) + " does not take " + std::to_string(image_side * image_side) +
                                  " pixels to " + std::to_string(classes) + " classes");
  // The size the sizes announce, before any weight is allocated: a file cut short or extended is
  // refused here, and nothing larger than the file is ever allocated.
  if (const std::uint64_t want = deployed_file_bytes(m.sizes); want != size)
    throw fail("size", "the file is " + std::to_string(size) + " bytes, a " + shape_text(m.sizes) + " model is " +
                           std::to_string(want) + " (cut short or extended)");
  std::vector<Eigen::VectorXf> scales;
  std::vector<frugal::quantized_matrix::values_type> values;
  for (std::size_t l = 0; l + 1 < m.sizes.size(); ++l) {
    const std::string layer = "layer " + std::to_string(l);
    values.emplace_back(m.sizes[l + 1], m.sizes[l]);
    get(values.back().data(), static_cast<std::size_t>(values.back().size()), layer + " weights");
    scales.emplace_back(m.sizes[l + 1]);
    get(scales.back().data(), sizeof(float) * static_cast<std::size_t>(m.sizes[l + 1]), layer + " scales");
    m.b.emplace_back(m.sizes[l + 1]);
    get(m.b.back().data(), sizeof(float) * static_cast<std::size_t>(m.sizes[l + 1]), layer + " biases");
  }
  std::uint64_t stored = 0;
  in.read(reinterpret_cast<char*>(&stored), sizeof stored);
  if (!in) throw fail("checksum", std::string("read error: ") + std::strerror(errno));
  if (stored != hash.value()) throw fail("checksum", "the contents do not match their FNV-1a checksum (altered)");
  // The checksum holds, so these can only fail for a file written by another program.
  for (std::size_t l = 0; l < values.size(); ++l) {
    const std::string layer = "layer " + std::to_string(l);
    for (Eigen::Index i = 0; i < values[l].size(); ++i)
      if (values[l].data()[i] < -frugal::quant_max)
        throw fail(layer + " weights", "value -128 at " + std::to_string(i) + "; int8 weights are in [-127, 127]");
    for (Eigen::Index i = 0; i < scales[l].size(); ++i)
      if (!(std::isfinite(scales[l](i)) && scales[l](i) >= 0))
        throw fail(layer + " scales", "scale " + std::to_string(i) + " is not finite and >= 0");
    if (!m.b[l].allFinite()) throw fail(layer + " biases", "not all finite");
    m.w.emplace_back(std::move(values[l]), std::move(scales[l]), frugal::quant_granularity::per_channel);
  }
  return m;
}

// ---- inference: the same code measures the deployed model here and in classify.cpp ------------

// The int8 product's mode, fixed rather than `automatic`: int32_accumulate is the real int8
// arithmetic (int8 x int8 products summed exactly in int32), its FLOPs per sample do not depend
// on how many images a call takes (dequantize charges m*k per call from 4 columns on), and each
// image's result depends on that image alone (its own input scale, exact integer sums), so any
// chunking -- and any build flags -- give the same predictions.
inline constexpr frugal::quantized_product_mode deployed_product = frugal::quantized_product_mode::int32_accumulate;

// Images per call: large enough for the float GEMM to run at full speed.
inline constexpr Eigen::Index inference_chunk = 512;

// FLOPs per sample of classifying with the float model and with the int8 one, exactly as the
// ops charge them in classify_images (the same terms in the same order): the pixels scaled to
// [0, 1], every layer (dense_forward, or quantized_forward in deployed_product's mode), a ReLU
// after every hidden layer, the arg max over the classes.
[[nodiscard]] inline std::uint64_t float_inference_flops(const std::vector<int>& sizes) {
  const frugal::mlp_shape shape = frugal_shape(sizes);
  std::uint64_t f = flop::elementwise(shape.widths().front());
  for (std::size_t l = 0; l < shape.layers(); ++l) {
    f += shape.layer(l).forward_flops(1);
    if (l + 1 < shape.layers()) f += frugal::relu_flops(shape.layer(l).out);
  }
  return f + flop::argmax(shape.widths().back(), 1);
}
[[nodiscard]] inline std::uint64_t int8_inference_flops(const std::vector<int>& sizes) {
  const frugal::mlp_shape shape = frugal_shape(sizes);
  std::uint64_t f = flop::elementwise(shape.widths().front());
  for (std::size_t l = 0; l < shape.layers(); ++l) {
    const frugal::dense_shape s = shape.layer(l);
    f += frugal::quantized_product_flops(s.out, 1, s.in, deployed_product) + s.out;  // + the bias
    if (l + 1 < shape.layers()) f += frugal::relu_flops(s.out);
  }
  return f + flop::argmax(shape.widths().back(), 1);
}

// A classification of a whole image set, measured.
struct inference_result {
  std::size_t images = 0;
  std::int64_t correct = 0;
  double accuracy = 0;
  double flops = 0;    // counted by frugal over every image
  double seconds = 0;  // steady_clock around the classification, on the calling thread only
  [[nodiscard]] double flops_per_sample() const noexcept { return images ? flops / static_cast<double>(images) : 0; }
  [[nodiscard]] double seconds_per_sample() const noexcept {
    return images ? seconds / static_cast<double>(images) : 0;
  }
};

// Classifies every image, `layer(l, in, out)` computing layer l's pre-activation; a ReLU follows
// every hidden layer, the prediction is the arg max of the logits (the first of equal ones, as
// in training). One thread: the calling one (no oneTBB here; Eigen is not built with OpenMP).
template <class Layer>
[[nodiscard]] inference_result classify_images(const image_set& images, const std::vector<std::uint8_t>& labels,
                                               std::size_t layers, const Layer& layer) {
  const auto pixels = static_cast<Eigen::Index>(images.pixels_per_image());
  frugal::budget meter{"inference"};
  Eigen::MatrixXf x(pixels, inference_chunk);
  Eigen::MatrixXf h[2];
  inference_result r;
  r.images = images.count;
  const auto start = std::chrono::steady_clock::now();
  {
    frugal::scope s{meter, "classify"};
    for (std::size_t at = 0; at < images.count; at += static_cast<std::size_t>(inference_chunk)) {
      const auto n = static_cast<Eigen::Index>(std::min<std::size_t>(static_cast<std::size_t>(inference_chunk),
                                                                     images.count - at));
      for (Eigen::Index j = 0; j < n; ++j) {  // as load_batch scales them for training
        const std::uint8_t* src = images.pixels.data() + (at + static_cast<std::size_t>(j)) * images.pixels_per_image();
        x.col(j) = Eigen::Map<const Eigen::Matrix<std::uint8_t, Eigen::Dynamic, 1>>(src, pixels).cast<float>() *
                   (1.0f / 255.0f);
      }
      flop::count(flop::elementwise(static_cast<std::uint64_t>(pixels * n)));
      for (std::size_t l = 0; l < layers; ++l) {
        Eigen::MatrixXf& out = h[l % 2];
        if (l == 0)
          layer(l, x.leftCols(n), out);
        else
          layer(l, h[(l - 1) % 2], out);
        if (l + 1 < layers) frugal::relu(out, out);
      }
      const Eigen::MatrixXf& logits = h[(layers - 1) % 2];
      for (Eigen::Index j = 0; j < n; ++j) {
        Eigen::Index predicted = 0;
        logits.col(j).maxCoeff(&predicted);
        r.correct += predicted == labels[at + static_cast<std::size_t>(j)] ? 1 : 0;
      }
      flop::count(flop::argmax(static_cast<std::uint64_t>(logits.rows()), static_cast<std::uint64_t>(n)));
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.flops = meter.used(frugal::resource::flops);
  r.accuracy = r.images ? static_cast<double>(r.correct) / static_cast<double>(r.images) : 0;
  return r;
}

// The float model (dense_forward) and the deployed one (quantized_forward, int32 accumulation).
[[nodiscard]] inline inference_result classify_float(const mlp& model, const image_set& images,
                                                     const std::vector<std::uint8_t>& labels) {
  const parameters& p = model.params();
  return classify_images(images, labels, model.layers(), [&](std::size_t l, const auto& in, Eigen::MatrixXf& out) {
    frugal::dense_forward(p.w[l], p.b[l], in, out);
  });
}
[[nodiscard]] inline inference_result classify_int8(const int8_mlp& m, const image_set& images,
                                                    const std::vector<std::uint8_t>& labels) {
  return classify_images(images, labels, m.w.size(), [&](std::size_t l, const auto& in, Eigen::MatrixXf& out) {
    frugal::quantized_forward(m.w[l], m.b[l], in, out, deployed_product);
  });
}

// ---- the plan and its application ---------------------------------------------------------

struct deploy_plan {
  std::size_t hidden = 1;   // the hidden layer pruned (an index into sizes)
  int units_before = 0;
  int bytes_units = 0;      // the widest the model_bytes limit allows (0: none does)
  int flops_units = 0;      // the widest the inference_flops limit allows (0: none does)
  int units_after = 0;      // the narrower of the two; 1 when even that does not fit
  std::vector<int> sizes;   // the deployed model's
  bool fits = false;
  std::uint64_t bytes = 0;  // the deployed file, predicted (deployed_file_bytes)
  std::uint64_t flops = 0;  // per sample, predicted (int8_inference_flops)
  std::string bytes_plan;   // frugal::plan_for_bytes's words ("" without a model_bytes limit)
};

[[nodiscard]] inline deploy_plan plan_deployment(const std::vector<int>& sizes, const deploy_limits& limits) {
  deploy_plan p;
  const int width = sizes[p.hidden];
  p.units_before = width;
  const auto with_width = [&](int units) {
    std::vector<int> s = sizes;
    s[p.hidden] = units;
    return s;
  };
  p.bytes_units = width;
  if (limits.model_bytes) {
    // frugal's plan on the payload: the limit less the format's fixed bytes.
    const auto overhead = deployed_file_overhead(sizes.size());
    const double target = *limits.model_bytes > overhead ? static_cast<double>(*limits.model_bytes - overhead) : 0.0;
    frugal::bytes_options o;
    o.granularity = frugal::quant_granularity::per_channel;
    const frugal::bytes_plan b = frugal::plan_for_bytes(frugal_shape(sizes), p.hidden, target, o);
    p.bytes_units = b.fits ? static_cast<int>(b.units_after) : 0;
    p.bytes_plan = b.message;
  }
  p.flops_units = width;
  if (limits.inference_flops) {
    // The int8 model's own count, one width at a time from the widest (a formula: microseconds).
    p.flops_units = 0;
    for (int u = width; u >= 1 && p.flops_units == 0; --u)
      if (int8_inference_flops(with_width(u)) <= *limits.inference_flops) p.flops_units = u;
  }
  p.fits = p.bytes_units >= 1 && p.flops_units >= 1;
  p.units_after = p.fits ? std::min(p.bytes_units, p.flops_units) : 1;
  p.sizes = with_width(p.units_after);
  p.bytes = deployed_file_bytes(p.sizes);
  p.flops = int8_inference_flops(p.sizes);
  return p;
}

// A copy of the trained model, pruned and quantized as planned (the trained model is unchanged).
[[nodiscard]] inline int8_mlp compress(const mlp& model, const deploy_plan& plan) {
  parameters p = model.params();
  if (plan.units_after < plan.units_before) {
    const std::size_t h = plan.hidden;
    p.keep_units(h, frugal::select_units_to_remove(frugal::hidden_unit_scores(p.w[h - 1], p.b[h - 1], p.w[h]),
                                                   plan.units_before - plan.units_after));
  }
  int8_mlp m;
  m.sizes = plan.sizes;
  for (std::size_t l = 0; l < p.w.size(); ++l) {
    m.w.push_back(frugal::quantize(p.w[l], frugal::quant_granularity::per_channel));
    m.b.push_back(p.b[l]);
  }
  return m;
}

// ---- the deployment step of the main job ------------------------------------------------------

struct deployment {
  deploy_limits limits;
  std::string limits_text;        // canonical: "model_bytes=65536,inference_flops=100000"
  deploy_plan plan;
  std::vector<int> float_sizes;
  std::uint64_t float_bytes = 0;  // float32 weights and biases
  inference_result float_result;
  bool deployed = false;          // a model was saved (the plan fits)
  std::filesystem::path file;     // OUT/model.deployed
  std::uint64_t deployed_bytes = 0;  // the file's size, read back from the file system
  inference_result deployed_result;  // of the model read back from the file
};

[[nodiscard]] inline std::string deploy_limits_text(const deploy_limits& l) {
  std::string t;
  if (l.model_bytes) t = "model_bytes=" + std::to_string(*l.model_bytes);
  if (l.inference_flops) t += (t.empty() ? "" : ",") + std::string("inference_flops=") + std::to_string(*l.inference_flops);
  return t;
}

// Plans, compresses, saves OUT/model.deployed, reads it back and measures it (the float model too,
// by the same code). A plan that does not fit deploys nothing and removes an older run's
// model.deployed (it would be taken for this run's). Throws frugal::io_error when the file cannot
// be written, deploy_error when it does not read back.
[[nodiscard]] inline deployment deploy(const mlp& model, const image_set& images,
                                       const std::vector<std::uint8_t>& labels, const deploy_limits& limits,
                                       const std::filesystem::path& out_dir) {
  deployment d;
  d.limits = limits;
  d.limits_text = deploy_limits_text(limits);
  d.float_sizes = model.sizes();
  d.float_bytes = float_model_bytes(model.sizes());
  d.float_result = classify_float(model, images, labels);
  d.plan = plan_deployment(model.sizes(), limits);
  d.file = out_dir / "model.deployed";
  if (!d.plan.fits) {
    std::error_code ec;
    std::filesystem::remove(d.file, ec);
    return d;
  }
  save_deployed(d.file, compress(model, d.plan));
  const int8_mlp saved = load_deployed(d.file);  // what is measured is what was saved
  d.deployed = true;
  d.deployed_bytes = static_cast<std::uint64_t>(std::filesystem::file_size(d.file));
  d.deployed_result = classify_int8(saved, images, labels);
  return d;
}

// The report on stdout: the float model, the deployed one, what was done, and the limits.
inline void print_deployment(std::FILE* out, const deployment& d) {
  const auto model_line = [&](const char* what, const std::vector<int>& sizes, std::uint64_t bytes, const char* form,
                              const inference_result& r) {
    std::fprintf(out, "  %s %s, %llu B (%s), %s FLOPs/sample, %.2f us/sample, accuracy %.4f", what,
                 shape_text(sizes).c_str(), static_cast<unsigned long long>(bytes), form,
                 frugal::detail::units_impl::shortest(r.flops_per_sample()).c_str(), r.seconds_per_sample() * 1e6,
                 r.accuracy);
  };
  std::fprintf(out, "deploy: %s (the test set, %zu images, one thread)\n", d.limits_text.c_str(), d.float_result.images);
  model_line("float:   ", d.float_sizes, d.float_bytes, "float32", d.float_result);
  std::fprintf(out, "\n");
  const deploy_plan& p = d.plan;
  if (!d.deployed) {
    std::string failed;
    if (p.bytes_units < 1) failed = "model_bytes=" + std::to_string(*d.limits.model_bytes);
    if (p.flops_units < 1)
      failed += (failed.empty() ? "" : " and ") + std::string("inference_flops=") + std::to_string(*d.limits.inference_flops);
    std::fprintf(out,
                 "  not deployed: %s cannot be met: the smallest model, %s int8 per-channel (hidden layer %zu at 1 "
                 "unit), is %llu B and %llu FLOPs/sample\n",
                 failed.c_str(), shape_text(p.sizes).c_str(), p.hidden, static_cast<unsigned long long>(p.bytes),
                 static_cast<unsigned long long>(p.flops));
    return;
  }
  model_line("deployed:", p.sizes, d.deployed_bytes, "int8, as saved", d.deployed_result);
  std::fprintf(out, " (%+.2f points)\n", (d.deployed_result.accuracy - d.float_result.accuracy) * 100);
  std::string done = "int8 per-channel weights, float biases";
  if (p.units_after < p.units_before) {
    done += "; hidden layer " + std::to_string(p.hidden) + " " + std::to_string(p.units_before) + " -> " +
            std::to_string(p.units_after) + " units (smallest L2 norm first; ";
    std::string allows;
    if (d.limits.model_bytes) allows = "model_bytes allows " + std::to_string(p.bytes_units);
    if (d.limits.inference_flops)
      allows += (allows.empty() ? "" : ", ") + std::string("inference_flops ") + std::to_string(p.flops_units);
    done += allows + ")";
  } else {
    done += "; no pruning";
  }
  std::fprintf(out, "  done:     %s\n", done.c_str());
  std::string fits;
  if (d.limits.model_bytes)
    fits = "model_bytes " + std::to_string(d.deployed_bytes) + " <= " + std::to_string(*d.limits.model_bytes) + " B: " +
           (d.deployed_bytes <= *d.limits.model_bytes ? "yes" : "NO");
  if (d.limits.inference_flops)
    fits += (fits.empty() ? "" : "; ") + std::string("inference_flops ") +
            frugal::detail::units_impl::shortest(d.deployed_result.flops_per_sample()) + " <= " +
            std::to_string(*d.limits.inference_flops) + ": " +
            (d.deployed_result.flops_per_sample() <= static_cast<double>(*d.limits.inference_flops) ? "yes" : "NO");
  std::fprintf(out, "  fits:     %s\n", fits.c_str());
  std::fprintf(out, "  saved:    %s\n", d.file.string().c_str());
}

// deploy.json: the same, for scripts (deploy_table.sh).
inline void write_deployment_json(std::ostream& o, const deployment& d) {
  frugal::detail::json_writer j(o);
  const auto sizes = [&](const std::vector<int>& s) {
    j.begin_array();
    for (const int x : s) j.value(x);
    j.end_array();
  };
  const auto result = [&](const inference_result& r) {
    j.member("images", static_cast<std::uint64_t>(r.images)).member("correct", r.correct).member("accuracy", r.accuracy);
    j.member("flops", r.flops).member("flops_per_sample", r.flops_per_sample());
    j.member("seconds", r.seconds).member("seconds_per_sample", r.seconds_per_sample());
  };
  j.begin_object();
  j.key("limits").begin_object();
  if (d.limits.model_bytes) j.member("model_bytes", *d.limits.model_bytes);
  if (d.limits.inference_flops) j.member("inference_flops", *d.limits.inference_flops);
  j.end_object();
  j.member("int8_mac", "charged to flops: 2 FLOPs, like a float multiply-add (frugal::quantized_product_flops)");
  j.key("float").begin_object();
  j.key("sizes");
  sizes(d.float_sizes);
  j.member("bytes", d.float_bytes);
  result(d.float_result);
  j.end_object();
  const deploy_plan& p = d.plan;
  j.key("plan").begin_object();
  j.member("hidden_layer", static_cast<std::uint64_t>(p.hidden)).member("units_before", p.units_before);
  if (d.limits.model_bytes) j.member("bytes_units", p.bytes_units).member("bytes_plan", p.bytes_plan);
  if (d.limits.inference_flops) j.member("flops_units", p.flops_units);
  j.member("units_after", p.units_after).member("fits", p.fits);
  j.key("sizes");
  sizes(p.sizes);
  j.member("predicted_bytes", p.bytes).member("predicted_flops_per_sample", p.flops);
  j.end_object();
  j.key("deployed");
  if (!d.deployed) {
    j.null();
  } else {
    j.begin_object();
    j.member("file", d.file.filename().string()).member("quantization", "int8 per-channel");
    j.key("sizes");
    sizes(p.sizes);
    j.member("bytes", d.deployed_bytes);
    result(d.deployed_result);
    j.end_object();
  }
  j.end_object();
  o << '\n';
}

}  // namespace fmnist
