/// @file
/// What a thread measures: FLOPs and user units (samples, tokens) charged to the innermost open
/// scope of the calling thread. Adding is a thread-local increment: no lock, no shared line.
#pragma once

#include <frugal/config.hpp>
#include <frugal/detail/ledger.hpp>
#include <frugal/units.hpp>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace frugal {

/// A user unit's slot in every ledger. Get one with frugal::unit("samples") to skip the
/// name lookup in an inner loop.
struct unit_id {
  /// The unit's slot, below FRUGAL_MAX_UNITS.
  std::uint32_t index;
  /// Same slot, so the same unit name.
  friend bool operator==(unit_id a, unit_id b) noexcept { return a.index == b.index; }
};

namespace detail {
// Unit names live for the process. Readers scan without a lock: a name is written before
// the count that publishes it (release), and never changes after.
struct unit_registry {
  char names[FRUGAL_MAX_UNITS][max_unit_name_length + 1];
  std::atomic<std::uint32_t> count;
  std::mutex mutex;
};
inline unit_registry units_registered{};

[[nodiscard]] inline std::optional<std::uint32_t> find_unit(std::string_view name) noexcept {
  const std::uint32_t n = units_registered.count.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n; ++i)
    if (name == units_registered.names[i]) return i;
  return std::nullopt;
}

inline std::uint32_t register_unit(std::string_view name) {
  if (auto found = find_unit(name)) return *found;
  if (auto problem = detail::units_impl::unit_name_problem(name))
    throw std::invalid_argument("frugal::add_units: unit name '" + std::string(name) + "': " + *problem);
  std::lock_guard<std::mutex> lock(units_registered.mutex);
  if (auto found = find_unit(name)) return *found;
  const std::uint32_t n = units_registered.count.load(std::memory_order_relaxed);
  if (n == FRUGAL_MAX_UNITS)
    throw std::length_error("frugal::add_units: unit '" + std::string(name) +
                            "' exceeds FRUGAL_MAX_UNITS (" + std::to_string(FRUGAL_MAX_UNITS) +
                            ") distinct unit names");
  std::memcpy(units_registered.names[n], name.data(), name.size());
  units_registered.names[n][name.size()] = '\0';
  units_registered.count.store(n + 1, std::memory_order_release);
  return n;
}

// The per-thread cache keyed by the name's address makes the usual literal lookup a few
// compares; the name is still compared, so a reused buffer never maps to a stale unit.
[[nodiscard]] inline std::uint32_t unit_index(std::string_view name) {
  thread_state& ts = this_thread;
  for (const unit_cache_entry& e : ts.unit_cache)
    if (e.data == name.data() && e.size == name.size() && e.data != nullptr &&
        name == units_registered.names[e.index])
      return e.index;
  const std::uint32_t index = register_unit(name);
  ts.unit_cache[ts.unit_cache_next++ % 8] = unit_cache_entry{name.data(), name.size(), index};
  return index;
}

[[nodiscard]] inline std::string_view unit_name(std::uint32_t index) noexcept {
  return units_registered.names[index];
}
}  // namespace detail

/// Registers (once) and returns the id of a user unit.
[[nodiscard]] inline unit_id unit(std::string_view name) { return unit_id{detail::register_unit(name)}; }

/// FLOPs done by the calling thread, charged to its innermost open scope (none open: dropped).
/// FLOPs follow PyTorch's FlopCounterMode convention: a GEMM is 2*M*N*K (a MAC is two FLOPs).
inline void add_flops(std::uint64_t n) noexcept { detail::this_thread.counters.flops += n; }

/// User units (samples, tokens, ...) charged to the innermost open scope's budget and to the
/// stage of every scope open on this thread.
inline void add_units(unit_id id, double n) {
  if (!(std::isfinite(n) && n >= 0))
    throw std::invalid_argument("frugal::add_units: " + std::string(detail::unit_name(id.index)) +
                                " must be finite and >= 0, got " + std::to_string(n));
  detail::frame* f = detail::this_thread.current;
  if (f == nullptr) return;
  f->block->units[id.index].add(n);
  for (; f != nullptr; f = f->prev)
    if (f->counts_stage) f->stage->units[id.index].add(n);  // a re-entered stage: once
}

/// add_units() by name: looks the unit up first (throws as frugal::unit() does for a bad name or
/// too many units).
inline void add_units(std::string_view name, double n) { add_units(unit_id{detail::unit_index(name)}, n); }

}  // namespace frugal
