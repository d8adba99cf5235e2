// xorshift64: a deterministic generator for tests that sweep many inputs, giving the same
// sequence on every standard library (unlike std distributions). Test support only.
#pragma once

#include <cstdint>

namespace frugal_test {

class xorshift64 {
 public:
  explicit xorshift64(std::uint64_t seed) noexcept : state_(seed) {}
  std::uint64_t operator()() noexcept {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }

 private:
  std::uint64_t state_;
};

}  // namespace frugal_test
