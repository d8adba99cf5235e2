// What the example saves beside frugal's state document (state.json) so that a stopped run can
// go on in a new process (--checkpoint DIR, --resume): the model's weights, the optimizer's
// moments and step count, an accumulation's pending gradient, the epoch's shuffled order, the
// shuffling generator, where in its epoch the loop stopped, and what the report needs (the rows
// of epochs.csv, the counters).
//
// One file per save, DIR/model-<steps>.bin, <steps> being the controller's step count that the
// state.json saved with it records: the model file is written first, then state.json, then the
// older model files are removed -- a kill anywhere in between leaves a state.json whose model
// file exists. Each file is written whole or not at all (frugal::write_file_atomically).
//
// Layout (native byte order: a checkpoint is for this machine's next process, not an exchange
// format): "fmnist-checkpoint\n", a u32 version, the fields in the order of save_checkpoint, and
// a u64 FNV-1a hash of everything before it. A file that is cut short, altered, of another
// version, or of another model or optimizer is refused with a checkpoint_error naming the file
// and the field.
#pragma once

#include "fnv1a.hpp"
#include "idx.hpp"
#include "mlp.hpp"
#include "trainer.hpp"

#include <frugal/durable_file.hpp>
#include <frugal/eigen/quantize.hpp>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace fmnist {

class checkpoint_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One row of epochs.csv: an evaluation.
struct epoch_row {
  int epoch = 0;
  double wall_s = 0;
  double fraction_used = 0;
  double flops = 0;
  int batch = 0;
  float lr = 0;
  double train_loss = 0;
  double val_loss = 0;
  double val_accuracy = 0;
  double test_accuracy = 0;
  std::uint64_t parameters = 0;  // the model's, narrower after a pruning
  std::uint64_t step_flops = 0;  // a step of the run's batch, as the ops charge it
};

// Where the training loop is, and what it has gathered for the report.
struct training_progress {
  int epoch = 1;                 // the epoch under way, or the next one when start == 0
  std::uint64_t start = 0;       // samples of `epoch` done; 0: not begun (its order is shuffled then)
  std::uint64_t accumulated = 0; // samples in the trainer's pending gradient
  std::int64_t total_steps = 0;
  std::uint64_t smallest_batch = 0;
  double train_peak = 0;         // the highest heap level of the steps
  double eval_peak = 0;          // and of the evaluations
  float lr = 0;
  double loss_sum = 0;           // training loss and accuracy since the last evaluation
  std::int64_t correct = 0;
  std::uint64_t seen = 0;
  std::optional<evaluation> last_test;
  std::vector<epoch_row> rows;
};

inline constexpr std::string_view checkpoint_magic = "fmnist-checkpoint\n";
// 2: epoch_row has parameters and step_flops; 3: the layers --quantize froze, as int8.
inline constexpr std::uint32_t checkpoint_version = 3;

[[nodiscard]] inline std::filesystem::path checkpoint_file(const std::filesystem::path& dir, std::uint64_t steps) {
  return dir / ("model-" + std::to_string(steps) + ".bin");
}

namespace detail {

// Streams straight into the file (no copy of the weights in memory: under a peak_bytes limit a
// save must not raise the heap by the model's size).
class checkpoint_writer {
 public:
  explicit checkpoint_writer(std::ostream& out) : out_(out) { bytes(checkpoint_magic.data(), checkpoint_magic.size()); }
  template <class T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void put_text(std::string_view s) {
    put<std::uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void put(const parameters& p) {
    for (std::size_t l = 0; l < p.w.size(); ++l) {
      floats(p.w[l].data(), p.w[l].size());
      floats(p.b[l].data(), p.b[l].size());
    }
  }
  void put_bytes(const std::int8_t* p, std::size_t n) { bytes(reinterpret_cast<const char*>(p), n); }
  void put_floats(const float* p, Eigen::Index n) { floats(p, n); }
  void finish() {
    const std::uint64_t h = hash_.value();
    out_.write(reinterpret_cast<const char*>(&h), sizeof h);
  }

 private:
  void floats(const float* p, Eigen::Index n) { bytes(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n) * sizeof(float)); }
  void bytes(const char* p, std::size_t n) {
    hash_.add(p, n);
    out_.write(p, static_cast<std::streamsize>(n));
  }
  std::ostream& out_;
  fnv1a hash_;
};

class checkpoint_reader {
 public:
  checkpoint_reader(std::istream& in, std::uint64_t size, std::string file) : in_(in), file_(std::move(file)) {
    if (size < checkpoint_magic.size() + sizeof(std::uint64_t)) fail("format", "the file is cut short");
    left_ = size - sizeof(std::uint64_t);
    std::string magic(checkpoint_magic.size(), '\0');
    bytes(magic.data(), magic.size(), "format");
    if (magic != checkpoint_magic) fail("format", "not a checkpoint of this example");
  }
  template <class T>
  [[nodiscard]] T get(const char* field) {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    bytes(reinterpret_cast<char*>(&v), sizeof v, field);
    return v;
  }
  [[nodiscard]] std::string get_text(const char* field) {
    const auto n = get<std::uint64_t>(field);
    if (n > left_) fail(field, "the file is cut short");
    std::string s(static_cast<std::size_t>(n), '\0');
    bytes(s.data(), s.size(), field);
    return s;
  }
  void get(parameters& p, const char* what) {
    for (std::size_t l = 0; l < p.w.size(); ++l) {
      floats(p.w[l].data(), p.w[l].size(), std::string(what) + " (layer " + std::to_string(l) + " weights)");
      floats(p.b[l].data(), p.b[l].size(), std::string(what) + " (layer " + std::to_string(l) + " biases)");
    }
  }
  void get_bytes(std::int8_t* p, std::size_t n, const std::string& field) {
    bytes(reinterpret_cast<char*>(p), n, field.c_str());
  }
  void get_floats(float* p, Eigen::Index n, const std::string& field) { floats(p, n, field); }
  // After the last field: nothing but the hash left, and the hash right.
  void finish() {
    if (left_ != 0) fail("end", std::to_string(left_) + " bytes after the last field");
    std::uint64_t stored = 0;
    in_.read(reinterpret_cast<char*>(&stored), sizeof stored);
    if (!in_) fail("hash", "the file is cut short");
    if (stored != hash_.value()) fail("hash", "the contents do not match their hash (cut short or altered)");
  }
  [[noreturn]] void fail(const std::string& field, const std::string& why) const {
    throw checkpoint_error("checkpoint '" + file_ + "': " + field + ": " + why);
  }

 private:
  void floats(float* p, Eigen::Index n, const std::string& field) {
    bytes(reinterpret_cast<char*>(p), static_cast<std::size_t>(n) * sizeof(float), field.c_str());
  }
  void bytes(char* p, std::size_t n, const char* field) {
    if (n > left_) fail(field, "the file is cut short");
    in_.read(p, static_cast<std::streamsize>(n));
    if (!in_) fail(field, std::string("read error: ") + std::strerror(errno));
    hash_.add(p, n);
    left_ -= n;
  }
  std::istream& in_;
  std::string file_;
  std::uint64_t left_ = 0;  // bytes before the hash not yet read
  fnv1a hash_;
};

}  // namespace detail

// Writes DIR/model-<steps>.bin whole or not at all; frugal::io_error names the file on failure.
inline void save_checkpoint(const std::filesystem::path& dir, std::uint64_t steps, const mlp& model, optimizer& opt,
                            const trainer& tr, const std::vector<std::uint32_t>& order, const std::mt19937_64& rng,
                            const training_progress& p) {
  frugal::write_file_atomically(checkpoint_file(dir, steps), [&](std::ostream& out) {
  detail::checkpoint_writer w(out);
  w.put(checkpoint_version);
  w.put(steps);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(model.sizes().size()));
  for (const int s : model.sizes()) w.put<std::int32_t>(s);
  w.put<std::uint8_t>(opt.kind() == optimizer_kind::sgd ? 0 : 1);
  w.put(model.params());
  // The frozen layers' int8 weights and scales as they are (their floats above are q * s: a
  // quantization of those could differ from these in a scale's last bit).
  w.put<std::uint32_t>(static_cast<std::uint32_t>(model.frozen_layers()));
  for (std::size_t l = 0; l < model.frozen_layers(); ++l) {
    const frugal::quantized_matrix& q = model.int8_weights(l);
    w.put<std::uint8_t>(q.granularity() == frugal::quant_granularity::per_channel ? 1 : 0);
    w.put_bytes(q.values().data(), static_cast<std::size_t>(q.values().size()));
    w.put_floats(q.scales().data(), q.scales().size());
  }
  w.put(opt.first_moment());
  w.put(opt.second_moment());
  w.put<std::int64_t>(opt.steps_taken());
  const parameters* pending = tr.pending_gradient();
  w.put<std::uint8_t>(pending ? 1 : 0);
  if (pending) w.put(*pending);
  w.put<std::uint64_t>(order.size());
  for (const std::uint32_t i : order) w.put(i);
  std::ostringstream rng_text;
  rng_text << rng;
  w.put_text(rng_text.str());
  w.put<std::int32_t>(p.epoch);
  w.put(p.start);
  w.put(p.accumulated);
  w.put(p.total_steps);
  w.put(p.smallest_batch);
  w.put(p.train_peak);
  w.put(p.eval_peak);
  w.put(p.lr);
  w.put(p.loss_sum);
  w.put(p.correct);
  w.put(p.seen);
  w.put<std::uint8_t>(p.last_test ? 1 : 0);
  if (p.last_test) {
    w.put(p.last_test->loss);
    w.put(p.last_test->accuracy);
    w.put<std::uint64_t>(p.last_test->samples);
  }
  w.put<std::uint64_t>(p.rows.size());
  for (const epoch_row& r : p.rows) w.put(r);
  w.finish();
  });
}

// Reads DIR/model-<steps>.bin into the model, optimizer, trainer, order, generator and progress,
// all or nothing: everything is read and checked before anything is changed.
// `pruned`: the run prunes (--prune), so the saved model may be narrower than the one built from
// --hidden (the same layers, each hidden one at most as wide): the model, optimizer and trainer
// then take the saved shape. `quantized`: the run quantizes (--quantize), so the saved model may
// have frozen int8 layers (at most `quantized_layers`).
inline void load_checkpoint(const std::filesystem::path& dir, std::uint64_t steps, mlp& model, optimizer& opt,
                            trainer& tr, std::vector<std::uint32_t>& order, std::mt19937_64& rng,
                            training_progress& p, bool pruned, std::size_t quantized_layers) {
  const std::filesystem::path file = checkpoint_file(dir, steps);
  std::ifstream in(file, std::ios::binary);
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(file, ec);
  if (!in || ec)
    throw checkpoint_error("checkpoint '" + file.string() + "': cannot open: " + std::strerror(errno) +
                           " (state.json names step " + std::to_string(steps) + ")");
  detail::checkpoint_reader r(in, size, file.string());

  if (const auto v = r.get<std::uint32_t>("version"); v != checkpoint_version)
    r.fail("version", "is " + std::to_string(v) + ", this program reads " + std::to_string(checkpoint_version));
  if (const auto s = r.get<std::uint64_t>("steps"); s != steps)
    r.fail("steps", "is " + std::to_string(s) + ", state.json says " + std::to_string(steps));
  const auto layers = r.get<std::uint32_t>("layer count");
  std::vector<int> sizes;
  for (std::uint32_t l = 0; l < layers && l < 64; ++l) sizes.push_back(r.get<std::int32_t>("layer sizes"));
  const std::vector<int>& built = model.sizes();
  const auto narrower = [&] {  // the same network with hidden layers pruned
    if (sizes.size() != built.size() || sizes.front() != built.front() || sizes.back() != built.back()) return false;
    for (std::size_t l = 1; l + 1 < sizes.size(); ++l)
      if (sizes[l] < 1 || sizes[l] > built[l]) return false;
    return true;
  };
  if (sizes != built && !(pruned && narrower()))
    r.fail("layer sizes", "the saved model is " + shape_text(sizes) + ", this run's is " + shape_text(built) +
                              (narrower() ? " (a pruned run: resume with --prune)"
                                          : " (resume with the --hidden it was trained with)"));
  const auto kind = r.get<std::uint8_t>("optimizer") == 0 ? optimizer_kind::sgd : optimizer_kind::adam;
  if (kind != opt.kind())
    r.fail("optimizer", std::string("the saved run used ") + (kind == optimizer_kind::sgd ? "sgd" : "adam") +
                            " (resume with the --optimizer it was trained with)");
  parameters weights(sizes), m(sizes), v(sizes);
  r.get(weights, "weights");
  const auto frozen = r.get<std::uint32_t>("frozen layers");
  if (frozen > quantized_layers)
    r.fail("frozen layers", "the saved run froze " + std::to_string(frozen) + " layer(s) as int8" +
                                (quantized_layers == 0 ? " (resume with --quantize)"
                                                       : ", this one freezes at most " + std::to_string(quantized_layers) +
                                                             " (resume with the --quantize-layers it was trained with)"));
  std::vector<frugal::quantized_matrix> int8;
  for (std::uint32_t l = 0; l < frozen; ++l) {
    const std::string field = "frozen layer " + std::to_string(l);
    const auto granularity = r.get<std::uint8_t>(field.c_str()) == 1 ? frugal::quant_granularity::per_channel
                                                                     : frugal::quant_granularity::per_tensor;
    frugal::quantized_matrix::values_type values(sizes[l + 1], sizes[l]);
    Eigen::VectorXf scales(granularity == frugal::quant_granularity::per_channel ? sizes[l + 1] : 1);
    r.get_bytes(values.data(), static_cast<std::size_t>(values.size()), field + " int8 weights");
    r.get_floats(scales.data(), scales.size(), field + " scales");
    try {
      int8.emplace_back(std::move(values), std::move(scales), granularity);
    } catch (const std::invalid_argument& e) {
      r.fail(field, e.what());
    }
  }
  r.get(m, "first moment");
  r.get(v, "second moment");
  const auto t = r.get<std::int64_t>("optimizer steps");
  std::optional<parameters> pending;
  if (r.get<std::uint8_t>("pending gradient") != 0) {
    pending.emplace(sizes);
    r.get(*pending, "pending gradient");
  }
  const auto n = r.get<std::uint64_t>("order size");
  if (n != order.size())
    r.fail("order size", "the saved run trained on " + std::to_string(n) + " images, this one on " +
                             std::to_string(order.size()) + " (resume with the --data it was trained with)");
  std::vector<std::uint32_t> saved_order(order.size());
  for (auto& i : saved_order) {
    i = r.get<std::uint32_t>("order");
    if (i >= order.size()) r.fail("order", "index " + std::to_string(i) + " out of range");
  }
  std::mt19937_64 saved_rng;
  {
    std::istringstream text(r.get_text("shuffle generator"));
    text >> saved_rng;
    if (!text) r.fail("shuffle generator", "not a generator's state");
  }
  training_progress q;
  q.epoch = r.get<std::int32_t>("epoch");
  q.start = r.get<std::uint64_t>("start");
  q.accumulated = r.get<std::uint64_t>("accumulated");
  q.total_steps = r.get<std::int64_t>("total steps");
  q.smallest_batch = r.get<std::uint64_t>("smallest batch");
  q.train_peak = r.get<double>("train peak");
  q.eval_peak = r.get<double>("eval peak");
  q.lr = r.get<float>("lr");
  q.loss_sum = r.get<double>("loss sum");
  q.correct = r.get<std::int64_t>("correct");
  q.seen = r.get<std::uint64_t>("seen");
  if (q.epoch < 1) r.fail("epoch", "is " + std::to_string(q.epoch) + ", expected >= 1");
  if (q.start > order.size()) r.fail("start", "is " + std::to_string(q.start) + ", past the epoch's end");
  if (r.get<std::uint8_t>("last test") != 0) {
    evaluation e;
    e.loss = r.get<double>("last test loss");
    e.accuracy = r.get<double>("last test accuracy");
    e.samples = static_cast<std::size_t>(r.get<std::uint64_t>("last test samples"));
    q.last_test = e;
  }
  const auto rows = r.get<std::uint64_t>("rows");
  for (std::uint64_t i = 0; i < rows; ++i) q.rows.push_back(r.get<epoch_row>("rows"));
  r.finish();

  // All read and checked: now applied, into the existing matrices when the shapes are the same
  // (nothing that refers to them moves); a pruned model's shapes replace the built ones.
  if (sizes != built) {
    model.replace(sizes, std::move(weights));
    opt.first_moment() = std::move(m);
    opt.second_moment() = std::move(v);
    tr.follow_model();
  } else {
    auto assign = [](parameters& to, const parameters& from) {
      for (std::size_t l = 0; l < to.w.size(); ++l) {
        to.w[l] = from.w[l];
        to.b[l] = from.b[l];
      }
    };
    assign(model.params(), weights);
    assign(opt.first_moment(), m);
    assign(opt.second_moment(), v);
  }
  model.restore_int8(std::move(int8));
  opt.steps_taken() = t;
  if (pending) tr.restore_pending_gradient() = std::move(*pending);  // the trainer's store has its shape
  order = std::move(saved_order);
  rng = saved_rng;
  p = std::move(q);
}

// Removes DIR's model files other than the one of `keep_steps` (after state.json names it).
inline void remove_older_checkpoints(const std::filesystem::path& dir, std::uint64_t keep_steps) {
  const std::string keep = checkpoint_file(dir, keep_steps).filename().string();
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("model-", 0) == 0 && name.size() > 10 && name.compare(name.size() - 4, 4, ".bin") == 0 && name != keep)
      std::filesystem::remove(entry.path(), ec);
  }
}

}  // namespace fmnist
