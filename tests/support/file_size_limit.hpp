// RLIMIT_FSIZE lowered while alive: a write past it fails with EFBIG, as on a full disk, even
// as root (SIGXFSZ ignored meanwhile, so the process is not killed for it).
#pragma once

#include <signal.h>
#include <sys/resource.h>

namespace frugal_test {

class file_size_limit {
 public:
  explicit file_size_limit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGXFSZ, &ignore, &saved_action_);
    struct rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &lowered);
  }
  ~file_size_limit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    ::sigaction(SIGXFSZ, &saved_action_, nullptr);
  }
  file_size_limit(const file_size_limit&) = delete;
  file_size_limit& operator=(const file_size_limit&) = delete;

 private:
  struct rlimit saved_ {};
  struct sigaction saved_action_ {};
};

}  // namespace frugal_test
