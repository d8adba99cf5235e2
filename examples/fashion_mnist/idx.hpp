// Reader of the IDX files (gzip-compressed, as Debian's dataset-fashion-mnist installs them):
// images and labels, validated (magic, dimensions, lengths, label range) before use. The header
// bounds everything: at most max_payload_bytes are accepted, no more than it announces is
// allocated or inflated, and data past it is rejected. parse_images/parse_labels read the
// bytes of a file from memory (tests/fuzz/fuzz_idx.cpp feeds them).
#pragma once

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
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

// The largest payload (the bytes after the header) a header may announce: 1 GiB, 20 times
// Fashion-MNIST's largest file (47 MB). A header announcing more is rejected before anything
// is allocated or inflated.
inline constexpr std::size_t max_payload_bytes = std::size_t{1} << 30;

namespace detail {

// The bytes of a file as stored (compressed or not).
class raw_source {
 public:
  virtual ~raw_source() = default;
  // Up to n bytes into dst; fewer only at the end. Throws data_error on a read error.
  virtual std::size_t read(std::uint8_t* dst, std::size_t n) = 0;
};

class memory_source final : public raw_source {
 public:
  memory_source(const std::uint8_t* data, std::size_t size) noexcept : data_(data), left_(size) {}
  std::size_t read(std::uint8_t* dst, std::size_t n) override {
    n = std::min(n, left_);
    if (n > 0) std::memcpy(dst, data_, n);
    data_ += n;
    left_ -= n;
    return n;
  }

 private:
  const std::uint8_t* data_;
  std::size_t left_;
};

class file_source final : public raw_source {
 public:
  explicit file_source(const std::filesystem::path& path) : name_(path.string()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) throw data_error(name_ + ": no such file");
    file_.reset(std::fopen(path.c_str(), "rb"));
    if (!file_) throw data_error(name_ + ": cannot open: " + std::strerror(errno));
  }
  std::size_t read(std::uint8_t* dst, std::size_t n) override {
    const std::size_t got = std::fread(dst, 1, n, file_.get());
    if (got < n && std::ferror(file_.get())) throw data_error(name_ + ": read error");
    return got;
  }

 private:
  struct closer {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
  };
  std::string name_;
  std::unique_ptr<std::FILE, closer> file_;
};

// The decompressed bytes of a raw source: gzip (one member or several, each checked against
// its CRC-32 and length) or, as gzread does, a file that is not compressed, as it is. Bytes
// after the last gzip member that are not another member are corrupt data, not ignored.
// Inflates only as far as it is read: a small file that would inflate to gigabytes costs no
// more memory than the caller reads.
class decoded_stream {
 public:
  decoded_stream(raw_source& raw, std::string name) : raw_(raw), name_(std::move(name)) {
    in_len_ = fill(in_.data(), in_.size());
    gzip_ = in_len_ >= 2 && in_[0] == 0x1f && in_[1] == 0x8b;
    if (gzip_) {
      // 15 + 16: the largest window, gzip framing only (header and trailer are checked).
      const int rc = inflateInit2_(&z_, 15 + 16, ZLIB_VERSION, static_cast<int>(sizeof(z_stream)));
      if (rc == Z_MEM_ERROR) throw std::bad_alloc();
      if (rc != Z_OK) throw data_error(name_ + ": cannot start zlib (" + std::to_string(rc) + ")");
      z_live_ = true;
      z_.next_in = in_.data();
      z_.avail_in = static_cast<uInt>(in_len_);
    }
  }
  ~decoded_stream() {
    if (z_live_) inflateEnd(&z_);
  }
  decoded_stream(const decoded_stream&) = delete;
  decoded_stream& operator=(const decoded_stream&) = delete;

  // Up to n decompressed bytes into dst; fewer only at the end of the data.
  std::size_t read(std::uint8_t* dst, std::size_t n) {
    if (!gzip_) return read_plain(dst, n);
    std::size_t done = 0;
    while (done < n && !ended_) {
      if (z_.avail_in == 0 && !raw_end_) {
        in_len_ = fill(in_.data(), in_.size());
        z_.next_in = in_.data();
        z_.avail_in = static_cast<uInt>(in_len_);
      }
      const std::size_t want = std::min<std::size_t>(n - done, std::size_t{1} << 30);
      z_.next_out = dst + done;
      z_.avail_out = static_cast<uInt>(want);
      const int rc = inflate(&z_, Z_NO_FLUSH);
      done += want - z_.avail_out;
      if (rc == Z_STREAM_END) {
        next_member();
      } else if (rc == Z_MEM_ERROR) {
        throw std::bad_alloc();
      } else if (rc == Z_BUF_ERROR) {
        // No progress without more input: at the end of the file, a member cut short.
        if (z_.avail_in > 0 || raw_end_) throw corrupt("unexpected end of file");
      } else if (rc != Z_OK) {
        throw corrupt(z_.msg ? z_.msg : "zlib error " + std::to_string(rc));
      }
    }
    return done;
  }

 private:
  std::size_t fill(std::uint8_t* dst, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
      const std::size_t k = raw_.read(dst + got, n - got);
      if (k == 0) {
        raw_end_ = true;
        break;
      }
      got += k;
    }
    return got;
  }

  std::size_t read_plain(std::uint8_t* dst, std::size_t n) {
    const std::size_t buffered = std::min(n, in_len_ - in_pos_);
    if (buffered > 0) std::memcpy(dst, in_.data() + in_pos_, buffered);
    in_pos_ += buffered;
    return buffered + (buffered < n && !raw_end_ ? fill(dst + buffered, n - buffered) : 0);
  }

  // After a member's trailer: another member, the end, or corrupt data.
  void next_member() {
    if (z_.avail_in < 2 && !raw_end_) {
      // Move what is left to the front and top the buffer up, to see the next two bytes.
      std::memmove(in_.data(), z_.next_in, z_.avail_in);
      in_len_ = z_.avail_in + fill(in_.data() + z_.avail_in, in_.size() - z_.avail_in);
      z_.next_in = in_.data();
      z_.avail_in = static_cast<uInt>(in_len_);
    }
    if (z_.avail_in == 0) {
      ended_ = true;
      return;
    }
    if (z_.avail_in < 2 || z_.next_in[0] != 0x1f || z_.next_in[1] != 0x8b)
      throw corrupt("data after the end of the gzip stream");
    if (inflateReset(&z_) != Z_OK) throw corrupt("cannot restart zlib");
  }

  [[nodiscard]] data_error corrupt(const std::string& why) const {
    return data_error(name_ + ": corrupt gzip data (" + why + ")");
  }

  raw_source& raw_;
  std::string name_;
  std::array<std::uint8_t, 64 * 1024> in_;  // written before it is read
  std::size_t in_len_ = 0;
  std::size_t in_pos_ = 0;  // plain data: what of in_ has been handed out
  bool raw_end_ = false;
  bool gzip_ = false;
  bool ended_ = false;
  bool z_live_ = false;
  z_stream z_{};
};

// Reads until n bytes or the end; returns how many.
inline std::size_t read_full(decoded_stream& in, std::uint8_t* dst, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    const std::size_t k = in.read(dst + got, n - got);
    if (k == 0) break;
    got += k;
  }
  return got;
}

inline std::uint32_t big_endian_u32(const std::uint8_t* bytes) {
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) | (std::uint32_t{bytes[2]} << 8) |
         std::uint32_t{bytes[3]};
}

inline std::string hex32(std::uint32_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) s += digits[(v >> shift) & 0xf];
  return s;
}

// A file's header: its sizes, and the payload they announce.
struct idx_header {
  std::vector<std::size_t> sizes;
  std::size_t payload = 0;
};

// Reads and checks the header: the magic, then `dims` big-endian sizes, whose product must not
// exceed max_payload (checked before anything is allocated).
inline idx_header read_header(decoded_stream& in, const std::string& name, std::uint32_t magic, std::size_t dims,
                              const char* what, std::size_t max_payload) {
  std::array<std::uint8_t, 4 + 4 * 3> bytes{};
  const std::size_t header = 4 + 4 * dims;
  const std::size_t got = read_full(in, bytes.data(), header);
  // The magic first: a wrong kind of file is a clearer message than its length.
  if (got >= 4 && big_endian_u32(bytes.data()) != magic)
    throw data_error(name + ": not an IDX " + what + " file: magic number " + hex32(big_endian_u32(bytes.data())) +
                     ", expected " + hex32(magic));
  if (got < header)
    throw data_error(name + ": truncated: expected at least a " + std::to_string(header) +
                     "-byte IDX header, file has " + std::to_string(got) + " bytes");
  idx_header h;
  h.sizes.resize(dims);
  std::string shape;
  // Saturating product: a corrupt header must not overflow into a small, plausible length.
  std::size_t payload = 1;
  bool huge = false;
  for (std::size_t d = 0; d < dims; ++d) {
    h.sizes[d] = big_endian_u32(bytes.data() + 4 + 4 * d);
    shape += (d ? " x " : "") + std::to_string(h.sizes[d]);
    if (h.sizes[d] != 0 && payload > (std::size_t{1} << 48) / h.sizes[d]) huge = true;
    payload = huge ? std::size_t{1} << 48 : payload * h.sizes[d];
  }
  if (payload > max_payload)
    throw data_error(name + ": corrupt header: it announces " +
                     (huge ? std::string("more than 2^48") : std::to_string(payload)) + " bytes of " + what +
                     " (" + shape + "), more than the " + std::to_string(max_payload) +
                     " this reader accepts");
  h.payload = payload;
  return h;
}

// The payload the header announces, then the end of the data. The buffer grows with what
// arrives, never past the announced size: a truncated file costs what it holds, a file that
// inflates further than announced costs at most 64 KiB more to be rejected.
inline std::vector<std::uint8_t> read_payload(decoded_stream& in, const std::string& name, std::size_t header,
                                              std::size_t payload) {
  std::vector<std::uint8_t> out;
  constexpr std::size_t first_reserve = std::size_t{64} << 10;
  out.reserve(std::min(payload, first_reserve));
  while (out.size() < payload) {
    if (out.size() == out.capacity()) out.reserve(std::min(payload, 2 * out.capacity()));
    const std::size_t old = out.size();
    const std::size_t want = std::min(out.capacity(), payload) - old;
    out.resize(old + want);
    const std::size_t got = read_full(in, out.data() + old, want);
    out.resize(old + got);
    if (got < want)
      throw data_error(name + ": truncated: the header announces " + std::to_string(header + payload) +
                       " bytes, file has " + std::to_string(header + out.size()));
  }
  // Anything after the announced size is corrupt data. Counted exactly up to 1 MiB, in a fixed
  // buffer: a stream that would inflate to gigabytes is rejected after a few milliseconds.
  constexpr std::size_t count_up_to = std::size_t{1} << 20;
  std::array<std::uint8_t, 64 * 1024> scratch;  // written before it is read
  std::size_t extra = 0;
  for (;;) {
    const std::size_t got = read_full(in, scratch.data(), scratch.size());
    extra += got;
    if (got < scratch.size() || extra > count_up_to) break;
  }
  if (extra > 0)
    throw data_error(name + ": corrupt: " +
                     (extra > count_up_to ? "more than " + std::to_string(count_up_to) : std::to_string(extra)) +
                     " bytes after the " + std::to_string(header + payload) + " the header announces");
  return out;
}

inline image_set read_images(raw_source& raw, const std::string& name, std::size_t max_payload) {
  decoded_stream in(raw, name);
  const idx_header h = read_header(in, name, images_magic, 3, "images", max_payload);
  // The shape before the payload: an image file of another shape is not worth reading.
  if (h.sizes[1] != image_side || h.sizes[2] != image_side)
    throw data_error(name + ": images are " + std::to_string(h.sizes[1]) + "x" + std::to_string(h.sizes[2]) +
                     ", expected " + std::to_string(image_side) + "x" + std::to_string(image_side));
  image_set out;
  out.count = h.sizes[0];
  out.rows = h.sizes[1];
  out.cols = h.sizes[2];
  out.pixels = read_payload(in, name, 16, h.payload);
  return out;
}

inline std::vector<std::uint8_t> read_labels(raw_source& raw, const std::string& name, std::size_t max_payload) {
  decoded_stream in(raw, name);
  const idx_header h = read_header(in, name, labels_magic, 1, "labels", max_payload);
  std::vector<std::uint8_t> out = read_payload(in, name, 8, h.payload);
  for (std::size_t i = 0; i < out.size(); ++i)
    if (out[i] >= classes)
      throw data_error(name + ": corrupt: label " + std::to_string(i) + " is " + std::to_string(out[i]) +
                       ", expected 0.." + std::to_string(classes - 1));
  return out;
}

}  // namespace detail

// An IDX images file of 28x28 images, gzip-compressed or not. Throws data_error naming the
// file: missing, unreadable, corrupt gzip, wrong magic or shape, a header announcing more than
// max_payload bytes, fewer bytes than it announces, or any byte after them.
[[nodiscard]] inline image_set read_images(const std::filesystem::path& path,
                                           std::size_t max_payload = max_payload_bytes) {
  detail::file_source raw(path);
  return detail::read_images(raw, path.string(), max_payload);
}

// An IDX labels file (labels 0..9), gzip-compressed or not; errors as read_images.
[[nodiscard]] inline std::vector<std::uint8_t> read_labels(const std::filesystem::path& path,
                                                           std::size_t max_payload = max_payload_bytes) {
  detail::file_source raw(path);
  return detail::read_labels(raw, path.string(), max_payload);
}

// The same from the bytes of a file in memory (what the fuzz target feeds); `name` stands for
// the file in messages.
[[nodiscard]] inline image_set parse_images(const std::uint8_t* data, std::size_t size, const std::string& name,
                                            std::size_t max_payload = max_payload_bytes) {
  detail::memory_source raw(data, size);
  return detail::read_images(raw, name, max_payload);
}

[[nodiscard]] inline std::vector<std::uint8_t> parse_labels(const std::uint8_t* data, std::size_t size,
                                                            const std::string& name,
                                                            std::size_t max_payload = max_payload_bytes) {
  detail::memory_source raw(data, size);
  return detail::read_labels(raw, name, max_payload);
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
