/// @file
/// Replacements of the whole malloc family and of every operator new/delete, forwarding to
/// glibc's allocator and counting into frugal's per-thread meters. Include in exactly ONE .cpp.
///
/// With CMake, link the target frugal::allocation_hooks instead (it compiles this header once).
/// Each hook is a forward to glibc's __libc_* entry point plus a few thread-local adds; no hook
/// locks, prints or allocates. Under AddressSanitizer or ThreadSanitizer the sanitizer owns
/// malloc: this header then defines nothing but the marker that tells
/// frugal::allocation_tracking() why tracking is unavailable. Static linking is unsupported:
/// glibc's libc.a defines malloc and __libc_malloc in one object, so the program cannot both
/// replace one and call the other (see the README).
#pragma once

#include <frugal/detail/heap.hpp>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FRUGAL_HOOKS_STEP_ASIDE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define FRUGAL_HOOKS_STEP_ASIDE 1
#endif
#endif

#if !defined(__GLIBC__) && !defined(FRUGAL_HOOKS_STEP_ASIDE)
#include <features.h>
#endif

#ifdef FRUGAL_HOOKS_STEP_ASIDE

extern "C" const int frugal_allocation_hooks_mode = static_cast<int>(frugal::detail::hooks_mode::sanitizer);

#else

#if !defined(__GLIBC__) || !(defined(__x86_64__) || defined(__aarch64__))
#error "frugal's allocation hooks support glibc on x86_64 and aarch64 only"
#endif

// Every declaration of the family first, then the definitions below match them: noexcept, as
// glibc's __THROW reads in C++. The compiler's <mm_malloc.h> (pulled in by Eigen's SSE code)
// declares posix_memalign again, throw() with GCC and without a specification with Clang, which
// either accepts after glibc's declaration but not after a user's definition. So any include
// order compiles: before, this header ahead of <Eigen/Dense> or <frugal/tbb.hpp> failed on
// GCC 12 ("different exception specifier").
#include <malloc.h>
#include <stdlib.h>
#if defined(__x86_64__) && __has_include(<mm_malloc.h>)
#include <mm_malloc.h>
#endif

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <new>

// noplt: call glibc through its GOT entry, one indirect jump fewer on every allocation.
#if defined(__GNUC__) && !defined(__clang__)
#define FRUGAL_NOPLT __attribute__((noplt))
#else
#define FRUGAL_NOPLT
#endif

extern "C" {
// glibc's own allocator, exported for exactly this use (a program that replaces malloc). C,
// so it never throws: declared noexcept, a call from a noexcept hook needs no terminate landing
// pad, and free() can end in a jump to __libc_free instead of a call and a return.
FRUGAL_NOPLT void* __libc_malloc(std::size_t) noexcept;
FRUGAL_NOPLT void __libc_free(void*) noexcept;
FRUGAL_NOPLT void* __libc_calloc(std::size_t, std::size_t) noexcept;
FRUGAL_NOPLT void* __libc_realloc(void*, std::size_t) noexcept;
FRUGAL_NOPLT void* __libc_memalign(std::size_t, std::size_t) noexcept;
FRUGAL_NOPLT void* __libc_valloc(std::size_t) noexcept;
FRUGAL_NOPLT void* __libc_pvalloc(std::size_t) noexcept;

/// Link-time marker read through a weak reference by frugal's heap accounting: defined, as
/// "installed", only in the program that expands this header, so allocation_tracking() can tell
/// whether the hooks are linked in (absent: none; the sanitizer build defines "sanitizer").
extern const int frugal_allocation_hooks_mode;
const int frugal_allocation_hooks_mode = static_cast<int>(frugal::detail::hooks_mode::installed);
}

namespace frugal::detail::hooks {

// The usable size of a glibc chunk, read from its header the way glibc's malloc_usable_size
// does (without memory tagging, which x86_64 lacks): the size field sits one word before the
// user pointer; bit 1 marks an mmapped chunk, which carries one more word of overhead.
inline std::size_t usable_size(const void* p) noexcept {
  // The header lies outside the object the compiler knows about: hide the pointer's origin
  // so it neither warns about nor optimises the read.
  auto address = reinterpret_cast<std::uintptr_t>(p) - sizeof(std::size_t);
  __asm__("" : "+r"(address));
  const std::size_t field = *reinterpret_cast<const std::size_t*>(address);
  const std::size_t usable = (field & ~static_cast<std::size_t>(7)) - sizeof(std::size_t);
  return FRUGAL_LIKELY((field & 2) == 0) ? usable : usable - sizeof(std::size_t);
}

inline void* counted(void* p, std::size_t requested) noexcept {
  return p ? record_allocation(p, requested, usable_size(p)) : p;
}

inline bool valid_alignment(std::size_t alignment) noexcept {
  return alignment != 0 && (alignment & (alignment - 1)) == 0;
}

inline void* new_or_throw(std::size_t n) {
  for (;;) {
    if (void* p = counted(__libc_malloc(n), n)) return p;
    std::new_handler handler = std::get_new_handler();
    if (!handler) throw std::bad_alloc();
    handler();
  }
}

inline void* aligned_new_or_throw(std::size_t n, std::size_t alignment) {
  for (;;) {
    if (void* p = counted(__libc_memalign(alignment, n), n)) return p;
    std::new_handler handler = std::get_new_handler();
    if (!handler) throw std::bad_alloc();
    handler();
  }
}

inline void release(void* p) noexcept {
  if (p) __libc_free(record_free(p, usable_size(p)));
}

}  // namespace frugal::detail::hooks

// Every replacement is noexcept, as glibc declares it (see the includes above).
extern "C" {

///@{
/// Replaces the glibc function of the same name: calls glibc's own (`__libc_*`) and records the
/// allocation (requested and usable bytes) or the free in frugal's heap accounting. Results and
/// errors are glibc's: nullptr with errno ENOMEM or EINVAL, posix_memalign's error code.
void* malloc(std::size_t n) noexcept { return frugal::detail::hooks::counted(__libc_malloc(n), n); }

void free(void* p) noexcept { frugal::detail::hooks::release(p); }

/// Overflow is checked here so that calloc(SIZE_MAX, 2) fails without counting anything.
void* calloc(std::size_t count, std::size_t size) noexcept {
  std::size_t n = 0;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return nullptr;
  }
  return frugal::detail::hooks::counted(__libc_calloc(count, size), n);
}

/// realloc counts as one allocation of the new size and a free of the old block; realloc(p, 0)
/// frees p (glibc's behaviour); a failed realloc changes nothing.
void* realloc(void* p, std::size_t n) noexcept {
  using frugal::detail::hooks::usable_size;
  if (!p) return malloc(n);
  const std::size_t old = usable_size(p);
  void* q = __libc_realloc(p, n);
  if (q) {
    (void)frugal::detail::record_free(nullptr, old);  // only the accounting: glibc moved or kept the block
    return frugal::detail::record_allocation(q, n, usable_size(q));
  }
  if (n == 0) (void)frugal::detail::record_free(nullptr, old);  // glibc freed the block
  return q;
}

void* reallocarray(void* p, std::size_t count, std::size_t size) noexcept {
  std::size_t n = 0;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(p, n);
}

void* memalign(std::size_t alignment, std::size_t n) noexcept {
  return frugal::detail::hooks::counted(__libc_memalign(alignment, n), n);
}

void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept {
  if (!frugal::detail::hooks::valid_alignment(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return frugal::detail::hooks::counted(__libc_memalign(alignment, n), n);
}

int posix_memalign(void** out, std::size_t alignment, std::size_t n) noexcept {
  if (!frugal::detail::hooks::valid_alignment(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  void* p = frugal::detail::hooks::counted(__libc_memalign(alignment, n), n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

void* valloc(std::size_t n) noexcept { return frugal::detail::hooks::counted(__libc_valloc(n), n); }

void* pvalloc(std::size_t n) noexcept { return frugal::detail::hooks::counted(__libc_pvalloc(n), n); }

std::size_t malloc_usable_size(void* p) noexcept { return p ? frugal::detail::hooks::usable_size(p) : 0; }
///@}

}  // extern "C"

///@{
/// Replaces the global operator new of that signature: allocates through glibc, records the
/// allocation in frugal's heap accounting, calls the new-handler and retries when out of memory,
/// then throws std::bad_alloc (the nothrow forms return nullptr instead).
void* operator new(std::size_t n) { return frugal::detail::hooks::new_or_throw(n); }
void* operator new[](std::size_t n) { return frugal::detail::hooks::new_or_throw(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return frugal::detail::hooks::new_or_throw(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return frugal::detail::hooks::new_or_throw(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a) {
  return frugal::detail::hooks::aligned_new_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return frugal::detail::hooks::aligned_new_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return frugal::detail::hooks::aligned_new_or_throw(n, static_cast<std::size_t>(a));
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return frugal::detail::hooks::aligned_new_or_throw(n, static_cast<std::size_t>(a));
  } catch (...) {
    return nullptr;
  }
}
///@}

///@{
/// Replaces the global operator delete of that signature: records the free (the block's usable
/// bytes) in frugal's heap accounting and frees it through glibc; nullptr does nothing.
void operator delete(void* p) noexcept { frugal::detail::hooks::release(p); }
void operator delete[](void* p) noexcept { frugal::detail::hooks::release(p); }
void operator delete(void* p, std::size_t) noexcept { frugal::detail::hooks::release(p); }
void operator delete[](void* p, std::size_t) noexcept { frugal::detail::hooks::release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { frugal::detail::hooks::release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { frugal::detail::hooks::release(p); }
void operator delete(void* p, std::align_val_t) noexcept { frugal::detail::hooks::release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { frugal::detail::hooks::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { frugal::detail::hooks::release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { frugal::detail::hooks::release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  frugal::detail::hooks::release(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  frugal::detail::hooks::release(p);
}
///@}

#endif  // FRUGAL_HOOKS_STEP_ASIDE
