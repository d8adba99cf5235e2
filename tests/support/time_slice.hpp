// The time slice a thread asks the Linux scheduler for, read back with sched_getattr, for the
// tests of the threads frugal gives a short slice (the deadline watchdog's, and a caller waiting
// for an abandonable loop). Test support only; Linux only.
#pragma once

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <cstdint>

namespace frugal_test {

#if defined(__linux__) && defined(SYS_sched_getattr) && defined(SYS_gettid)
#define FRUGAL_TEST_HAS_SLICES 1

// The slice thread `tid` (0: the caller) asks for: sched_attr::sched_runtime of a normal task,
// which Linux >= 6.12 reports (the default, 0.7 ms x (1 + log2 CPUs), unless changed); earlier
// kernels report 0.
inline std::uint64_t requested_slice_ns(long tid) {
  struct {
    std::uint32_t size, policy;
    std::uint64_t flags;
    std::int32_t nice;
    std::uint32_t priority;
    std::uint64_t runtime, deadline, period;
  } attr{};
  if (::syscall(SYS_sched_getattr, tid, &attr, sizeof attr, 0) != 0) return 0;
  return attr.runtime;
}

// The calling thread's kernel id.
inline long this_thread_tid() { return static_cast<long>(::syscall(SYS_gettid)); }
#endif

}  // namespace frugal_test
