// The allocation hooks across the life of threads and of the process: fork() with other threads
// alive, pthread-key destructors that allocate after frugal's exit handler, and thread churn.
#include <frugal/allocation.hpp>
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace {

// A volatile pointer keeps each call a real call into the hooks.
template <class F>
F* opaque(F* f) {
  F* volatile p = f;
  return p;
}

class ThreadLifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    const frugal::allocation_tracking_status status = frugal::allocation_tracking();
    if (!status) GTEST_SKIP() << "these tests exercise the allocation hooks: " << status.reason;
  }
};

// Threads the hooks' registry holds now (walked under its lock, as exact_heap_totals() does).
std::size_t registered_threads() {
  const frugal::detail::registry_lock lock;
  std::size_t n = 0;
  for (const frugal::detail::thread_state* ts = frugal::detail::heap.threads; ts && n < 1000000;
       ts = ts->heap.next)
    ++n;
  return n;
}

// Resident set of the process in bytes, from /proc/self/statm.
std::int64_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long pages = 0, resident = 0;
  const int read = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  return read == 2 ? static_cast<std::int64_t>(resident) * sysconf(_SC_PAGESIZE) : -1;
}

// Waits for a child for at most `limit`; a child still running then has hung: it is killed.
// Returns the wait status, or -1 for a hung child.
int wait_for_child(pid_t pid, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) return status;
    if (done < 0) return -2;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

// What the child of a fork does: read the totals it inherited, start a thread that allocates
// (glibc gives it a stack, and so a thread_state, that a parent's thread left behind), read the
// totals again. Exit codes say which step went wrong; a hang is caught by the parent.
[[noreturn]] void child_after_fork(const frugal::heap_totals& parent) {
  const frugal::heap_totals inherited = frugal::exact_heap_totals();
  // The helper's counts are folded in, not dropped: nothing is lost across the fork.
  if (inherited.allocations < parent.allocations || inherited.frees < parent.frees) _exit(3);
  std::thread fresh([] {
    for (int i = 0; i < 100; ++i) opaque(&std::free)(opaque(&std::malloc)(64));
  });
  fresh.join();
  const frugal::heap_totals after = frugal::exact_heap_totals();
  if (after.allocations < inherited.allocations + 100 || after.frees < inherited.frees + 100) _exit(4);
  if (registered_threads() > 1) _exit(5);  // this thread alone: no node of the parent's other threads
  _exit(0);
}

// The input: a helper thread alive (and registered), fork(), then in the child a new
// thread that allocates, then exact_heap_totals(). Before the fix the child hung every time: the
// dead helper's node was registered again and the registry's list became a loop.
TEST_F(ThreadLifecycle, AForkedChildStartsAThreadAndReadsExactTotals) {
  struct helper_thread {
    std::atomic<int> state{0};  // 1: has allocated; 2: may finish
    std::thread thread{[this] {
      opaque(&std::free)(opaque(&std::malloc)(64));
      state.store(1);
      while (state.load() != 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }};
    ~helper_thread() {
      state.store(2);
      thread.join();
    }
  } helper;
  while (helper.state.load() != 1) std::this_thread::yield();

  for (int round = 0; round < 3; ++round) {
    const frugal::heap_totals parent = frugal::exact_heap_totals();
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) child_after_fork(parent);
    const int status = wait_for_child(pid, std::chrono::seconds(10));
    ASSERT_NE(status, -1) << "the child hung (killed after 10 s)";
    ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    EXPECT_EQ(WEXITSTATUS(status), 0) << "3: counts lost at fork, 4: the new thread's counts missing, "
                                         "5: the parent's threads still registered";
  }
  // The parent's registry is intact: fork released its lock here too.
  EXPECT_GE(frugal::exact_heap_totals().allocations, 1u);
}

// fork() from a thread that never allocated: fork's prepare handler registers it first, so an
// allocation in another library's prepare handler cannot wait for the registry lock we hold.
TEST_F(ThreadLifecycle, AThreadThatNeverAllocatedCanFork) {
  pthread_t thread;
  struct result {
    frugal::heap_totals parent;
    int status = -3;
  } r;
  ASSERT_EQ(pthread_create(
                &thread, nullptr,
                [](void* arg) -> void* {
                  auto* out = static_cast<result*>(arg);
                  out->parent = frugal::exact_heap_totals();  // reads the registry, allocates nothing
                  const pid_t pid = fork();
                  if (pid == 0) child_after_fork(out->parent);
                  out->status = pid < 0 ? -4 : wait_for_child(pid, std::chrono::seconds(10));
                  return nullptr;
                },
                &r),
            0);
  ASSERT_EQ(pthread_join(thread, nullptr), 0);
  ASSERT_NE(r.status, -1) << "the child hung (killed after 10 s)";
  ASSERT_GE(r.status, 0) << "fork or waitpid failed";
  ASSERT_TRUE(WIFEXITED(r.status));
  EXPECT_EQ(WEXITSTATUS(r.status), 0);
}

// A key created now gets a higher index than frugal's (created at the process's first
// allocation), so its destructor runs after frugal's exit handler in the same round.
pthread_key_t late_key;
void late_destructor(void*) {
  for (int i = 0; i < 4; ++i) opaque(&std::free)(opaque(&std::malloc)(32));
}

// The same thread body with and without its work: what thread creation itself allocates cancels
// out. Before the fix the 4 allocations and frees of the late destructor were dropped.
TEST_F(ThreadLifecycle, AllocationsOfKeyDestructorsThatRunAfterFrugalsAreCounted) {
  ASSERT_EQ(pthread_key_create(&late_key, late_destructor), 0);
  ASSERT_GT(late_key, frugal::detail::heap.exit_key) << "the test needs a key whose destructor runs after frugal's";
  auto run_thread = [](bool work) {
    const frugal::heap_totals start = frugal::exact_heap_totals();
    std::thread t([work] {
      if (!work) return;
      pthread_setspecific(late_key, &late_key);
      for (int i = 0; i < 1000; ++i) opaque(&std::free)(opaque(&std::malloc)(64));
    });
    t.join();
    const frugal::heap_totals end = frugal::exact_heap_totals();
    return std::array<std::int64_t, 3>{static_cast<std::int64_t>(end.allocations - start.allocations),
                                       static_cast<std::int64_t>(end.frees - start.frees),
                                       end.live_bytes - start.live_bytes};
  };
  run_thread(false);
  const auto idle = run_thread(false);
  const auto busy = run_thread(true);
  pthread_key_delete(late_key);
  EXPECT_EQ(busy[0] - idle[0], 1004);
  EXPECT_EQ(busy[1] - idle[1], 1004);
  EXPECT_EQ(busy[2] - idle[2], 0);
}

// A destructor that re-arms its key runs again in later rounds, after frugal's node left the
// registry: its allocations count too, and a scope it opens is charged.
pthread_key_t rearmed_key;
std::atomic<int> rearmed_rounds{0};
void rearmed_destructor(void*) {
  opaque(&std::free)(opaque(&std::malloc)(48));
  if (rearmed_rounds.fetch_add(1) + 1 < 3) pthread_setspecific(rearmed_key, &rearmed_key);
}

TEST_F(ThreadLifecycle, AllocationsInLaterDestructorRoundsAreCounted) {
  ASSERT_EQ(pthread_key_create(&rearmed_key, rearmed_destructor), 0);
  // What creating and joining a thread allocates, measured on a second empty thread: the first
  // one after a while can allocate once more (glibc's thread caches), which made this flaky.
  std::thread([] {}).join();
  const frugal::heap_totals warm_start = frugal::exact_heap_totals();
  std::thread([] {}).join();
  const frugal::heap_totals start = frugal::exact_heap_totals();
  std::thread([] { pthread_setspecific(rearmed_key, &rearmed_key); }).join();
  const frugal::heap_totals end = frugal::exact_heap_totals();
  pthread_key_delete(rearmed_key);
  EXPECT_EQ(rearmed_rounds.load(), 3);
  EXPECT_EQ((end.allocations - start.allocations) - (start.allocations - warm_start.allocations), 3u);
  EXPECT_EQ((end.frees - start.frees) - (start.frees - warm_start.frees), 3u);
}

// Thread churn: every exited thread's registry node is recycled (glibc reuses its stack, which
// holds the node) and its counts folded, so the registry and the heap stay flat.
TEST_F(ThreadLifecycle, ThreadChurnLeavesTheRegistryAndTheHeapFlat) {
  // 20 000 by default (2 s); FRUGAL_TEST_CHURN_THREADS=100000 for the count.
  const char* requested = std::getenv("FRUGAL_TEST_CHURN_THREADS");
  const int threads = requested ? std::atoi(requested) : 20000;
  std::thread([] { opaque(&std::free)(opaque(&std::malloc)(64)); }).join();  // warm the stack cache
  const std::size_t nodes_before = registered_threads();
  const frugal::heap_totals before = frugal::exact_heap_totals();
  const std::int64_t rss_before = resident_bytes();
  for (int i = 0; i < threads; ++i)
    std::thread([] { opaque(&std::free)(opaque(&std::malloc)(64)); }).join();
  const std::int64_t rss_after = resident_bytes();
  const frugal::heap_totals after = frugal::exact_heap_totals();
  EXPECT_EQ(registered_threads(), nodes_before);
  EXPECT_GE(after.allocations - before.allocations, static_cast<std::uint64_t>(threads));
  EXPECT_LT(after.live_bytes - before.live_bytes, 64 * 1024);
  EXPECT_LT(rss_after - rss_before, 4 << 20) << "RSS " << rss_before << " -> " << rss_after;
  std::printf("thread churn: %d threads, RSS %+.2f MiB (%lld -> %lld bytes), live heap %+lld bytes\n", threads,
              static_cast<double>(rss_after - rss_before) / (1 << 20), static_cast<long long>(rss_before),
              static_cast<long long>(rss_after), static_cast<long long>(after.live_bytes - before.live_bytes));
}

}  // namespace
