/// @file
/// A list of callbacks with ids, called under their own lock: what a budget's limits listeners
/// and a deadline watchdog's fire listeners are. Holding the lock through the calls is what lets
/// remove() promise that no call is still running, so a listener's owner may be destroyed once
/// it returns.
#pragma once

#include <frugal/detail/heap.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace frugal::detail {

class listener_list {
 public:
  /// Adds f (not empty: the caller checks, to name itself in the error); returns its id.
  [[nodiscard]] std::uint64_t add(std::function<void()> f) {
    const bookkeeping own_allocations;  // frugal's own: charged to no user scope
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.emplace_back(++last_id_, std::move(f));
    return last_id_;
  }

  /// Removes the listener with this id (an unknown id does nothing). When it returns, no call of
  /// it is running and none will start.
  void remove(std::uint64_t id) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    // std::remove_if spelt out: the others move up, in order.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < entries_.size(); ++i)
      if (entries_[i].first != id) {
        if (i != kept) entries_[kept] = std::move(entries_[i]);
        ++kept;
      }
    entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(kept), entries_.end());
  }

  /// Calls every listener, in the order added, on the calling thread, under the list's lock: a
  /// listener must not add or remove listeners of this list.
  void call_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& entry : entries_) entry.second();
  }

 private:
  std::mutex mutex_;
  std::uint64_t last_id_ = 0;
  std::vector<std::pair<std::uint64_t, std::function<void()>>> entries_;
};

}  // namespace frugal::detail
