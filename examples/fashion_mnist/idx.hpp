// Reader of the IDX files (gzip-compressed, as Debian's dataset-fashion-mnist installs them):
// images and labels, validated (magic, dimensions, lengths, label range) before use.
#pragma once

#include <zlib.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fmnist {

// Where Debian's package puts the data, and the package a user installs when it is missing.
inline constexpr const char* default_data_dir = "/usr/share/datasets/fashion-mnist";
inline constexpr const char* data_package = "dataset-fashion-mnist";

inline constexpr std::uint32_t images_magic = 0x00000803;  // unsigned bytes, 3 dimensions
inline constexpr std::uint32_t labels_magic = 0x00000801;  // unsigned bytes, 1 dimension
inline constexpr std::size_t image_side = 28;
inline constexpr int classes = 10;

// A data file that is missing, unreadable, truncated or corrupt; the message names the file.
class data_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct image_set {
  std::size_t count = 0;
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<std::uint8_t> pixels;  // count * rows * cols, image after image, row-major
  [[nodiscard]] std::size_t pixels_per_image() const noexcept { return rows * cols; }
};

struct dataset {
  image_set train_images;
  std::vector<std::uint8_t> train_labels;
  image_set test_images;
  std::vector<std::uint8_t> test_labels;
};

namespace detail {

// The whole (decompressed) file. gzread also reads files that are not compressed, so an
// unpacked IDX file works too.
inline std::vector<std::uint8_t> read_gz(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw data_error(path.string() + ": no such file");
  struct closer {
    void operator()(gzFile f) const noexcept { gzclose(f); }
  };
  std::unique_ptr<gzFile_s, closer> file(gzopen(path.c_str(), "rb"));
  if (!file) throw data_error(path.string() + ": cannot open");
  std::vector<std::uint8_t> out;
  constexpr unsigned chunk = 1u << 20;
  for (;;) {
    const std::size_t old = out.size();
    out.resize(old + chunk);
    const int n = gzread(file.get(), out.data() + old, chunk);
    if (n < 0) {
      int code = 0;
      const char* why = gzerror(file.get(), &code);
      throw data_error(path.string() + ": corrupt gzip data (" + (why ? why : "unknown zlib error") + ")");
    }
    out.resize(old + static_cast<std::size_t>(n));
    if (n == 0) break;
  }
  // A stream cut short ends without an error from gzread on some zlib versions; gzerror tells.
  int code = Z_OK;
  const char* why = gzerror(file.get(), &code);
  if (code != Z_OK && code != Z_STREAM_END)
    throw data_error(path.string() + ": corrupt gzip data (" + (why ? why : "unknown zlib error") + ")");
  return out;
}

inline std::uint32_t big_endian_u32(const std::vector<std::uint8_t>& bytes, std::size_t at) {
  return (std::uint32_t{bytes[at]} << 24) | (std::uint32_t{bytes[at + 1]} << 16) |
         (std::uint32_t{bytes[at + 2]} << 8) | std::uint32_t{bytes[at + 3]};
}

inline std::string hex32(std::uint32_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) s += digits[(v >> shift) & 0xf];
  return s;
}

// Checks the header (magic, then `dims` big-endian sizes) and that the payload is exactly
// as long as the header says; returns the sizes.
inline std::vector<std::size_t> check_idx(const std::vector<std::uint8_t>& bytes, const std::filesystem::path& path,
                                          std::uint32_t magic, std::size_t dims, const char* what) {
  // The magic first: a wrong kind of file is a clearer message than its length.
  if (bytes.size() >= 4 && big_endian_u32(bytes, 0) != magic)
    throw data_error(path.string() + ": not an IDX " + what + " file: magic number " + hex32(big_endian_u32(bytes, 0)) +
                     ", expected " + hex32(magic));
  const std::size_t header = 4 + 4 * dims;
  if (bytes.size() < header)
    throw data_error(path.string() + ": truncated: expected at least a " + std::to_string(header) +
                     "-byte IDX header, file has " + std::to_string(bytes.size()) + " bytes");
  std::vector<std::size_t> sizes(dims);
  // Saturating product: a corrupt header must not overflow into a small, plausible length.
  std::size_t payload = 1;
  bool huge = false;
  for (std::size_t d = 0; d < dims; ++d) {
    sizes[d] = big_endian_u32(bytes, 4 + 4 * d);
    if (sizes[d] != 0 && payload > (std::size_t{1} << 48) / sizes[d]) huge = true;
    payload = huge ? std::size_t{1} << 48 : payload * sizes[d];
  }
  const std::size_t expected = header + payload;
  if (bytes.size() < expected)
    throw data_error(path.string() + ": truncated: the header announces " +
                     (huge ? std::string("more than 2^48") : std::to_string(expected)) + " bytes, file has " +
                     std::to_string(bytes.size()));
  if (bytes.size() > expected)
    throw data_error(path.string() + ": corrupt: " + std::to_string(bytes.size() - expected) +
                     " bytes after the " + std::to_string(expected) + " the header announces");
  return sizes;
}

}  // namespace detail

[[nodiscard]] inline image_set read_images(const std::filesystem::path& path) {
  std::vector<std::uint8_t> bytes = detail::read_gz(path);
  const auto sizes = detail::check_idx(bytes, path, images_magic, 3, "images");
  if (sizes[1] != image_side || sizes[2] != image_side)
    throw data_error(path.string() + ": images are " + std::to_string(sizes[1]) + "x" + std::to_string(sizes[2]) +
                     ", expected " + std::to_string(image_side) + "x" + std::to_string(image_side));
  image_set out;
  out.count = sizes[0];
  out.rows = sizes[1];
  out.cols = sizes[2];
  out.pixels.assign(bytes.begin() + 16, bytes.end());
  return out;
}

[[nodiscard]] inline std::vector<std::uint8_t> read_labels(const std::filesystem::path& path) {
  std::vector<std::uint8_t> bytes = detail::read_gz(path);
  detail::check_idx(bytes, path, labels_magic, 1, "labels");
  std::vector<std::uint8_t> out(bytes.begin() + 8, bytes.end());
  for (std::size_t i = 0; i < out.size(); ++i)
    if (out[i] >= classes)
      throw data_error(path.string() + ": corrupt: label " + std::to_string(i) + " is " + std::to_string(out[i]) +
                       ", expected 0.." + std::to_string(classes - 1));
  return out;
}

// The four Fashion-MNIST files of `dir`. A missing file names the Debian package to install.
[[nodiscard]] inline dataset load_fashion_mnist(const std::filesystem::path& dir) {
  static constexpr std::array<const char*, 4> names = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
  std::string missing;
  std::error_code ec;
  for (const char* name : names)
    if (!std::filesystem::is_regular_file(dir / name, ec)) missing += std::string(missing.empty() ? "" : ", ") + name;
  if (!missing.empty())
    throw data_error("Fashion-MNIST not found in " + dir.string() + " (missing " + missing +
                     "). Install Debian's package: sudo apt-get install " + data_package +
                     " (or pass --data DIR with the four *-ubyte.gz files)");
  dataset d;
  d.train_images = read_images(dir / names[0]);
  d.train_labels = read_labels(dir / names[1]);
  d.test_images = read_images(dir / names[2]);
  d.test_labels = read_labels(dir / names[3]);
  if (d.train_images.count != d.train_labels.size())
    throw data_error((dir / names[0]).string() + " has " + std::to_string(d.train_images.count) + " images but " +
                     (dir / names[1]).string() + " has " + std::to_string(d.train_labels.size()) + " labels");
  if (d.test_images.count != d.test_labels.size())
    throw data_error((dir / names[2]).string() + " has " + std::to_string(d.test_images.count) + " images but " +
                     (dir / names[3]).string() + " has " + std::to_string(d.test_labels.size()) + " labels");
  return d;
}

}  // namespace fmnist
