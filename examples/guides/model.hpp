// The data and the model every guide trains, kept out of the guides so that they show frugal and
// nothing else: a slice of Fashion-MNIST as Eigen matrices, and a 784-H-10 MLP (ReLU, softmax
// cross-entropy, plain SGD) written with frugal's counted Eigen ops, so each step charges its
// FLOPs to the scope open around it. Swap in your own model: nothing in frugal depends on this.
#pragma once

#include "../fashion_mnist/idx.hpp"  // the Fashion-MNIST reader of the main job (gzip IDX files)

#include <frugal/durable_file.hpp>
#include <frugal/eigen/ops.hpp>
#include <frugal/eigen/structured_prune.hpp>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace guide {

// Images as columns (784 x n, pixels scaled to [0, 1]), and their labels 0..9.
struct split {
  Eigen::MatrixXf x;
  Eigen::VectorXi y;
  [[nodiscard]] Eigen::Index size() const { return x.cols(); }
};

struct data {
  split train, val, test;
};

// The first `train` images of Fashion-MNIST's training file to train on, the next `val` to
// validate on, and the first `test` of its test file (a file is read only if needed). Exits
// with "SKIPPED: ..." when the data are not installed (the guides' tests then skip); the
// directory is $FASHION_MNIST_DIR, else Debian's (package dataset-fashion-mnist).
[[nodiscard]] inline data load_fashion_mnist(Eigen::Index train, Eigen::Index val, Eigen::Index test) {
  const char* env = std::getenv("FASHION_MNIST_DIR");
  const std::filesystem::path dir = env ? env : fmnist::default_data_dir;
  auto take = [](const fmnist::image_set& images, const std::vector<std::uint8_t>& labels, Eigen::Index first,
                 Eigen::Index n) {
    const Eigen::Index pixels = static_cast<Eigen::Index>(images.pixels_per_image());
    if (first + n > static_cast<Eigen::Index>(labels.size())) throw fmnist::data_error("fewer images than asked for");
    split s;
    s.x.resize(pixels, n);
    s.y.resize(n);
    for (Eigen::Index j = 0; j < n; ++j) {
      for (Eigen::Index i = 0; i < pixels; ++i)
        s.x(i, j) = images.pixels[static_cast<std::size_t>((first + j) * pixels + i)] / 255.0f;
      s.y(j) = labels[static_cast<std::size_t>(first + j)];
    }
    return s;
  };
  data d;
  try {
    if (train + val > 0) {
      const fmnist::image_set images = fmnist::read_images(dir / "train-images-idx3-ubyte.gz");
      const std::vector<std::uint8_t> labels = fmnist::read_labels(dir / "train-labels-idx1-ubyte.gz");
      d.train = take(images, labels, 0, train);
      d.val = take(images, labels, train, val);
    }
    if (test > 0)
      d.test = take(fmnist::read_images(dir / "t10k-images-idx3-ubyte.gz"),
                    fmnist::read_labels(dir / "t10k-labels-idx1-ubyte.gz"), 0, test);
  } catch (const fmnist::data_error& e) {
    std::printf("SKIPPED: Fashion-MNIST not found (%s); install Debian's package %s\n", e.what(), fmnist::data_package);
    std::exit(0);
  }
  return d;
}

// Mean loss and accuracy over `count` samples; `+=` merges two parts of a set.
struct scores {
  double loss = 0;
  double accuracy = 0;
  Eigen::Index count = 0;
  scores& operator+=(const scores& o) {
    const double n = static_cast<double>(count + o.count);
    if (n > 0) {
      loss = (loss * static_cast<double>(count) + o.loss * static_cast<double>(o.count)) / n;
      accuracy = (accuracy * static_cast<double>(count) + o.accuracy * static_cast<double>(o.count)) / n;
    }
    count += o.count;
    return *this;
  }
};

class mlp {
 public:
  explicit mlp(Eigen::Index hidden = 64, unsigned seed = 1)
      : w1_(hidden, 784), b1_(Eigen::VectorXf::Zero(hidden)), w2_(10, hidden), b2_(Eigen::VectorXf::Zero(10)) {
    std::mt19937 rng(seed);  // He-uniform initialisation
    auto init = [&](Eigen::MatrixXf& w) {
      std::uniform_real_distribution<float> u(-1, 1);
      const float scale = std::sqrt(6.0f / static_cast<float>(w.cols()));
      for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = scale * u(rng);
    };
    init(w1_);
    init(w2_);
    clear_gradient();
  }

  // Forward and backward of samples [first, first + n) of `s`: adds their gradient to the one
  // gathered for the next update() and returns their mean loss. The activations are allocated
  // here, so the heap a step needs grows with n (what a memory limit sizes the batch by).
  double backward(const split& s, Eigen::Index first, Eigen::Index n) {
    const Eigen::MatrixXf x = s.x.middleCols(first, n);  // a copy, as a data loader's batch would be
    const auto y = s.y.segment(first, n);
    Eigen::MatrixXf h, z, dz, dh, dw1, dw2;
    Eigen::VectorXf db1, db2;
    frugal::dense_forward(w1_, b1_, x, h);
    frugal::relu(h, h);
    frugal::dense_forward(w2_, b2_, h, z);
    const float loss = frugal::softmax_cross_entropy(z, y, dz);
    frugal::dense_backward(w2_, h, dz, dw2, db2, dh);
    frugal::relu_backward(h, dh, dh);
    frugal::dense_backward(w1_, x, dh, dw1, db1);
    const float weight = static_cast<float>(n);  // a sum over samples: update() divides by all of them
    gw1_ += weight * dw1;
    gb1_ += weight * db1;
    gw2_ += weight * dw2;
    gb2_ += weight * db2;
    frugal::add_flops(static_cast<std::uint64_t>(2 * (dw1.size() + db1.size() + dw2.size() + db2.size())));
    gathered_ += n;
    return loss;
  }

  // One SGD step with the mean gradient of every sample gathered since the last update (so a
  // batch split into micro-batches gives the same update as the whole batch); then clears it.
  void update(double lr) {
    if (gathered_ == 0) return;
    const double step = lr / static_cast<double>(gathered_);
    frugal::sgd_update(w1_, gw1_, step);
    frugal::sgd_update(b1_, gb1_, step);
    frugal::sgd_update(w2_, gw2_, step);
    frugal::sgd_update(b2_, gb2_, step);
    clear_gradient();
  }

  // Drops the gathered gradient (after a memory probe, which must leave the model unchanged).
  void clear_gradient() {
    gw1_ = Eigen::MatrixXf::Zero(w1_.rows(), w1_.cols());
    gb1_ = Eigen::VectorXf::Zero(b1_.size());
    gw2_ = Eigen::MatrixXf::Zero(w2_.rows(), w2_.cols());
    gb2_ = Eigen::VectorXf::Zero(b2_.size());
    gathered_ = 0;
  }

  // The hidden layer's width: the network is 784-hidden_units()-10.
  [[nodiscard]] Eigen::Index hidden_units() const { return w1_.rows(); }

  // Removes the k hidden units of smallest L2 norm (frugal's structured pruning): unit j is row j
  // of W1, entry j of b1 and column j of W2, and the gradient gathered for the next update loses
  // the same rows, entries and columns. The network then computes what it computed with those
  // units zeroed, and every product of a step is smaller, so a step costs fewer FLOPs (and less
  // time). 0 <= k < hidden_units(), else std::invalid_argument.
  void remove_hidden_units(Eigen::Index k) {
    const frugal::unit_selection kept = frugal::select_units_to_remove(frugal::hidden_unit_scores(w1_, b1_, w2_), k);
    w1_ = kept.incoming(w1_);
    b1_ = kept.bias(b1_);
    w2_ = kept.outgoing(w2_);
    gw1_ = kept.incoming(gw1_);
    gb1_ = kept.bias(gb1_);
    gw2_ = kept.outgoing(gw2_);
  }

  // Loss and accuracy on samples [first, first + n) of `s`; on all of them without n. Its
  // memory grows with n (the activations of n samples at once).
  [[nodiscard]] scores evaluate(const split& s, Eigen::Index first = 0, Eigen::Index n = -1) const {
    if (n < 0) n = s.size() - first;
    Eigen::MatrixXf h, z, dz;
    frugal::dense_forward(w1_, b1_, s.x.middleCols(first, n), h);
    frugal::relu(h, h);
    frugal::dense_forward(w2_, b2_, h, z);
    scores out;
    out.loss = frugal::softmax_cross_entropy(z, s.y.segment(first, n), dz);
    Eigen::Index correct = 0;
    for (Eigen::Index j = 0; j < n; ++j) {
      Eigen::Index predicted = 0;
      z.col(j).maxCoeff(&predicted);
      correct += predicted == s.y(first + j);
    }
    out.accuracy = static_cast<double>(correct) / static_cast<double>(n);
    out.count = n;
    return out;
  }

  // The weights, written whole or not at all (frugal::write_file_atomically: a crash mid-write
  // leaves the previous file), and read back.
  void save(const std::filesystem::path& path) const {
    std::string bytes;
    auto append = [&](const auto& m) {
      bytes.append(reinterpret_cast<const char*>(m.data()), static_cast<std::size_t>(m.size()) * sizeof(float));
    };
    append(w1_);
    append(b1_);
    append(w2_);
    append(b2_);
    frugal::write_file_atomically(path, bytes);
  }
  void load(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    auto read = [&](auto& m) {
      in.read(reinterpret_cast<char*>(m.data()), static_cast<std::streamsize>(m.size() * sizeof(float)));
    };
    read(w1_);
    read(b1_);
    read(w2_);
    read(b2_);
    if (!in || in.peek() != std::char_traits<char>::eof())
      throw std::runtime_error("cannot read the weights of a 784-" + std::to_string(w1_.rows()) + "-10 MLP from '" +
                               path.string() + "'");
  }

 private:
  Eigen::MatrixXf w1_;
  Eigen::VectorXf b1_;
  Eigen::MatrixXf w2_;
  Eigen::VectorXf b2_;
  Eigen::MatrixXf gw1_, gw2_;  // the gradient gathered for the next update (a sum over samples)
  Eigen::VectorXf gb1_, gb2_;
  Eigen::Index gathered_ = 0;
};

}  // namespace guide
