// FNV-1a, 64 bits: the checksum at the end of the example's binary files (the checkpoint's
// model-<steps>.bin, checkpoint.hpp; the deployed model, deploy.hpp). It catches a file cut
// short or altered by accident (not tampering: it is not a cryptographic hash).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fmnist::detail {

// FNV-1a, 64 bits, over every byte written or read so far.
class fnv1a {
 public:
  void add(const char* p, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
      h_ ^= static_cast<unsigned char>(p[i]);
      h_ *= 0x100000001b3ull;
    }
  }
  [[nodiscard]] std::uint64_t value() const noexcept { return h_; }

 private:
  std::uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace fmnist::detail
