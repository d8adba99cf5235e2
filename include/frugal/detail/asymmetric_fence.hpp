/// @file
/// An asymmetric fence: a free one for a thread on a hot path, and an expensive one, Linux's
/// membarrier(2), for the rare thread that must synchronise with it.
///
/// A store then a load on one thread (Dekker's pattern: "I am in; is anyone else?") needs a
/// full fence between them, a locked instruction on x86 (~7 ns here). With membarrier the
/// fast side needs only a compiler barrier: the slow side's membarrier makes every running
/// thread of the process execute a full fence, so for the fast thread either its store is
/// visible to the slow side's later load, or its load sees the slow side's earlier store.
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace frugal::detail {

/// The fast side: orders the calling thread's store before its load against a heavy_fence()
/// on another thread. Costs nothing at run time.
inline void light_fence() noexcept { std::atomic_signal_fence(std::memory_order_seq_cst); }

#if defined(__linux__) && defined(__NR_membarrier)
/// Whether heavy_fence() is available: the kernel has membarrier's private expedited command
/// (Linux 4.14 on) and took this process's registration for it. Registers on the first call;
/// thread-safe.
[[nodiscard]] inline bool asymmetric_fence_available() noexcept {
  static const bool available = [] {
    const long commands = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (commands < 0 || !(commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
    return syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  }();
  return available;
}

/// The slow side (~1 us): returns after every running thread of the process executed a full
/// fence. Only after asymmetric_fence_available() returned true.
inline void heavy_fence() noexcept {
  // It cannot fail once registered. If a kernel broke that, the fast sides would no longer be
  // ordered and counts would go silently wrong: refuse loudly instead.
  if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
    std::fputs("frugal: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after registration\n", stderr);
    std::abort();
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

/// Gives the CPU up while waiting for the other side of the fence (rare, and short unless
/// that thread lost its CPU).
inline void yield_while_waiting() noexcept { (void)sched_yield(); }
#else
[[nodiscard]] inline bool asymmetric_fence_available() noexcept { return false; }
inline void heavy_fence() noexcept { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void yield_while_waiting() noexcept {}
#endif

}  // namespace frugal::detail
