// A resident set the test sets, in place of /proc's, for every budget while it lives: a fixed
// height for exact reports, a sequence for the max of reads, or none (an unreadable /proc). It
// counts the reads too, so a test can show where the resident set is not read. Test support only.
#pragma once

#include <frugal/process_memory.hpp>

#include <atomic>
#include <cstdint>
#include <optional>

namespace frugal_test {

class fake_resident_set {
 public:
  static constexpr std::int64_t unreadable = -1;

  explicit fake_resident_set(std::int64_t bytes) {
    bytes_.store(bytes);
    reads_.store(0);
    previous_ = frugal::detail::resident_set_source.exchange(&read);
  }
  ~fake_resident_set() { frugal::detail::resident_set_source.store(previous_); }
  fake_resident_set(const fake_resident_set&) = delete;
  fake_resident_set& operator=(const fake_resident_set&) = delete;

  void set(std::int64_t bytes) noexcept { bytes_.store(bytes); }
  [[nodiscard]] int reads() const noexcept { return reads_.load(); }

 private:
  static std::optional<std::int64_t> read() noexcept {
    reads_.fetch_add(1);
    const std::int64_t b = bytes_.load();
    if (b == unreadable) return std::nullopt;
    return b;
  }

  static inline std::atomic<std::int64_t> bytes_{0};
  static inline std::atomic<int> reads_{0};
  frugal::detail::resident_set_source_fn previous_ = nullptr;
};

}  // namespace frugal_test
