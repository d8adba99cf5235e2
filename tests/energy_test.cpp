// Tests for frugal/energy.hpp: the RAPL energy counter on fake powercap trees (flat and nested
// subzones, wraps, several packages, the zones left out), the exact reasons it gives where it
// cannot count (a missing root, no zone, missing, garbage or unreadable files, a file that
// vanishes later), concurrent readers, and the process's shared counter.
#include <frugal/energy.hpp>

#include <gtest/gtest.h>

#include <grp.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/temp_tree.hpp"

namespace {

// A real package's max_energy_range_uj (0xFFFFFFFF energy units of 61.035 uJ).
constexpr std::uint64_t range_uj = 262143328850;

// What joules() returns for a total of `uj` microjoules (it divides the whole total by 1e6).
double joules_of(std::uint64_t uj) { return static_cast<double>(uj) / 1e6; }

// Each test gets its own fake powercap root.
class Energy : public ::testing::Test {
 protected:
  // A zone directory `dir` (relative to the root) with its name, energy_uj and max_energy_range_uj.
  void zone(const std::string& dir, const std::string& name, std::uint64_t energy_uj,
            std::uint64_t max_uj = range_uj) const {
    tree_.write(dir + "/name", name + "\n");
    tree_.write(dir + "/max_energy_range_uj", std::to_string(max_uj) + "\n");
    set(dir, energy_uj);
  }
  void set(const std::string& dir, std::uint64_t energy_uj) const {
    tree_.write(dir + "/energy_uj", std::to_string(energy_uj) + "\n");
  }
  // Replaces energy_uj with one rename, so that a concurrent reader never sees it half written
  // (as sysfs, which makes the text on each read).
  void replace(const std::string& dir, std::uint64_t energy_uj) const {
    const std::string tmp = path(dir + "/energy_uj.tmp");
    std::ofstream(tmp) << energy_uj << "\n";
    std::filesystem::rename(tmp, path(dir + "/energy_uj"));
  }
  void write(const std::string& relative, const std::string& text) const { tree_.write(relative, text); }
  [[nodiscard]] std::string path(const std::string& relative) const { return tree_.path(relative); }
  [[nodiscard]] const std::string& root() const { return tree_.root(); }

  // Expects `counter` unavailable for exactly `why`, and counting nothing.
  static void expect_unavailable(frugal::energy_counter& counter, const std::string& why) {
    EXPECT_FALSE(counter.available());
    EXPECT_EQ(counter.why_unavailable(), why);
    EXPECT_TRUE(counter.domains().empty());
    EXPECT_EQ(counter.joules(), std::nullopt);
    EXPECT_EQ(counter.why_unavailable(), why);
  }

  frugal_test::temp_tree tree_;
};

void expect_domain(const frugal::energy_domain& d, const std::string& zone, const std::string& name,
                   std::uint64_t max_uj = range_uj) {
  EXPECT_EQ(d.zone, zone);
  EXPECT_EQ(d.name, name);
  EXPECT_EQ(d.max_range_uj, static_cast<double>(max_uj));
}

// 1. A package and its dram subzone as the flat links /sys/class/powercap has.
TEST_F(Energy, SumsPackageAndDramSinceConstruction) {
  zone("intel-rapl:0", "package-0", 1000000);
  zone("intel-rapl:0:0", "dram", 5000);
  frugal::energy_counter counter(root());
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  EXPECT_EQ(counter.why_unavailable(), "");
  EXPECT_EQ(counter.root(), root());
  const std::vector<frugal::energy_domain> domains = counter.domains();
  ASSERT_EQ(domains.size(), 2u);
  expect_domain(domains[0], "intel-rapl:0", "package-0");
  expect_domain(domains[1], "intel-rapl:0:0", "dram");

  EXPECT_EQ(counter.joules(), 0.0);
  set("intel-rapl:0", 2500000);  // +1500000 uJ
  set("intel-rapl:0:0", 255000);  // +250000 uJ
  EXPECT_EQ(counter.joules(), 1.75);
  EXPECT_EQ(counter.joules(), 1.75);  // nothing used in between
  set("intel-rapl:0", 3000000);  // +500000 uJ
  EXPECT_EQ(counter.joules(), 2.25);
  EXPECT_TRUE(counter.available());
}

TEST_F(Energy, RootWithATrailingSlash) {
  zone("intel-rapl:0", "package-0", 100);
  frugal::energy_counter counter(root() + "/");
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  set("intel-rapl:0", 250100);
  EXPECT_EQ(counter.joules(), 0.25);
}

// 2. The subzone inside its package's directory, as /sys/devices/virtual/powercap has it.
TEST_F(Energy, DramNestedInItsPackage) {
  zone("intel-rapl:0", "package-0", 0);
  zone("intel-rapl:0/intel-rapl:0:0", "dram", 0);
  frugal::energy_counter counter(root());
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  const std::vector<frugal::energy_domain> domains = counter.domains();
  ASSERT_EQ(domains.size(), 2u);
  expect_domain(domains[0], "intel-rapl:0", "package-0");
  expect_domain(domains[1], "intel-rapl:0:0", "dram");
  set("intel-rapl:0", 1000000);
  set("intel-rapl:0/intel-rapl:0:0", 500000);
  EXPECT_EQ(counter.joules(), 1.5);
}

// Both layouts at once, as sysfs has them: the flat entry links to the nested directory.
TEST_F(Energy, DramInBothLayoutsCountsOnce) {
  zone("intel-rapl:0", "package-0", 0);
  zone("intel-rapl:0/intel-rapl:0:0", "dram", 0);
  std::filesystem::create_directory_symlink(path("intel-rapl:0/intel-rapl:0:0"), path("intel-rapl:0:0"));
  frugal::energy_counter counter(root());
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  ASSERT_EQ(counter.domains().size(), 2u);
  expect_domain(counter.domains()[1], "intel-rapl:0:0", "dram");
  set("intel-rapl:0", 1000000);
  set("intel-rapl:0/intel-rapl:0:0", 500000);
  EXPECT_EQ(counter.joules(), 1.5);
}

// Both layouts as separate copies that say the same: still once.
TEST_F(Energy, DramCopiesInBothLayoutsCountOnce) {
  zone("intel-rapl:0", "package-0", 0);
  zone("intel-rapl:0:0", "dram", 0);
  zone("intel-rapl:0/intel-rapl:0:0", "dram", 0);
  frugal::energy_counter counter(root());
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  ASSERT_EQ(counter.domains().size(), 2u);
  set("intel-rapl:0", 1000000);
  set("intel-rapl:0:0", 500000);
  set("intel-rapl:0/intel-rapl:0:0", 500000);
  EXPECT_EQ(counter.joules(), 1.5);
}

// 3. A reading below the last one wrapped: reading + (max_energy_range_uj - last).
TEST_F(Energy, WrapsAddTheRestOfTheRange) {
  zone("intel-rapl:0", "package-0", 262143000000);
  frugal::energy_counter counter(root());
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  expect_domain(counter.domains().at(0), "intel-rapl:0", "package-0", 262143328850);

  set("intel-rapl:0", 1000);  // wrap: 1000 + (262143328850 - 262143000000) = 329850
  EXPECT_EQ(counter.joules(), joules_of(329850));
  EXPECT_EQ(counter.joules(), 0.32985);
  set("intel-rapl:0", 262143000000);  // no wrap: +262142999000
  EXPECT_EQ(counter.joules(), joules_of(329850 + 262142999000));
  set("intel-rapl:0", 1000);  // second wrap: +329850 again
  EXPECT_EQ(counter.joules(), joules_of(2 * 329850 + 262142999000));
  set("intel-rapl:0", 0);  // a wrap straight after a wrap: 0 + (262143328850 - 1000)
  EXPECT_EQ(counter.joules(), joules_of(2 * 329850 + 262142999000 + 262143327850));
}

// A wrap in one domain leaves the others' differences alone.
TEST_F(Energy, WrapInOneDomainOnly) {
  zone("intel-rapl:0", "package-0", 999000, 1000000);
  zone("intel-rapl:0:0", "dram", 0, 1000000);
  frugal::energy_counter counter(root());
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  set("intel-rapl:0", 500000);    // wrap: 500000 + (1000000 - 999000) = 501000
  set("intel-rapl:0:0", 249000);  // +249000
  EXPECT_EQ(counter.joules(), 0.75);
}

// 4. Two packages summed with their dram; psys, core, uncore and intel-rapl-mmio left out.
TEST_F(Energy, SumsPackagesAndLeavesOutOverlappingZones) {
  constexpr std::uint64_t huge = 200000000000;
  zone("intel-rapl:0", "package-0", 0);
  zone("intel-rapl:0:0", "core", 0);
  zone("intel-rapl:0:1", "uncore", 0);
  zone("intel-rapl:0:2", "dram", 0);
  zone("intel-rapl:1", "package-1", 0);
  zone("intel-rapl:1/intel-rapl:1:0", "core", 0);
  zone("intel-rapl:1/intel-rapl:1:1", "dram", 0);
  zone("intel-rapl:2", "psys", 0);
  zone("intel-rapl-mmio:0", "package-0", 0);
  write("intel-rapl/enabled", "1\n");  // the control type's directory, no zone
  frugal::energy_counter counter(root());
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  const std::vector<frugal::energy_domain> domains = counter.domains();
  ASSERT_EQ(domains.size(), 4u);
  expect_domain(domains[0], "intel-rapl:0", "package-0");
  expect_domain(domains[1], "intel-rapl:0:2", "dram");
  expect_domain(domains[2], "intel-rapl:1", "package-1");
  expect_domain(domains[3], "intel-rapl:1:1", "dram");

  for (const char* left_out : {"intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:1/intel-rapl:1:0", "intel-rapl:2",
                               "intel-rapl-mmio:0"})
    set(left_out, huge);
  set("intel-rapl:0", 1000000);
  set("intel-rapl:0:2", 250000);
  set("intel-rapl:1", 2000000);
  set("intel-rapl:1/intel-rapl:1:1", 500000);
  EXPECT_EQ(counter.joules(), 3.75);
}

// 5. Where nothing can be counted, and why.
TEST_F(Energy, MissingRoot) {
  const std::string missing = root() + "/no-powercap";
  frugal::energy_counter counter(missing);
  expect_unavailable(counter, "no " + missing +
                                  ": the kernel exposes no powercap interface here (no RAPL driver, a virtual "
                                  "machine, or not Linux)");
}

TEST_F(Energy, RootIsAFile) {
  write("powercap", "");
  frugal::energy_counter counter(path("powercap"));
  expect_unavailable(counter, path("powercap") + " is not a directory");
}

TEST_F(Energy, RootWithoutIntelRaplZones) {
  zone("intel-rapl-mmio:0", "package-0", 0);
  write("intel-rapl/enabled", "1\n");
  write("dtpm/enabled", "1\n");
  write("intel-rapl:0", "a file, not a zone directory\n");
  frugal::energy_counter counter(root());
  expect_unavailable(counter, root() + " has no intel-rapl zone (no RAPL domains)");
}

TEST_F(Energy, OnlyZonesThatAreLeftOut) {
  zone("intel-rapl:1", "psys", 0);
  zone("intel-rapl:0:0", "core", 0);
  frugal::energy_counter counter(root());
  expect_unavailable(counter,
                     root() + " has no intel-rapl package or dram zone, only intel-rapl:0:0 (core), intel-rapl:1 (psys)");
}

TEST_F(Energy, MissingEnergyFile) {
  zone("intel-rapl:0", "package-0", 0);
  zone("intel-rapl:0:0", "dram", 0);
  std::filesystem::remove(path("intel-rapl:0:0/energy_uj"));
  frugal::energy_counter counter(root());
  expect_unavailable(counter, path("intel-rapl:0:0/energy_uj") + " is not readable: No such file or directory");
}

TEST_F(Energy, MissingNameFile) {
  zone("intel-rapl:0", "package-0", 0);
  std::filesystem::remove(path("intel-rapl:0/name"));
  frugal::energy_counter counter(root());
  expect_unavailable(counter, path("intel-rapl:0/name") + " is not readable: No such file or directory");
}

TEST_F(Energy, EnergyThatIsNotAWholeNumber) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"abc\n", "'abc'"}, {"-5\n", "'-5'"}, {"+5\n", "'+5'"}, {"1.5\n", "'1.5'"}, {"12 34\n", "'12 34'"},
      {"\n", "''"}, {"18446744073709551616\n", "'18446744073709551616'"}};
  for (const auto& [text, quoted] : cases) {
    frugal_test::temp_tree tree;  // a fresh tree for each
    tree.write("intel-rapl:0/name", "package-0\n");
    tree.write("intel-rapl:0/max_energy_range_uj", std::to_string(range_uj) + "\n");
    tree.write("intel-rapl:0/energy_uj", text);
    frugal::energy_counter counter(tree.root());
    SCOPED_TRACE(text);
    expect_unavailable(counter,
                       tree.path("intel-rapl:0/energy_uj") + " holds " + quoted + ", not a whole number of microjoules");
  }
}

TEST_F(Energy, EnergyAboveItsRange) {
  zone("intel-rapl:0", "package-0", 1001, 1000);
  frugal::energy_counter counter(root());
  expect_unavailable(counter, path("intel-rapl:0/energy_uj") + " holds '1001', more than its max_energy_range_uj (1000)");
}

TEST_F(Energy, MissingRange) {
  zone("intel-rapl:0", "package-0", 0);
  std::filesystem::remove(path("intel-rapl:0/max_energy_range_uj"));
  frugal::energy_counter counter(root());
  expect_unavailable(counter, path("intel-rapl:0/max_energy_range_uj") + " is not readable: No such file or directory");
}

TEST_F(Energy, ZeroRange) {
  zone("intel-rapl:0", "package-0", 0, 0);
  frugal::energy_counter counter(root());
  expect_unavailable(counter, path("intel-rapl:0/max_energy_range_uj") + " holds '0', not a positive number of microjoules");
}

TEST_F(Energy, GarbageRange) {
  zone("intel-rapl:0", "package-0", 0);
  write("intel-rapl:0/max_energy_range_uj", "lots\n");
  frugal::energy_counter counter(root());
  expect_unavailable(counter,
                     path("intel-rapl:0/max_energy_range_uj") + " holds 'lots', not a whole number of microjoules");
}

TEST(EnergyRoot, EmptyRootIsAnError) {
  try {
    const frugal::energy_counter counter{""};
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "frugal: energy_counter: root='': expected the powercap directory, such as /sys/class/powercap");
  }
}

// 6. A file that vanishes after construction: no total from then on, even once it is back.
TEST_F(Energy, FileRemovedLaterStopsTheCount) {
  zone("intel-rapl:0", "package-0", 0);
  zone("intel-rapl:0:0", "dram", 0);
  frugal::energy_counter counter(root());
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  set("intel-rapl:0", 1000000);
  EXPECT_EQ(counter.joules(), 1.0);

  std::filesystem::remove(path("intel-rapl:0:0/energy_uj"));
  EXPECT_EQ(counter.joules(), std::nullopt);
  const std::string why = path("intel-rapl:0:0/energy_uj") + " is not readable: No such file or directory";
  EXPECT_FALSE(counter.available());
  EXPECT_EQ(counter.why_unavailable(), why);
  EXPECT_EQ(counter.domains().size(), 2u);  // what was summed until then

  set("intel-rapl:0:0", 0);
  EXPECT_EQ(counter.joules(), std::nullopt);
  EXPECT_FALSE(counter.available());
  EXPECT_EQ(counter.why_unavailable(), why);
}

TEST_F(Energy, GarbageLaterStopsTheCount) {
  zone("intel-rapl:0", "package-0", 0);
  frugal::energy_counter counter(root());
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  write("intel-rapl:0/energy_uj", "oops\n");
  EXPECT_EQ(counter.joules(), std::nullopt);
  EXPECT_EQ(counter.why_unavailable(), path("intel-rapl:0/energy_uj") + " holds 'oops', not a whole number of microjoules");
  set("intel-rapl:0", 5);
  EXPECT_EQ(counter.joules(), std::nullopt);
}

// 7. An energy_uj the process may not read (mode 0, read as nobody: root ignores modes). The
// counter is made in a child process that drops to nobody; no threads run before the fork.
TEST_F(Energy, PermissionDeniedSaysWhy) {
  constexpr int cannot_drop_root = 77;
  zone("intel-rapl:0", "package-0", 0);
  for (const char* dir : {"", "intel-rapl:0"}) ASSERT_EQ(::chmod(path(dir).c_str(), 0755), 0);
  for (const char* file : {"intel-rapl:0/name", "intel-rapl:0/max_energy_range_uj"})
    ASSERT_EQ(::chmod(path(file).c_str(), 0644), 0);
  const std::string energy = path("intel-rapl:0/energy_uj");
  ASSERT_EQ(::chmod(energy.c_str(), 0), 0);

  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    if (::geteuid() == 0 && (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0))
      ::_exit(cannot_drop_root);
    const frugal::energy_counter counter(root());
    const std::string why = counter.why_unavailable();
    if (::write(fds[1], why.data(), why.size()) < 0) ::_exit(2);
    ::_exit(!counter.available() && why.find("Permission denied") != std::string::npos ? 0 : 1);
  }
  ::close(fds[1]);
  std::string why;
  char buf[256];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) why.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == cannot_drop_root)
    GTEST_SKIP() << "running as root, and the child could not become nobody (uid 65534) to be refused";
  EXPECT_EQ(WEXITSTATUS(status), 0) << why;
  EXPECT_EQ(why, energy + " is not readable: Permission denied (since Linux 5.10 only root may read RAPL counters)");
}

// 8. Concurrent readers while the counters move: each sees a growing total, and the last is exact.
TEST_F(Energy, ConcurrentReaders) {
  zone("intel-rapl:0", "package-0", 0);
  zone("intel-rapl:0:0", "dram", 0);
  frugal::energy_counter counter(root());
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t)
    readers.emplace_back([&] {
      double last = 0;
      while (!done.load()) {
        const std::optional<double> j = counter.joules();
        if (!j || *j < last) failures.fetch_add(1);
        if (j) last = *j;
        reads.fetch_add(1);
      }
    });
  constexpr std::uint64_t steps = 200;
  for (std::uint64_t step = 1; step <= steps; ++step) {
    replace("intel-rapl:0", step * 1000);
    replace("intel-rapl:0:0", step * 500);
  }
  done.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0) << counter.why_unavailable();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(counter.joules(), joules_of(steps * 1500));
  EXPECT_EQ(counter.joules(), 0.3);
}

// 9. The process's counter: one object, available exactly when it has no reason not to be.
TEST(EnergySystem, OneSharedCounter) {
  frugal::energy_counter& a = frugal::system_energy_counter();
  frugal::energy_counter& b = frugal::system_energy_counter();
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(a.root(), "/sys/class/powercap");
  EXPECT_EQ(a.available(), a.why_unavailable().empty());
  if (a.available()) {
    EXPECT_FALSE(a.domains().empty());
  } else {
    EXPECT_TRUE(a.domains().empty());
    EXPECT_EQ(a.joules(), std::nullopt);
  }
}

}  // namespace
