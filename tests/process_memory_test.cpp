// Tests for frugal/process_memory.hpp and the rss_bytes level: the cgroup reader on fake trees
// (v2, nested v2, v1, unlimited, missing and garbage files), the limits peak_bytes=auto and
// rss_bytes=auto with their exact errors, the real resident set, and a budget's rss_bytes (the
// highest of its reads, never read on a scope's path, "not measured" where /proc is unreadable).
// No allocation hooks here: peak_bytes=auto's error without them is part of what is tested.
#include <frugal/budget.hpp>
#include <frugal/process_memory.hpp>
#include <frugal/report.hpp>
#include <frugal/scope.hpp>
#include <frugal/units.hpp>

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "support/checks.hpp"
#include "support/fake_resident_set.hpp"
#include "support/json_reader.hpp"
#include "support/temp_tree.hpp"

namespace {

// Under AddressSanitizer or ThreadSanitizer the resident set is not the program's alone: their
// runtimes keep freed blocks in a quarantine instead of unmapping them (a resident set that falls
// on free() can only be checked without them), and back the application's memory with shadow
// memory that the resident set counts too (ASan one byte per 8, TSan about four times as much:
// 64 MiB touched grew it by 72 MiB under ASan, 320 MiB under TSan), so touched bytes are a
// floor there, not a size.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool under_a_sanitizer = true;
#else
constexpr bool under_a_sanitizer = false;
#endif

using frugal::resource;
using frugal_test::error_of;
using frugal_test::json;
using frugal_test::json_reader;

constexpr std::int64_t KiB = 1024;
constexpr std::int64_t MiB = 1024 * KiB;
constexpr std::int64_t GiB = 1024 * MiB;

// Each test gets its own fake root (/proc/self/..., /sys/fs/cgroup/...).
class FakeRoot : public ::testing::Test {
 protected:
  void write(const std::string& relative, const std::string& text) const { tree_.write(relative, text); }
  void mkdir(const std::string& relative) const { tree_.mkdir(relative); }
  [[nodiscard]] std::string path(const std::string& relative) const { return tree_.path(relative); }
  [[nodiscard]] const std::string& root() const { return tree_.root(); }

  // statm's second field is the resident set in pages.
  void write_statm(std::int64_t resident_pages) const {
    write("proc/self/statm", "100000 " + std::to_string(resident_pages) + " 300 4 0 500 0\n");
  }

  frugal_test::temp_tree tree_;
};

std::int64_t page_size() { return ::sysconf(_SC_PAGESIZE); }

// The text report's row for `label`, its cells split at the table's runs of spaces.
std::vector<std::string> row_of(const std::string& text, const std::string& label) {
  const std::size_t at = text.find("  " + label + "  ");
  if (at == std::string::npos) return {};
  const std::size_t end = text.find('\n', at);
  const std::string line = text.substr(at, end - at);
  std::vector<std::string> cells;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    std::size_t j = i;
    while (j < line.size() && !(line[j] == ' ' && (j + 1 == line.size() || line[j + 1] == ' '))) ++j;
    if (j > i) cells.push_back(line.substr(i, j - i));
    i = j;
  }
  return cells;
}

// ---- cgroup v2 -------------------------------------------------------------------------------

TEST_F(FakeRoot, CgroupV2LimitAndUsageOfTheProcessCgroup) {
  write("proc/self/cgroup", "0::/job\n");
  write("sys/fs/cgroup/job/memory.max", "1073741824\n");
  write("sys/fs/cgroup/job/memory.current", "104857600\n");
  const frugal::cgroup_memory cg = frugal::read_cgroup_memory(root());
  ASSERT_TRUE(cg) << cg.error;
  EXPECT_EQ(cg.version, 2);
  EXPECT_EQ(cg.cgroup, "/job");
  EXPECT_EQ(cg.directory, path("sys/fs/cgroup/job"));
  EXPECT_EQ(cg.limit, 1 * GiB);
  EXPECT_EQ(cg.limit_file, path("sys/fs/cgroup/job/memory.max"));
  EXPECT_EQ(cg.usage, 100 * MiB);
  EXPECT_EQ(cg.usage_file, path("sys/fs/cgroup/job/memory.current"));
  EXPECT_EQ(cg.no_limit, "");

  // rss_bytes=auto: the limit minus what the cgroup counts beyond the resident set (here 40 MiB
  // resident of 100 MiB used: 60 MiB the process cannot hold back).
  write_statm(40 * MiB / page_size());
  const std::int64_t expected = 1 * GiB - (100 * MiB - 40 * MiB);
  EXPECT_EQ(frugal::auto_rss_bytes_limit(root()), expected);
  EXPECT_EQ(frugal::auto_limit(resource::rss_bytes, root()), static_cast<double>(expected));
  const frugal::limits l = frugal::limits::parse("wall=1h, rss_bytes=auto ,samples=10", root());
  EXPECT_EQ(l.get(resource::rss_bytes), static_cast<double>(expected));
  EXPECT_EQ(l.get(resource::wall), 3600.0);
  // What parse() took is a number from then on: to_string() writes it, and it reads back equal.
  EXPECT_EQ(l.to_string(), "wall=1h,rss_bytes=" + std::to_string(expected / MiB) + "MiB,samples=10");
  EXPECT_EQ(frugal::limits::parse(l.to_string()), l);
}

TEST_F(FakeRoot, CgroupV2NestedTakesTheParentsSmallerLimit) {
  write("proc/self/cgroup", "0::/user.slice/job\n");
  write("sys/fs/cgroup/user.slice/job/memory.max", "2147483648\n");
  write("sys/fs/cgroup/user.slice/job/memory.current", "104857600\n");
  write("sys/fs/cgroup/user.slice/memory.max", "536870912\n");
  write("sys/fs/cgroup/user.slice/memory.current", "314572800\n");
  // The mount itself (the root cgroup) has no memory.max: passed over.
  const frugal::cgroup_memory cg = frugal::read_cgroup_memory(root());
  ASSERT_TRUE(cg) << cg.error;
  EXPECT_EQ(cg.version, 2);
  EXPECT_EQ(cg.directory, path("sys/fs/cgroup/user.slice/job"));
  EXPECT_EQ(cg.limit, 512 * MiB);
  EXPECT_EQ(cg.limit_file, path("sys/fs/cgroup/user.slice/memory.max"));
  EXPECT_EQ(cg.usage, 300 * MiB);  // the parent's usage: its other children count against its limit
  EXPECT_EQ(cg.usage_file, path("sys/fs/cgroup/user.slice/memory.current"));
}

TEST_F(FakeRoot, CgroupV2TheLevelWithTheLeastRoomBindsNotTheSmallestLimit) {
  write("proc/self/cgroup", "0::/a/b\n");
  write("sys/fs/cgroup/a/b/memory.max", "1073741824\n");     // 1 GiB, 100 MiB used: 924 MiB room
  write("sys/fs/cgroup/a/b/memory.current", "104857600\n");
  write("sys/fs/cgroup/a/memory.max", "1610612736\n");       // 1.5 GiB, 1.4 GiB used: 100 MiB room
  write("sys/fs/cgroup/a/memory.current", "1503238553\n");
  const frugal::cgroup_memory cg = frugal::read_cgroup_memory(root());
  ASSERT_TRUE(cg) << cg.error;
  EXPECT_EQ(cg.limit, 1536 * MiB);
  EXPECT_EQ(cg.usage, 1503238553);
  EXPECT_EQ(cg.limit_file, path("sys/fs/cgroup/a/memory.max"));
}

TEST_F(FakeRoot, CgroupV2MaxEverywhereIsNoLimit) {
  write("proc/self/cgroup", "0::/a/b\n");
  write("sys/fs/cgroup/a/b/memory.max", "max\n");
  write("sys/fs/cgroup/a/b/memory.current", "4096\n");
  write("sys/fs/cgroup/a/memory.max", "max\n");
  write_statm(10);
  const frugal::cgroup_memory cg = frugal::read_cgroup_memory(root());
  ASSERT_TRUE(cg) << cg.error;
  EXPECT_EQ(cg.version, 2);
  EXPECT_FALSE(cg.limit);
  EXPECT_EQ(cg.limit_file, path("sys/fs/cgroup/a/b/memory.max"));
  EXPECT_EQ(cg.usage, 4096);  // the process's own, for the record
  const std::string why = "memory.max is 'max' in " + path("sys/fs/cgroup/a/b") + " and in every parent up to " +
                          path("sys/fs/cgroup");
  EXPECT_EQ(cg.no_limit, why);
  EXPECT_EQ(error_of([&] { (void)frugal::limits::parse("rss_bytes=auto", root()); }),
            "frugal: limits: rss_bytes=auto: no memory limit: " + why);
  // The cgroup's reason comes first for peak_bytes too, hooks or not: no limit, no room to take.
  EXPECT_EQ(error_of([&] { (void)frugal::limits::parse("peak_bytes=auto", root()); }),
            "frugal: limits: peak_bytes=auto: no memory limit: " + why);
}

// A container with a cgroup namespace sees "0::/", its own cgroup mounted at /sys/fs/cgroup; one
// without sees the host's path, which is not under the mount: the mount is its cgroup then.
TEST_F(FakeRoot, CgroupV2ContainerCgroupIsTheMount) {
  write("sys/fs/cgroup/memory.max", "268435456\n");
  write("sys/fs/cgroup/memory.current", "8388608\n");
  for (const char* self : {"0::/\n", "0::/system.slice/docker-4f2a.scope\n"}) {
    write("proc/self/cgroup", self);
    const frugal::cgroup_memory cg = frugal::read_cgroup_memory(root());
    ASSERT_TRUE(cg) << cg.error;
    EXPECT_EQ(cg.directory, path("sys/fs/cgroup")) << self;
    EXPECT_EQ(cg.limit, 256 * MiB) << self;
    EXPECT_EQ(cg.usage, 8 * MiB) << self;
  }
}

// ---- cgroup v1 -------------------------------------------------------------------------------

// As on this machine: a hybrid, whose v2 line ("0::/") finds no memory controller.
TEST_F(FakeRoot, CgroupV1MemoryControllerOnAHybrid) {
  write("proc/self/cgroup", "9:name=systemd:/\n4:memory:/process_api/9a34\n1:cpu:/\n0::/\n");
  mkdir("sys/fs/cgroup/unified");
  write("sys/fs/cgroup/memory/process_api/9a34/memory.limit_in_bytes", "268435456\n");
  write("sys/fs/cgroup/memory/process_api/9a34/memory.usage_in_bytes", "4464640\n");
  write("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  const frugal::cgroup_memory cg = frugal::read_cgroup_memory(root());
  ASSERT_TRUE(cg) << cg.error;
  EXPECT_EQ(cg.version, 1);
  EXPECT_EQ(cg.cgroup, "/process_api/9a34");
  EXPECT_EQ(cg.limit, 256 * MiB);
  EXPECT_EQ(cg.limit_file, path("sys/fs/cgroup/memory/process_api/9a34/memory.limit_in_bytes"));
  EXPECT_EQ(cg.usage, 4464640);
  EXPECT_EQ(cg.usage_file, path("sys/fs/cgroup/memory/process_api/9a34/memory.usage_in_bytes"));
  write_statm(1000);
  EXPECT_EQ(frugal::auto_rss_bytes_limit(root()), 256 * MiB - (4464640 - 1000 * page_size()));
}

TEST_F(FakeRoot, CgroupV1MemoryAmongOtherControllersOnOneLine) {
  write("proc/self/cgroup", "5:cpu,memory,pids:/batch\n");
  write("sys/fs/cgroup/memory/batch/memory.limit_in_bytes", "1073741824\n");
  write("sys/fs/cgroup/memory/batch/memory.usage_in_bytes", "0\n");
  const frugal::cgroup_memory cg = frugal::read_cgroup_memory(root());
  ASSERT_TRUE(cg) << cg.error;
  EXPECT_EQ(cg.version, 1);
  EXPECT_EQ(cg.limit, 1 * GiB);
  // "memoryx" or a v1 line without memory is not the memory controller.
  write("proc/self/cgroup", "5:cpu,memoryx:/batch\n");
  EXPECT_FALSE(frugal::read_cgroup_memory(root()));
}

TEST_F(FakeRoot, CgroupV1UnlimitedIsNoLimit) {
  write("proc/self/cgroup", "4:memory:/job\n0::/\n");
  write("sys/fs/cgroup/memory/job/memory.limit_in_bytes", "9223372036854771712\n");
  write("sys/fs/cgroup/memory/job/memory.usage_in_bytes", "4464640\n");
  write("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854775807\n");
  const frugal::cgroup_memory cg = frugal::read_cgroup_memory(root());
  ASSERT_TRUE(cg) << cg.error;
  EXPECT_EQ(cg.version, 1);
  EXPECT_FALSE(cg.limit);
  EXPECT_EQ(cg.usage, 4464640);
  const std::string why = "memory.limit_in_bytes is unlimited (2^62 or more; " +
                          path("sys/fs/cgroup/memory/job/memory.limit_in_bytes") + " reads 9223372036854771712) in " +
                          path("sys/fs/cgroup/memory/job") + " and in every parent up to " +
                          path("sys/fs/cgroup/memory");
  EXPECT_EQ(cg.no_limit, why);
  EXPECT_EQ(error_of([&] { (void)frugal::auto_rss_bytes_limit(root()); }),
            "frugal: limits: rss_bytes=auto: no memory limit: " + why);
  // Just under 2^62 is a limit (an absurd one, but a number the kernel could hold).
  write("sys/fs/cgroup/memory/job/memory.limit_in_bytes", "4611686018427387903\n");
  EXPECT_EQ(frugal::read_cgroup_memory(root()).limit, 4611686018427387903);
}

// ---- what is missing or unreadable -----------------------------------------------------------

TEST_F(FakeRoot, MissingProcSelfCgroup) {
  const frugal::cgroup_memory cg = frugal::read_cgroup_memory(root());
  EXPECT_FALSE(cg);
  const std::string why =
      "cannot read " + path("proc/self/cgroup") + ": No such file or directory (the process's cgroup is unknown)";
  EXPECT_EQ(cg.error, why);
  EXPECT_EQ(error_of([&] { (void)frugal::limits::parse("rss_bytes=auto", root()); }),
            "frugal: limits: rss_bytes=auto: " + why);
  EXPECT_EQ(error_of([&] { (void)frugal::auto_peak_bytes_limit(root()); }), "frugal: limits: peak_bytes=auto: " + why);
}

TEST_F(FakeRoot, NoMemoryMaxAndNoV1MemoryLineIsNoMemoryController) {
  write("proc/self/cgroup", "0::/job\n");
  write("sys/fs/cgroup/job/memory.current", "4096\n");
  EXPECT_EQ(error_of([&] { (void)frugal::auto_rss_bytes_limit(root()); }),
            "frugal: limits: rss_bytes=auto: no memory controller: no memory.max in " + path("sys/fs/cgroup/job") +
                " or its parents up to " + path("sys/fs/cgroup") + ", and " + path("proc/self/cgroup") +
                " has no cgroup v1 memory line");
  // The v1 memory line is there, its files are not.
  write("proc/self/cgroup", "4:memory:/job\n");
  EXPECT_EQ(frugal::read_cgroup_memory(root()).error,
            "no memory controller: " + path("sys/fs/cgroup/memory/memory.limit_in_bytes") + " and its parents' up to " +
                path("sys/fs/cgroup/memory") + " are missing");
  // Neither kind of line.
  write("proc/self/cgroup", "garbage\n\n1:cpu:/\n");
  EXPECT_EQ(frugal::read_cgroup_memory(root()).error,
            "no memory controller: " + path("proc/self/cgroup") +
                " has no cgroup v1 memory line and no cgroup v2 line ('0::/path')");
}

TEST_F(FakeRoot, LimitWithoutUsageIsAnError) {
  write("proc/self/cgroup", "0::/job\n");
  write("sys/fs/cgroup/job/memory.max", "1073741824\n");
  EXPECT_EQ(frugal::read_cgroup_memory(root()).error,
            "cannot read " + path("sys/fs/cgroup/job/memory.current") + ": No such file or directory");
}

TEST_F(FakeRoot, GarbageContentsAreErrorsThatQuoteThem) {
  write("proc/self/cgroup", "0::/job\n");
  const std::string max_file = path("sys/fs/cgroup/job/memory.max");
  const std::pair<const char*, const char*> cases[] = {
      {"abc\n", "'abc'"}, {"-1\n", "'-1'"},         {"", "''"},           {"\n", "''"},
      {"12.5\n", "'12.5'"}, {"1e9\n", "'1e9'"},     {"1G\n", "'1G'"},     {"max max\n", "'max max'"},
      {"99999999999999999999\n", "'99999999999999999999'"},
  };
  for (const auto& [text, shown] : cases) {
    write("sys/fs/cgroup/job/memory.max", text);
    EXPECT_EQ(error_of([&] { (void)frugal::auto_rss_bytes_limit(root()); }),
              "frugal: limits: rss_bytes=auto: " + max_file + ": expected a byte count or 'max', got " + shown)
        << "'" << text << "'";
  }
  write("sys/fs/cgroup/job/memory.max", "1073741824\n");
  write("sys/fs/cgroup/job/memory.current", "lots\n");
  EXPECT_EQ(frugal::read_cgroup_memory(root()).error,
            path("sys/fs/cgroup/job/memory.current") + ": expected a byte count, got 'lots'");
  // v1 has no "max".
  write("proc/self/cgroup", "4:memory:/job\n");
  write("sys/fs/cgroup/memory/job/memory.limit_in_bytes", "max\n");
  EXPECT_EQ(frugal::read_cgroup_memory(root()).error,
            path("sys/fs/cgroup/memory/job/memory.limit_in_bytes") + ": expected a byte count, got 'max'");
}

TEST_F(FakeRoot, PermissionDeniedIsAnErrorNamingTheFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root, which reads any file: permission denied cannot happen";
  write("proc/self/cgroup", "0::/job\n");
  write("sys/fs/cgroup/job/memory.max", "1073741824\n");
  write("sys/fs/cgroup/job/memory.current", "0\n");
  ASSERT_EQ(::chmod(path("sys/fs/cgroup/job/memory.max").c_str(), 0), 0);
  EXPECT_EQ(error_of([&] { (void)frugal::auto_rss_bytes_limit(root()); }),
            "frugal: limits: rss_bytes=auto: cannot read " + path("sys/fs/cgroup/job/memory.max") +
                ": Permission denied");
  ASSERT_EQ(::chmod(path("proc/self/cgroup").c_str(), 0), 0);
  EXPECT_EQ(frugal::read_cgroup_memory(root()).error,
            "cannot read " + path("proc/self/cgroup") + ": Permission denied (the process's cgroup is unknown)");
}

// ---- the room: limit - (usage - what the level measures) -------------------------------------

TEST_F(FakeRoot, NoRoomLeftIsAnErrorWithTheArithmetic) {
  write("proc/self/cgroup", "0::/job\n");
  write("sys/fs/cgroup/job/memory.max", "104857600\n");       // 100 MiB
  write("sys/fs/cgroup/job/memory.current", "314572800\n");   // 300 MiB, 10 MiB of it resident here
  write_statm(10 * MiB / page_size());
  EXPECT_EQ(error_of([&] { (void)frugal::limits::parse("rss_bytes=auto", root()); }),
            "frugal: limits: rss_bytes=auto: no room under the cgroup's limit: 104857600 B (" +
                path("sys/fs/cgroup/job/memory.max") + ") - (usage 314572800 B (" +
                path("sys/fs/cgroup/job/memory.current") + ") - resident set 10485760 B) = -199229440 B");
  // Exactly no room is no room either.
  write("sys/fs/cgroup/job/memory.current", std::to_string(100 * MiB + 10 * MiB) + "\n");
  EXPECT_NE(error_of([&] { (void)frugal::auto_rss_bytes_limit(root()); }).find(") = 0 B"), std::string::npos);
}

TEST_F(FakeRoot, RssAutoNeedsTheResidentSet) {
  write("proc/self/cgroup", "0::/job\n");
  write("sys/fs/cgroup/job/memory.max", "104857600\n");
  write("sys/fs/cgroup/job/memory.current", "0\n");
  EXPECT_EQ(error_of([&] { (void)frugal::auto_rss_bytes_limit(root()); }),
            "frugal: limits: rss_bytes=auto: the resident set is unknown: cannot read " + path("proc/self/statm") +
                ": No such file or directory");
}

TEST(CgroupRoom, IsTheLimitLessWhatTheLevelDoesNotMeasure) {
  frugal::cgroup_memory cg;
  cg.version = 2;
  cg.limit = 1 * GiB;
  cg.usage = 300 * MiB;
  cg.limit_file = "/sys/fs/cgroup/memory.max";
  cg.usage_file = "/sys/fs/cgroup/memory.current";
  // peak_bytes: 200 MiB live heap of the 300 MiB charged: 100 MiB the heap's ceiling cannot see.
  EXPECT_EQ(frugal::room_under_cgroup("peak_bytes", cg, 200 * MiB, "live heap"), 1 * GiB - 100 * MiB);
  // A level above the usage (shared pages charged elsewhere) is no extra room: the limit itself.
  EXPECT_EQ(frugal::room_under_cgroup("rss_bytes", cg, 400 * MiB, "resident set"), 1 * GiB);
  cg.usage.reset();  // a limit read without a usage (only in a hand-made struct) counts 0
  EXPECT_EQ(frugal::room_under_cgroup("rss_bytes", cg, 0, "resident set"), 1 * GiB);
  cg.limit.reset();
  cg.no_limit = "memory.max is 'max' in /sys/fs/cgroup";
  EXPECT_EQ(error_of([&] { (void)frugal::room_under_cgroup("peak_bytes", cg, 0, "live heap"); }),
            "frugal: limits: peak_bytes=auto: no memory limit: memory.max is 'max' in /sys/fs/cgroup");
}

// Without the allocation hooks (this test links none) the live heap is unknown, so is the room.
TEST_F(FakeRoot, PeakAutoWithoutTheAllocationHooksSaysSo) {
  write("proc/self/cgroup", "0::/job\n");
  write("sys/fs/cgroup/job/memory.max", "1073741824\n");
  write("sys/fs/cgroup/job/memory.current", "104857600\n");
  ASSERT_FALSE(frugal::allocation_tracking());
  EXPECT_EQ(error_of([&] { (void)frugal::limits::parse("peak_bytes=auto", root()); }),
            "frugal: limits: peak_bytes=auto: the live heap is not measured, so the room left for it is unknown "
            "(allocation hooks are not linked: link the CMake target frugal::allocation_hooks, or include "
            "<frugal/allocation_hooks.hpp> in exactly one .cpp); rss_bytes=auto needs no hooks");
}

// On the machine itself: a limit and the room under it, or the cgroup's reason for none (on the
// reference machine, a v1 memory controller without a limit: "no memory limit").
TEST(ThisMachine, AutoIsTheRoomUnderTheCgroupOrTheReasonThereIsNone) {
  const frugal::cgroup_memory cg = frugal::read_cgroup_memory();
  if (cg && cg.limit) {
    const double rss = frugal::auto_limit(resource::rss_bytes);
    EXPECT_GT(rss, 0);
    EXPECT_LE(rss, static_cast<double>(*cg.limit));
    return;
  }
  const std::string why = cg ? "no memory limit: " + cg.no_limit : cg.error;
  EXPECT_EQ(error_of([] { (void)frugal::limits::parse("rss_bytes=auto"); }), "frugal: limits: rss_bytes=auto: " + why);
}

// ---- the resident set ------------------------------------------------------------------------

TEST_F(FakeRoot, ResidentSetIsTheSecondStatmFieldInPages) {
  write("proc/self/statm", "100000 2560 300 4 0 500 0\n");
  EXPECT_EQ(frugal::resident_set_bytes(root()), 2560 * page_size());
  EXPECT_EQ(frugal::resident_set_problem(root()), "");
  write("proc/self/statm", "abc\n");
  EXPECT_FALSE(frugal::resident_set_bytes(root()));
  EXPECT_EQ(frugal::resident_set_problem(root()),
            path("proc/self/statm") + ": expected 'size resident ...' in pages, got 'abc'");
  write("proc/self/statm", "100000\n");
  EXPECT_FALSE(frugal::resident_set_bytes(root()));
  write("proc/self/statm", "100000 -5 1\n");
  EXPECT_FALSE(frugal::resident_set_bytes(root()));
  std::filesystem::remove(path("proc/self/statm"));
  EXPECT_FALSE(frugal::resident_set_bytes(root()));
  EXPECT_EQ(frugal::resident_set_problem(root()),
            "cannot read " + path("proc/self/statm") + ": No such file or directory");
}

// Called through volatile pointers, so the compiler can neither drop the block nor fold
// malloc + memset into calloc.
void* (*volatile allocate)(std::size_t) = &std::malloc;
void (*volatile release)(void*) = &std::free;

// Touching an N-byte block makes N bytes resident. The block (64 MiB, above glibc's mmap
// threshold) is a fresh mapping: none of it resident before the memset, all of it after, and
// unmapped by free. The tolerance covers what else moves between two reads: glibc's one-page
// header, transparent huge pages rounding the mapping's ends up to 2 MiB each, and the test's
// own small allocations; 4 MiB above, 1 MiB below.
TEST(ResidentSet, GrowsByTheBytesTouchedAndShrinksWhenTheyAreUnmapped) {
  constexpr std::int64_t n = 64 * MiB;
  const std::optional<std::int64_t> before = frugal::resident_set_bytes();
  ASSERT_TRUE(before) << frugal::resident_set_problem();
  EXPECT_GT(*before, 0);
  void* p = allocate(static_cast<std::size_t>(n));
  ASSERT_NE(p, nullptr);
  const std::int64_t untouched = frugal::resident_set_bytes().value_or(-1);
  EXPECT_LT(untouched - *before, 4 * MiB) << "a fresh mapping is not resident until touched";
  std::memset(p, 1, static_cast<std::size_t>(n));
  const std::int64_t touched = frugal::resident_set_bytes().value_or(-1);
  EXPECT_GE(touched - *before, n - 1 * MiB);
  if (!under_a_sanitizer) {  // shadow memory
    EXPECT_LE(touched - *before, n + 4 * MiB);
  }
  release(p);
  if (under_a_sanitizer) return;  // ASan/TSan quarantine freed blocks: nothing unmapped
  const std::int64_t after = frugal::resident_set_bytes().value_or(-1);
  EXPECT_GE(touched - after, n - 1 * MiB);
}

// ---- rss_bytes in a budget -------------------------------------------------------------------

TEST(RssBudget, UsedIsTheHighestOfItsReadsAndRaisesTheAncestors) {
  frugal_test::fake_resident_set rss(50 * MiB);
  frugal::budget run{"run", frugal::limits{}.rss_bytes(100.0 * MiB)};
  frugal::budget& eval = run.child("eval");
  EXPECT_EQ(run.used(resource::rss_bytes), 50.0 * MiB);
  rss.set(80 * MiB);
  EXPECT_EQ(run.used(resource::rss_bytes), 80.0 * MiB);
  rss.set(30 * MiB);
  EXPECT_EQ(run.used(resource::rss_bytes), 80.0 * MiB);  // a level: the highest read, not the last
  EXPECT_EQ(run.snapshot()[resource::rss_bytes], 80.0 * MiB);
  EXPECT_EQ(eval.used(resource::rss_bytes), 30.0 * MiB);  // a child's own reads
  rss.set(90 * MiB);
  EXPECT_EQ(eval.snapshot()[resource::rss_bytes], 90.0 * MiB);
  rss.set(10 * MiB);
  EXPECT_EQ(run.used(resource::rss_bytes), 90.0 * MiB);  // the child's read raised its parent
  EXPECT_EQ(run.remaining(resource::rss_bytes), 10.0 * MiB);
  EXPECT_FALSE(run.level_crossed());

  // Crossed, never exhausted, and no share of "budget used".
  rss.set(120 * MiB);
  EXPECT_EQ(run.crossed_levels(), std::vector<std::string>{"rss_bytes"});
  EXPECT_FALSE(run.exhausted());
  EXPECT_EQ(run.fraction_used(), 0);
  EXPECT_EQ(run.fraction_used(resource::rss_bytes), 1.2);
  EXPECT_TRUE(eval.crossed_levels().empty());  // unlimited
}

// A read is a system call: scopes never make one, nor do the aggregates over consumables.
TEST(RssBudget, ReadOnlyWhenAskedNeverOnAScopesPath) {
  frugal_test::fake_resident_set rss(50 * MiB);
  frugal::budget run{"run", frugal::limits{}.rss_bytes(100.0 * MiB).flops(1000)};
  for (int i = 0; i < 100; ++i) {
    frugal::scope s{run, "step"};
    frugal::add_flops(1);
  }
  (void)run.fraction_used();
  (void)run.exhausted_resources();
  (void)run.used(resource::flops);
  (void)run.used(resource::peak_bytes);
  EXPECT_EQ(rss.reads(), 0);
  EXPECT_EQ(run.used(resource::rss_bytes), 50.0 * MiB);
  EXPECT_EQ(rss.reads(), 1);
  (void)run.snapshot();
  EXPECT_EQ(rss.reads(), 2);
}

TEST(RssBudget, UnreadableIsNotMeasuredNeverAZero) {
  frugal_test::fake_resident_set rss(frugal_test::fake_resident_set::unreadable);
  frugal::budget run{"run", frugal::limits{}.rss_bytes(64.0 * MiB)};
  EXPECT_FALSE(run.measures_rss());
  EXPECT_EQ(run.used(resource::rss_bytes), 0);
  EXPECT_TRUE(run.crossed_levels().empty());
  const json doc = json_reader::parse(frugal::json_report(run));
  EXPECT_TRUE(doc["budget"]["used"]["rss_bytes"].is_null());
  EXPECT_EQ(doc["budget"]["limits"]["rss_bytes"].num(), 64.0 * MiB);
  EXPECT_EQ(doc["resource_kinds"]["rss_bytes"].str(), "level");
  EXPECT_EQ(doc["units_of_measure"]["rss_bytes"].str(), "bytes");
  EXPECT_EQ(row_of(frugal::text_report(run), "rss_bytes (level)"),
            (std::vector<std::string>{"rss_bytes (level)", "not measured", "64.0 MiB", "-"}))
      << frugal::text_report(run);

  // Readable again: measured, and a number in both reports.
  rss.set(16 * MiB);
  EXPECT_TRUE(run.measures_rss());
  EXPECT_EQ(json_reader::parse(frugal::json_report(run))["budget"]["used"]["rss_bytes"].num(), 16.0 * MiB);
  EXPECT_EQ(row_of(frugal::text_report(run), "rss_bytes (level)"),
            (std::vector<std::string>{"rss_bytes (level)", "16.0 MiB", "64.0 MiB", "25.0 %"}))
      << frugal::text_report(run);
}

// An unlimited rss_bytes is a process figure, the same in every budget: a JSON number always, a
// text row only where a budget limits it.
TEST(RssBudget, TextRowOnlyWhereLimited) {
  frugal_test::fake_resident_set rss(16 * MiB);
  frugal::budget run{"run"};
  EXPECT_EQ(frugal::text_report(run).find("rss_bytes"), std::string::npos) << frugal::text_report(run);
  EXPECT_EQ(json_reader::parse(frugal::json_report(run))["budget"]["used"]["rss_bytes"].num(), 16.0 * MiB);
}

// The real resident set, through a real budget: the highest read stays when the memory is freed.
TEST(RssBudget, RealResidentSetRisesWithTouchedMemoryAndTheMarkStays) {
  frugal::budget run{"run", frugal::limits::parse("rss_bytes=16GiB")};
  ASSERT_TRUE(run.measures_rss()) << frugal::resident_set_problem();
  const double before = run.used(resource::rss_bytes);
  EXPECT_GT(before, 0);
  constexpr std::int64_t n = 64 * MiB;
  void* p = allocate(static_cast<std::size_t>(n));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, static_cast<std::size_t>(n));
  const double high = run.used(resource::rss_bytes);
  EXPECT_GE(high - before, static_cast<double>(n - 1 * MiB));
  release(p);
  if (under_a_sanitizer) return;  // ASan/TSan quarantine freed blocks: nothing unmapped
  EXPECT_EQ(run.used(resource::rss_bytes), high);  // the resident set fell; the level's mark did not
  EXPECT_LT(static_cast<double>(frugal::resident_set_bytes().value_or(0)), high - static_cast<double>(n / 2));
}

}  // namespace
