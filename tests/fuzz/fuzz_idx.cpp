// libFuzzer target: the Fashion-MNIST example's IDX reader (examples/fashion_mnist/idx.hpp), from
// the bytes of a file in memory, gzip-compressed or not. Any input either reads or throws
// fmnist::data_error (anything else escaping is a finding); what reads is consistent with its
// header (count x 28 x 28 pixels, labels 0..9), and memory stays bounded by what the header
// announces (libFuzzer's -rss_limit_mb catches a reader that inflates further).
#include "idx.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_idx: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const fmnist::image_set images = fmnist::parse_images(data, size, "fuzz input");
    if (images.rows != fmnist::image_side || images.cols != fmnist::image_side) finding("images not 28x28");
    if (images.pixels.size() != images.count * images.pixels_per_image())
      finding("pixels do not match the header's count");
  } catch (const fmnist::data_error&) {
  }
  try {
    const std::vector<std::uint8_t> labels = fmnist::parse_labels(data, size, "fuzz input");
    for (std::uint8_t l : labels)
      if (l >= fmnist::classes) finding("a label out of range was accepted");
  } catch (const fmnist::data_error&) {
  }
  return 0;
}
