/// @file
/// The shortest time slice Linux gives a normal thread, asked for by a thread that sleeps and
/// must run soon after it is woken: the deadline watchdog's own thread, and a caller waiting for
/// an abandonable loop. Linux >= 6.12 (EEVDF) takes sched_attr::sched_runtime as a normal task's
/// requested slice (clamped to [0.1 ms, 100 ms]) and lets the wake-up of a task with a shorter
/// slice preempt the one running at once instead of at the end of its slice; earlier kernels
/// ignore the field for normal tasks. No privilege is needed, and the thread's share of the CPU
/// does not change: only how soon its wake-up takes effect.
#pragma once

#include <cstdint>

#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace frugal::detail {

/// The slice asked for: Linux's floor for a custom slice.
inline constexpr std::uint64_t short_slice_ns = 100'000;

#if defined(__linux__) && defined(SYS_sched_setattr) && defined(SYS_sched_getattr)
struct sched_attr_v0 {  // SCHED_ATTR_SIZE_VER0 of <linux/sched/types.h>
  std::uint32_t size;
  std::uint32_t sched_policy;
  std::uint64_t sched_flags;
  std::int32_t sched_nice;
  std::uint32_t sched_priority;
  std::uint64_t sched_runtime;
  std::uint64_t sched_deadline;
  std::uint64_t sched_period;
};
static_assert(sizeof(sched_attr_v0) == 48);

/// The calling thread's attributes, when it is a SCHED_OTHER thread whose attributes could be
/// read; false otherwise (then nothing is touched).
[[nodiscard]] inline bool read_normal_sched_attr(sched_attr_v0& attr) noexcept {
  attr = sched_attr_v0{};
  return ::syscall(SYS_sched_getattr, 0, &attr, sizeof attr, 0) == 0 && attr.sched_policy == SCHED_OTHER;
}

/// Sets the calling thread's requested slice (0: the kernel's default), its nice value kept.
inline void write_slice(sched_attr_v0 attr, std::uint64_t slice_ns) noexcept {
  attr.size = sizeof attr;
  attr.sched_flags &= 0x01;  // SCHED_FLAG_RESET_ON_FORK, kept; nothing else applies here
  attr.sched_runtime = slice_ns;
  (void)::syscall(SYS_sched_setattr, 0, &attr, 0);
}
#endif

/// Asks for the short slice for the rest of the calling thread's life (a thread that only
/// sleeps and wakes). A failure leaves the thread as it was.
inline void request_short_slice() noexcept {
#if defined(__linux__) && defined(SYS_sched_setattr) && defined(SYS_sched_getattr)
  sched_attr_v0 attr;
  if (read_normal_sched_attr(attr)) write_slice(attr, short_slice_ns);
#endif
}

/// While alive, the calling thread asks for the short slice; the slice it had before comes back
/// at destruction. For a thread that computes as well as waits: a short slice while computing
/// would have it preempted every 0.1 ms on a busy machine.
class short_slice_while_waiting {
 public:
  short_slice_while_waiting() noexcept {
#if defined(__linux__) && defined(SYS_sched_setattr) && defined(SYS_sched_getattr)
    if (read_normal_sched_attr(before_)) {
      changed_ = true;
      write_slice(before_, short_slice_ns);
    }
#endif
  }
  ~short_slice_while_waiting() {
#if defined(__linux__) && defined(SYS_sched_setattr) && defined(SYS_sched_getattr)
    if (changed_) write_slice(before_, before_.sched_runtime);
#endif
  }
  short_slice_while_waiting(const short_slice_while_waiting&) = delete;
  short_slice_while_waiting& operator=(const short_slice_while_waiting&) = delete;

 private:
#if defined(__linux__) && defined(SYS_sched_setattr) && defined(SYS_sched_getattr)
  sched_attr_v0 before_{};
  bool changed_ = false;
#endif
};

}  // namespace frugal::detail
