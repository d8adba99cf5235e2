/// @file
/// Compile-time settings of frugal, each a FRUGAL_ macro a user may define before including
/// any frugal header (the README lists them all in one table).
#pragma once

/// How many distinct user-unit names ("samples", "tokens", ...) a process may use. Each
/// thread's ledger keeps one counter per unit, so the number is fixed at compile time.
#ifndef FRUGAL_MAX_UNITS
#define FRUGAL_MAX_UNITS 16
#endif

/// Entries of the per-thread cache that maps (budget, stage) to that thread's ledger slot.
/// A power of two; a miss costs a mutex and a lookup, so size it above the number of
/// (budget, stage) pairs one thread uses in its inner loop.
#ifndef FRUGAL_THREAD_CACHE_SIZE
#define FRUGAL_THREAD_CACHE_SIZE 64
#endif

/// How many of the innermost open scopes a frugal::context carries to another thread. Deeper
/// scopes still get the work's charges in their budgets; their stages' totals miss it.
#ifndef FRUGAL_MAX_CONTEXT_DEPTH
#define FRUGAL_MAX_CONTEXT_DEPTH 8
#endif

/// Misuse checks (a scope outliving its budget, scopes closed out of order). On by default
/// in builds without NDEBUG; define to 1 or 0 to force.
#ifndef FRUGAL_ENABLE_ASSERTS
#ifdef NDEBUG
#define FRUGAL_ENABLE_ASSERTS 0
#else
#define FRUGAL_ENABLE_ASSERTS 1
#endif
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FRUGAL_LIKELY(x) __builtin_expect(!!(x), 1)
#define FRUGAL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define FRUGAL_NOINLINE __attribute__((noinline))
#else
#define FRUGAL_LIKELY(x) (x)
#define FRUGAL_UNLIKELY(x) (x)
#define FRUGAL_NOINLINE
#endif

#include <cstdio>
#include <cstdlib>

namespace frugal::detail {
// Misuse that would silently corrupt accounting: report it and stop, in debug builds only.
[[noreturn]] inline void assertion_failed(const char* what, const char* file, int line) noexcept {
  std::fprintf(stderr, "frugal: %s (%s:%d)\n", what, file, line);
  std::abort();
}
}  // namespace frugal::detail

#if FRUGAL_ENABLE_ASSERTS
#define FRUGAL_ASSERT(cond, what) \
  ((cond) ? static_cast<void>(0) : ::frugal::detail::assertion_failed(what, __FILE__, __LINE__))
#else
#define FRUGAL_ASSERT(cond, what) static_cast<void>(0)
#endif
