// The Fashion-MNIST example's IDX reader: valid files load; truncated, corrupt, mismatched and
// missing files are rejected with an error naming the file and what is wrong; the header bounds
// what is inflated and allocated (a small gzip that inflates to gigabytes is rejected at once).
#include "idx.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

#include "support/checks.hpp"

namespace fs = std::filesystem;

namespace {

using bytes = std::vector<std::uint8_t>;

void put_u32(bytes& b, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<std::uint8_t>(v >> shift));
}

bytes idx_images(std::uint32_t count, std::uint32_t rows, std::uint32_t cols, std::size_t payload) {
  bytes b;
  put_u32(b, fmnist::images_magic);
  put_u32(b, count);
  put_u32(b, rows);
  put_u32(b, cols);
  for (std::size_t i = 0; i < payload; ++i) b.push_back(static_cast<std::uint8_t>(i * 7));
  return b;
}

bytes idx_labels(std::uint32_t count, std::size_t payload, std::uint8_t first = 0) {
  bytes b;
  put_u32(b, fmnist::labels_magic);
  put_u32(b, count);
  for (std::size_t i = 0; i < payload; ++i) b.push_back(static_cast<std::uint8_t>(i == 0 ? first : i % 10));
  return b;
}

void write_gz(const fs::path& path, const bytes& data) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, data.data(), static_cast<unsigned>(data.size())), static_cast<int>(data.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const fs::path& path, const bytes& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

// The process's peak resident set so far, in MiB.
double max_rss_mib() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux: KiB
}

// A gzip file of `head`, then `zeros` zero bytes, written a MiB at a time (200 MiB of zeros
// make a file of 0.9 MB at level 1, in a second).
void write_gz_then_zeros(const fs::path& path, const bytes& head, std::size_t zeros) {
  gzFile f = gzopen(path.c_str(), "wb1");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, head.data(), static_cast<unsigned>(head.size())), static_cast<int>(head.size()));
  const bytes block(std::size_t{1} << 20, 0);
  for (std::size_t left = zeros; left > 0;) {
    const std::size_t n = std::min(left, block.size());
    ASSERT_EQ(gzwrite(f, block.data(), static_cast<unsigned>(n)), static_cast<int>(n));
    left -= n;
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string data_error_of(std::function<void()> f) { return frugal_test::error_of<fmnist::data_error>(f); }

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("frugal_idx_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A complete, valid data directory of n training and m test images.
  void write_dataset(std::uint32_t n, std::uint32_t m) {
    write_gz(dir_ / "train-images-idx3-ubyte.gz", idx_images(n, 28, 28, n * 784u));
    write_gz(dir_ / "train-labels-idx1-ubyte.gz", idx_labels(n, n));
    write_gz(dir_ / "t10k-images-idx3-ubyte.gz", idx_images(m, 28, 28, m * 784u));
    write_gz(dir_ / "t10k-labels-idx1-ubyte.gz", idx_labels(m, m));
  }

  fs::path dir_;
};

TEST_F(IdxTest, ReadsValidImagesAndLabels) {
  write_gz(dir_ / "i.gz", idx_images(3, 28, 28, 3 * 784));
  write_gz(dir_ / "l.gz", idx_labels(3, 3, 9));
  const fmnist::image_set images = fmnist::read_images(dir_ / "i.gz");
  EXPECT_EQ(images.count, 3u);
  EXPECT_EQ(images.rows, 28u);
  EXPECT_EQ(images.cols, 28u);
  ASSERT_EQ(images.pixels.size(), 3u * 784u);
  EXPECT_EQ(images.pixels[0], 0);
  EXPECT_EQ(images.pixels[1], 7);
  EXPECT_EQ(images.pixels[2351], static_cast<std::uint8_t>(2351 * 7));
  const std::vector<std::uint8_t> labels = fmnist::read_labels(dir_ / "l.gz");
  EXPECT_EQ(labels, (std::vector<std::uint8_t>{9, 1, 2}));
}

TEST_F(IdxTest, ReadsUncompressedFilesToo) {
  write_file(dir_ / "i", idx_images(1, 28, 28, 784));
  EXPECT_EQ(fmnist::read_images(dir_ / "i").count, 1u);
}

TEST_F(IdxTest, RejectsTruncatedPayloadNamingExpectedAndActualBytes) {
  write_gz(dir_ / "i.gz", idx_images(3, 28, 28, 2 * 784));
  const std::string e = data_error_of([&] { (void)fmnist::read_images(dir_ / "i.gz"); });
  EXPECT_NE(e.find((dir_ / "i.gz").string()), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  EXPECT_NE(e.find(std::to_string(16 + 3 * 784)), std::string::npos) << e;  // expected
  EXPECT_NE(e.find(std::to_string(16 + 2 * 784)), std::string::npos) << e;  // actual
}

TEST_F(IdxTest, RejectsTruncatedHeader) {
  bytes header = idx_images(3, 28, 28, 0);
  header.resize(10);
  write_gz(dir_ / "i.gz", header);
  const std::string e = data_error_of([&] { (void)fmnist::read_images(dir_ / "i.gz"); });
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  EXPECT_NE(e.find("16-byte IDX header, file has 10 bytes"), std::string::npos) << e;
}

// A header announcing more than fmnist::max_payload_bytes (1 GiB) is rejected from its 16
// bytes, before anything is allocated or inflated, with the sizes it announces.
TEST_F(IdxTest, RejectsHeaderThatAnnouncesAnAbsurdSize) {
  write_gz(dir_ / "i.gz", idx_images(0xffffffffu, 28, 28, 784));
  const std::string e = data_error_of([&] { (void)fmnist::read_images(dir_ / "i.gz"); });
  EXPECT_NE(e.find((dir_ / "i.gz").string() + ": corrupt header: it announces " +
                   std::to_string(0xffffffffull * 784) + " bytes of images (4294967295 x 28 x 28), more than the " +
                   std::to_string(fmnist::max_payload_bytes) + " this reader accepts"),
            std::string::npos)
      << e;
  bytes huge;
  put_u32(huge, fmnist::images_magic);
  for (int i = 0; i < 3; ++i) put_u32(huge, 0xffffffffu);  // the product overflows 64 bits
  write_gz(dir_ / "h.gz", huge);
  const std::string h = data_error_of([&] { (void)fmnist::read_images(dir_ / "h.gz"); });
  EXPECT_NE(h.find("announces more than 2^48 bytes"), std::string::npos) << h;
  // Labels: 2^31 announced, just the header there.
  write_gz(dir_ / "l.gz", idx_labels(0x80000000u, 0));
  const std::string l = data_error_of([&] { (void)fmnist::read_labels(dir_ / "l.gz"); });
  EXPECT_NE(l.find("it announces 2147483648 bytes of labels (2147483648), more than the"), std::string::npos) << l;
  // The limit is a parameter.
  const bytes ten = idx_labels(10, 10);
  const std::string p = data_error_of([&] { (void)fmnist::parse_labels(ten.data(), ten.size(), "ten", 9); });
  EXPECT_NE(p.find("ten: corrupt header: it announces 10 bytes of labels (10), more than the 9"), std::string::npos)
      << p;
  EXPECT_EQ(fmnist::parse_labels(ten.data(), ten.size(), "ten", 10).size(), 10u);
}

// A header within the limit but a file that holds far less: the reader allocates what arrives,
// not what the header announces.
TEST_F(IdxTest, TruncatedFileAnnouncingALotAllocatesOnlyWhatItHolds) {
  write_gz(dir_ / "l.gz", idx_labels(static_cast<std::uint32_t>(fmnist::max_payload_bytes), 1000));
  const double before = max_rss_mib();
  const std::string e = data_error_of([&] { (void)fmnist::read_labels(dir_ / "l.gz"); });
  EXPECT_NE(e.find("truncated: the header announces " + std::to_string(fmnist::max_payload_bytes + 8) +
                   " bytes, file has 1008"),
            std::string::npos)
      << e;
  EXPECT_LT(max_rss_mib() - before, 64.0) << "the reader allocated what the header announces";
}

TEST_F(IdxTest, RejectsTrailingBytes) {
  write_gz(dir_ / "l.gz", idx_labels(3, 5));
  const std::string e = data_error_of([&] { (void)fmnist::read_labels(dir_ / "l.gz"); });
  EXPECT_NE(e.find((dir_ / "l.gz").string() + ": corrupt: 2 bytes after the 11 the header announces"),
            std::string::npos)
      << e;
  write_file(dir_ / "i", idx_images(1, 28, 28, 784 + 1));  // not compressed
  const std::string i = data_error_of([&] { (void)fmnist::read_images(dir_ / "i"); });
  EXPECT_NE(i.find("corrupt: 1 bytes after the 800 the header announces"), std::string::npos) << i;
}

// A 0.9 MB gzip whose header announces 10 labels but whose stream inflates to 200 MiB: the
// reader stops at the announced size, inflates at most 1 MiB more to see that it is trailing
// data, and rejects the file. (Before: it inflated all of it into memory first, 4.2 GB of RSS
// for a 3 GiB stream.)
TEST_F(IdxTest, StopsAtTheAnnouncedSizeOfAStreamThatInflatesMuchFurther) {
  const std::size_t zeros = std::size_t{200} << 20;
  write_gz_then_zeros(dir_ / "bomb.gz", idx_labels(10, 10), zeros);
  ASSERT_LT(fs::file_size(dir_ / "bomb.gz"), std::uintmax_t{2} << 20);
  const double before = max_rss_mib();
  const std::string e = data_error_of([&] { (void)fmnist::read_labels(dir_ / "bomb.gz"); });
  EXPECT_NE(e.find((dir_ / "bomb.gz").string() + ": corrupt: more than 1048576 bytes after the 18 the header announces"),
            std::string::npos)
      << e;
  EXPECT_LT(max_rss_mib() - before, 32.0) << "the reader inflated past the announced size";
  // Images too: one image announced, 64 MiB more in the stream.
  write_gz_then_zeros(dir_ / "images.gz", idx_images(1, 28, 28, 784), std::size_t{64} << 20);
  const std::string i = data_error_of([&] { (void)fmnist::read_images(dir_ / "images.gz"); });
  EXPECT_NE(i.find("corrupt: more than 1048576 bytes after the 800 the header announces"), std::string::npos) << i;
  EXPECT_LT(max_rss_mib() - before, 32.0) << "the reader inflated past the announced size";
}

// Bytes after the gzip stream that are not another gzip member are corrupt data (zlib's gzread
// ignored them); a file of several members (gzip's concatenation) reads as their contents.
TEST_F(IdxTest, RejectsGarbageAfterTheGzipStreamButReadsConcatenatedMembers) {
  write_gz(dir_ / "l.gz", idx_labels(3, 3));
  bytes gz = read_file(dir_ / "l.gz");
  bytes garbage = gz;
  for (char c : std::string("garbage")) garbage.push_back(static_cast<std::uint8_t>(c));
  write_file(dir_ / "garbage.gz", garbage);
  const std::string e = data_error_of([&] { (void)fmnist::read_labels(dir_ / "garbage.gz"); });
  EXPECT_NE(e.find((dir_ / "garbage.gz").string() + ": corrupt gzip data (data after the end of the gzip stream)"),
            std::string::npos)
      << e;
  garbage.resize(gz.size() + 1);  // a single byte
  write_file(dir_ / "one.gz", garbage);
  EXPECT_NE(data_error_of([&] { (void)fmnist::read_labels(dir_ / "one.gz"); }).find("data after the end"),
            std::string::npos);

  const bytes whole = idx_labels(3, 3, 7);
  write_gz(dir_ / "a.gz", bytes(whole.begin(), whole.begin() + 5));
  write_gz(dir_ / "b.gz", bytes(whole.begin() + 5, whole.end()));
  bytes two = read_file(dir_ / "a.gz");
  const bytes b = read_file(dir_ / "b.gz");
  two.insert(two.end(), b.begin(), b.end());
  write_file(dir_ / "two.gz", two);
  EXPECT_EQ(fmnist::read_labels(dir_ / "two.gz"), (std::vector<std::uint8_t>{7, 1, 2}));
}

// The bytes of a file in memory, compressed or not, read as the file does.
TEST_F(IdxTest, ParsesFromMemory) {
  const bytes raw = idx_images(2, 28, 28, 2 * 784);
  write_gz(dir_ / "i.gz", raw);
  const bytes gz = read_file(dir_ / "i.gz");
  const fmnist::image_set from_file = fmnist::read_images(dir_ / "i.gz");
  const fmnist::image_set from_raw = fmnist::parse_images(raw.data(), raw.size(), "raw");
  const fmnist::image_set from_gz = fmnist::parse_images(gz.data(), gz.size(), "gz");
  EXPECT_EQ(from_raw.count, 2u);
  EXPECT_EQ(from_raw.pixels, from_file.pixels);
  EXPECT_EQ(from_gz.pixels, from_file.pixels);
  const std::string e = data_error_of([&] { (void)fmnist::parse_images(gz.data(), gz.size() - 9, "cut"); });
  EXPECT_NE(e.find("cut: corrupt gzip data"), std::string::npos) << e;
  EXPECT_NE(data_error_of([&] { (void)fmnist::parse_labels(nullptr, 0, "empty"); })
                .find("empty: truncated: expected at least a 8-byte IDX header, file has 0 bytes"),
            std::string::npos);
}

TEST_F(IdxTest, RejectsWrongMagic) {
  write_gz(dir_ / "l.gz", idx_labels(3, 3));
  const std::string e = data_error_of([&] { (void)fmnist::read_images(dir_ / "l.gz"); });
  EXPECT_NE(e.find("not an IDX images file: magic number 0x00000801, expected 0x00000803"), std::string::npos) << e;
}

TEST_F(IdxTest, RejectsImagesThatAreNot28x28) {
  write_gz(dir_ / "i.gz", idx_images(2, 27, 28, 2 * 27 * 28));
  const std::string e = data_error_of([&] { (void)fmnist::read_images(dir_ / "i.gz"); });
  EXPECT_NE(e.find("images are 27x28, expected 28x28"), std::string::npos) << e;
}

TEST_F(IdxTest, RejectsLabelOutOfRange) {
  write_gz(dir_ / "l.gz", idx_labels(3, 3, 10));
  const std::string e = data_error_of([&] { (void)fmnist::read_labels(dir_ / "l.gz"); });
  EXPECT_NE(e.find("label 0 is 10, expected 0..9"), std::string::npos) << e;
}

TEST_F(IdxTest, RejectsCorruptGzipData) {
  write_gz(dir_ / "i.gz", idx_images(20, 28, 28, 20 * 784));
  bytes gz = read_file(dir_ / "i.gz");
  ASSERT_GT(gz.size(), 40u);
  for (std::size_t i = 20; i < gz.size() - 8; i += 3) gz[i] ^= 0x5a;  // scramble the deflate stream
  write_file(dir_ / "bad.gz", gz);
  const std::string e = data_error_of([&] { (void)fmnist::read_images(dir_ / "bad.gz"); });
  EXPECT_NE(e.find((dir_ / "bad.gz").string()), std::string::npos) << e;
  EXPECT_NE(e.find("corrupt gzip data"), std::string::npos) << e;
}

TEST_F(IdxTest, RejectsGzipCheckMismatch) {
  write_gz(dir_ / "i.gz", idx_images(2, 28, 28, 2 * 784));
  bytes gz = read_file(dir_ / "i.gz");
  gz[gz.size() - 6] ^= 0xff;  // the CRC-32 of the trailer
  write_file(dir_ / "crc.gz", gz);
  const std::string e = data_error_of([&] { (void)fmnist::read_images(dir_ / "crc.gz"); });
  EXPECT_NE(e.find("corrupt gzip data"), std::string::npos) << e;
}

TEST_F(IdxTest, RejectsGzipStreamCutShort) {
  write_gz(dir_ / "i.gz", idx_images(50, 28, 28, 50 * 784));
  bytes gz = read_file(dir_ / "i.gz");
  gz.resize(gz.size() / 2);
  write_file(dir_ / "cut.gz", gz);
  const std::string e = data_error_of([&] { (void)fmnist::read_images(dir_ / "cut.gz"); });
  EXPECT_NE(e.find((dir_ / "cut.gz").string()), std::string::npos) << e;
  EXPECT_TRUE(e.find("corrupt gzip data") != std::string::npos || e.find("truncated") != std::string::npos) << e;
}

TEST_F(IdxTest, MissingFileIsNamed) {
  const std::string e = data_error_of([&] { (void)fmnist::read_labels(dir_ / "absent.gz"); });
  EXPECT_NE(e.find((dir_ / "absent.gz").string() + ": no such file"), std::string::npos) << e;
}

TEST_F(IdxTest, LoadsADatasetDirectory) {
  write_dataset(4, 2);
  const fmnist::dataset d = fmnist::load_fashion_mnist(dir_);
  EXPECT_EQ(d.train_images.count, 4u);
  EXPECT_EQ(d.train_labels.size(), 4u);
  EXPECT_EQ(d.test_images.count, 2u);
  EXPECT_EQ(d.test_labels.size(), 2u);
}

TEST_F(IdxTest, MissingDatasetNamesTheDebianPackage) {
  write_dataset(4, 2);
  fs::remove(dir_ / "t10k-labels-idx1-ubyte.gz");
  const std::string e = data_error_of([&] { (void)fmnist::load_fashion_mnist(dir_); });
  EXPECT_NE(e.find("missing t10k-labels-idx1-ubyte.gz"), std::string::npos) << e;
  EXPECT_NE(e.find("apt-get install dataset-fashion-mnist"), std::string::npos) << e;
  EXPECT_NE(e.find("--data DIR"), std::string::npos) << e;
}

TEST_F(IdxTest, RejectsImageAndLabelCountsThatDiffer) {
  write_dataset(4, 2);
  write_gz(dir_ / "train-labels-idx1-ubyte.gz", idx_labels(3, 3));
  const std::string e = data_error_of([&] { (void)fmnist::load_fashion_mnist(dir_); });
  EXPECT_NE(e.find("has 4 images but"), std::string::npos) << e;
  EXPECT_NE(e.find("has 3 labels"), std::string::npos) << e;
}

// The real files, where Debian's package installed them.
TEST(IdxRealData, LoadsFashionMnist) {
  const fs::path dir = fmnist::default_data_dir;
  if (!fs::exists(dir / "train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not installed in " << dir << " (apt-get install " << fmnist::data_package << ")";
  const fmnist::dataset d = fmnist::load_fashion_mnist(dir);
  EXPECT_EQ(d.train_images.count, 60000u);
  EXPECT_EQ(d.test_images.count, 10000u);
  EXPECT_EQ(d.train_images.pixels.size(), 60000u * 784u);
  std::vector<int> per_class(fmnist::classes, 0);
  for (std::uint8_t l : d.test_labels) ++per_class[l];
  for (int c = 0; c < fmnist::classes; ++c) EXPECT_EQ(per_class[static_cast<std::size_t>(c)], 1000) << "class " << c;
}

}  // namespace
