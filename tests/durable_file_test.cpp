// Durable, checked file writes on the real file system: a round trip, replacement by rename (a
// new inode, the old mode kept, a symbolic link replaced rather than followed), failures that
// name the path and errno's words and leave the old content and no temporary file behind
// (RLIMIT_FSIZE makes a write fail even for root), /dev/full's ENOSPC, directory checks, and a
// writer SIGKILLed at random moments that never leaves a partial file under the target's name.
#include <frugal/durable_file.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/file_size_limit.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// A fresh directory under the system's temporary directory, removed with everything in it.
class temp_dir {
 public:
  temp_dir() {
    std::string pattern = (fs::temp_directory_path() / "frugal-durable-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }
  [[nodiscard]] fs::path operator/(const std::string& name) const { return path_ / name; }
  // The names in it, sorted.
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  fs::path path_;
};

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_plain(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary);
  out << content;
}

struct stat lstat_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st;
}

// Runs `f`, expecting an io_error; returns it (nullopt, and a failure, if none was thrown).
template <class F>
std::optional<frugal::io_error> io_error_of(F&& f) {
  try {
    f();
  } catch (const frugal::io_error& e) {
    return e;
  }
  ADD_FAILURE() << "no frugal::io_error thrown";
  return std::nullopt;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

TEST(WriteFileAtomically, RoundTripAndANewFileGets0644) {
  temp_dir dir;
  const mode_t old_mask = ::umask(022);
  const fs::path target = dir / "report.json";
  frugal::write_file_atomically(target, std::string("{\"ok\": true}\n"));
  ::umask(old_mask);
  EXPECT_EQ(read_all(target), "{\"ok\": true}\n");
  EXPECT_EQ(lstat_of(target).st_mode & 07777, 0644u);
  EXPECT_EQ(dir.names(), std::vector<std::string>{"report.json"});  // no temporary file left

  frugal::write_file_atomically(target, std::string_view());  // empty content is content
  EXPECT_EQ(read_all(target), "");
  EXPECT_TRUE(fs::is_regular_file(target));
}

TEST(WriteFileAtomically, ReplacesByRenameAndKeepsTheMode) {
  temp_dir dir;
  const fs::path target = dir / "checkpoint.bin";
  write_plain(target, "old");
  ASSERT_EQ(::chmod(target.c_str(), 0600), 0);
  const ino_t old_inode = lstat_of(target).st_ino;
  frugal::write_file_atomically(target, std::string("new content"));
  EXPECT_EQ(read_all(target), "new content");
  const struct stat st = lstat_of(target);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // A new file took the name (rename), rather than the old one being rewritten in place: a
  // reader holding the old file still reads all of the old content.
  EXPECT_NE(st.st_ino, old_inode);
  EXPECT_EQ(dir.names(), std::vector<std::string>{"checkpoint.bin"});
}

TEST(WriteFileAtomically, FromAStreamWriter) {
  temp_dir dir;
  const fs::path target = dir / "epochs.csv";
  frugal::write_file_atomically(target, [](std::ostream& out) { out << "epoch,loss\n1,0.5\n"; });
  EXPECT_EQ(read_all(target), "epoch,loss\n1,0.5\n");
  // A writer that throws leaves the old content and touches nothing.
  EXPECT_THROW(frugal::write_file_atomically(target,
                                             [](std::ostream& out) {
                                               out << "half";
                                               throw std::runtime_error("model exploded");
                                             }),
               std::runtime_error);
  EXPECT_EQ(read_all(target), "epoch,loss\n1,0.5\n");
  EXPECT_EQ(dir.names(), std::vector<std::string>{"epochs.csv"});
}

using frugal_test::file_size_limit;

TEST(WriteFileAtomically, AFailedWriteKeepsTheOldContentAndLeavesNoTemporaryFile) {
  temp_dir dir;
  const fs::path target = dir / "report.json";
  write_plain(target, "the old report");
  const std::string big(64 * 1024, 'x');
  std::optional<frugal::io_error> e;
  {
    file_size_limit limit{4096};
    e = io_error_of([&] { frugal::write_file_atomically(target, big); });
  }
  ASSERT_TRUE(e);
  const std::string what = e->what();
  EXPECT_TRUE(starts_with(what, "frugal: cannot write '" + target.string() +
                                    "': File too large (writing the temporary file '.report.json.tmp-"))
      << what;
  EXPECT_EQ(e->code(), std::errc::file_too_large);
  EXPECT_EQ(e->path(), target);
  EXPECT_EQ(read_all(target), "the old report");
  EXPECT_EQ(dir.names(), std::vector<std::string>{"report.json"});
}

// A stream writer's content goes to the file as it comes: several of the 64 KiB pieces, a
// writer that throws after some were written, and a file size limit hit mid-stream -- the
// target holds the old content or the whole new one, and no temporary file is left.
TEST(WriteFileAtomically, AStreamWriterOfManyPiecesIsWholeOrNothing) {
  temp_dir dir;
  const fs::path target = dir / "model.bin";
  std::string content;
  for (int i = 0; i < 300'000; ++i) content += static_cast<char>('a' + i % 26);  // ~4.6 pieces
  frugal::write_file_atomically(target, [&](std::ostream& out) {
    for (std::size_t at = 0; at < content.size(); at += 1000) out.write(content.data() + at, 1000);
  });
  EXPECT_EQ(read_all(target), content);

  EXPECT_THROW(frugal::write_file_atomically(target,
                                             [&](std::ostream& out) {
                                               out << std::string(200 * 1024, 'z');  // on disk already
                                               throw std::runtime_error("diverged");
                                             }),
               std::runtime_error);
  EXPECT_EQ(read_all(target), content);
  EXPECT_EQ(dir.names(), std::vector<std::string>{"model.bin"});

  std::optional<frugal::io_error> e;
  {
    file_size_limit limit{100 * 1024};
    e = io_error_of([&] { frugal::write_file_atomically(target, [&](std::ostream& out) { out << content; }); });
  }
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), std::errc::file_too_large) << e->what();
  EXPECT_TRUE(starts_with(e->what(), "frugal: cannot write '" + target.string() +
                                         "': File too large (writing the temporary file '.model.bin.tmp-"))
      << e->what();
  EXPECT_EQ(read_all(target), content);
  EXPECT_EQ(dir.names(), std::vector<std::string>{"model.bin"});
}

TEST(WriteAll, DevFullGivesNoSpaceLeftOnDevice) {
  const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const std::string data(100000, 'x');
  const auto e = io_error_of([&] { frugal::write_all(fd, data, "/dev/full"); });
  ::close(fd);
  ASSERT_TRUE(e);
  EXPECT_STREQ(e->what(), "frugal: cannot write '/dev/full': No space left on device (writing)");
  EXPECT_EQ(e->code(), std::errc::no_space_on_device);
}

TEST(WriteAll, WritesEverythingThroughAPipeOfSmallCapacity) {
  // A pipe takes at most its capacity per write(): the rest must be resumed, not dropped.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string data(1 << 20, 'p');  // 16x a default pipe's 64 KiB
  std::string got;
  std::thread reader([&] {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
  });
  frugal::write_all(fds[1], data, "pipe");
  ::close(fds[1]);
  reader.join();
  ::close(fds[0]);
  EXPECT_EQ(got.size(), data.size());
  EXPECT_EQ(got, data);
}

TEST(WriteFileAtomically, ASymbolicLinkIsReplacedNotFollowed) {
  temp_dir dir;
  // Onto a link to /dev/full: rename(2) replaces the link itself, so the write succeeds and
  // nothing is written to (or renamed over) the device.
  const fs::path to_device = dir / "report.json";
  fs::create_symlink("/dev/full", to_device);
  frugal::write_file_atomically(to_device, std::string("report"));
  EXPECT_TRUE(S_ISREG(lstat_of(to_device).st_mode));
  EXPECT_EQ(read_all(to_device), "report");
  EXPECT_TRUE(S_ISCHR(lstat_of("/dev/full").st_mode));

  // Onto a link to another file: the link becomes a file, the other file keeps its content.
  const fs::path other = dir / "other.json";
  write_plain(other, "other");
  const fs::path link = dir / "latest.json";
  fs::create_symlink(other, link);
  frugal::write_file_atomically(link, std::string("latest"));
  EXPECT_TRUE(S_ISREG(lstat_of(link).st_mode));
  EXPECT_EQ(read_all(link), "latest");
  EXPECT_EQ(read_all(other), "other");
}

TEST(WriteFileAtomically, ADirectoryThatDoesNotExist) {
  temp_dir dir;
  const fs::path target = dir / "nope" / "report.json";
  const auto e = io_error_of([&] { frugal::write_file_atomically(target, std::string("x")); });
  ASSERT_TRUE(e);
  EXPECT_EQ(std::string(e->what()), "frugal: cannot write '" + target.string() +
                                        "': No such file or directory (creating a temporary file in '" +
                                        (dir / "nope").string() + "')");
  EXPECT_EQ(e->code(), std::errc::no_such_file_or_directory);
}

TEST(WriteFileAtomically, APathThatIsADirectory) {
  temp_dir dir;
  fs::create_directory(dir / "sub");
  // Names a directory: refused before anything is created.
  const fs::path slash = dir.path() / "sub" / "";
  auto e = io_error_of([&] { frugal::write_file_atomically(slash, std::string("x")); });
  ASSERT_TRUE(e);
  EXPECT_EQ(std::string(e->what()),
            "frugal: cannot write '" + slash.string() + "': Is a directory (the path names a directory, not a file)");
  // An existing directory under a file's name: the rename fails, the temporary file goes.
  e = io_error_of([&] { frugal::write_file_atomically(dir / "sub", std::string("x")); });
  ASSERT_TRUE(e);
  EXPECT_TRUE(starts_with(e->what(), "frugal: cannot write '" + (dir / "sub").string() +
                                         "': Is a directory (renaming the temporary file '.sub.tmp-"))
      << e->what();
  EXPECT_EQ(dir.names(), std::vector<std::string>{"sub"});
  EXPECT_TRUE(fs::is_empty(dir / "sub"));
}

TEST(CheckWritableDirectory, ProcIsRefusedATempDirPasses) {
  const auto e = io_error_of([] { frugal::check_writable_directory("/proc"); });
  ASSERT_TRUE(e);
  EXPECT_TRUE(starts_with(e->what(), "frugal: cannot write in directory '/proc': ")) << e->what();
  EXPECT_NE(std::string(e->what()).find("(creating a probe file)"), std::string::npos) << e->what();

  temp_dir dir;
  EXPECT_NO_THROW(frugal::check_writable_directory(dir.path()));
  EXPECT_TRUE(dir.names().empty());  // the probe is gone
}

TEST(CheckWritableDirectory, MissingOrNotADirectory) {
  temp_dir dir;
  auto e = io_error_of([&] { frugal::check_writable_directory(dir / "missing"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(std::string(e->what()), "frugal: cannot write in directory '" + (dir / "missing").string() +
                                        "': No such file or directory (looking it up)");
  write_plain(dir / "file", "x");
  e = io_error_of([&] { frugal::check_writable_directory(dir / "file"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(std::string(e->what()),
            "frugal: cannot write in directory '" + (dir / "file").string() + "': Not a directory (looking it up)");
  EXPECT_EQ(e->code(), std::errc::not_a_directory);
}

TEST(CheckWritableDirectory, AFullFileSystemIsRefused) {
  // RLIMIT_FSIZE 0: the probe can be created but not written, as on a full disk.
  temp_dir dir;
  std::optional<frugal::io_error> e;
  {
    file_size_limit limit{0};
    e = io_error_of([&] { frugal::check_writable_directory(dir.path()); });
  }
  ASSERT_TRUE(e);
  EXPECT_EQ(std::string(e->what()),
            "frugal: cannot write in directory '" + dir.path().string() + "': File too large (writing a probe file)");
  EXPECT_TRUE(dir.names().empty());
}

// --- SIGKILL during a save ---

// A self-checking file: "frugal-test <kind> <body bytes> <fnv1a-64 of body>\n" + body.
std::uint64_t fnv1a(const char* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 1099511628211ull;
  }
  return h;
}

std::string payload(char kind, std::size_t bytes) {
  std::string body(bytes, '\0');
  std::mt19937_64 rng(static_cast<std::uint64_t>(kind));
  for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(&body[i], &v, 8);
  }
  return "frugal-test " + std::string(1, kind) + " " + std::to_string(bytes) + " " +
         std::to_string(fnv1a(body.data(), body.size())) + "\n" + body;
}

// The kind of a whole, valid file ('?' for anything else: short, mixed, corrupt).
char check(const std::string& file) {
  const std::size_t eol = file.find('\n');
  if (eol == std::string::npos) return '?';
  std::istringstream header(file.substr(0, eol));
  std::string magic;
  char kind = 0;
  std::size_t bytes = 0;
  std::uint64_t sum = 0;
  if (!(header >> magic >> kind >> bytes >> sum) || magic != "frugal-test") return '?';
  if (file.size() - eol - 1 != bytes) return '?';
  if (fnv1a(file.data() + eol + 1, bytes) != sum) return '?';
  return kind == 'A' || kind == 'B' ? kind : '?';
}

TEST(WriteFileAtomically, ASigkillDuringSavesNeverLeavesAPartialFile) {
  temp_dir dir;
  const fs::path target = dir / "checkpoint.bin";
  const std::string a = payload('A', 6 << 20);           // 6 MiB
  const std::string b = payload('B', (4 << 20) + 4093);  // another length: a mix shows
  ASSERT_EQ(check(a), 'A');
  ASSERT_EQ(check(b), 'B');
  // How long a save takes here (sanitizers, a slow disk): the kills spread over two of them.
  const auto t0 = std::chrono::steady_clock::now();
  frugal::write_file_atomically(dir / "timing", a);
  frugal::write_file_atomically(dir / "timing", b);
  const auto save_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count() / 2;
  fs::remove(dir / "timing");

  std::mt19937 rng(12);
  std::uniform_int_distribution<long long> wait_us(0, 2 * std::max<long long>(save_us, 1000));
  int found[2] = {0, 0};
  int killed_mid_write = 0;
  constexpr int rounds = 16;
  for (int round = 0; round < rounds; ++round) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      // The writer: saves A and B alternately until it is killed, saying when the first save is
      // done. Only _exit() leaves.
      ::close(ready[0]);
      try {
        for (unsigned i = 0;; ++i) {
          frugal::write_file_atomically(target, (i % 2) ? b : a);
          if (i == 0) {
            (void)!::write(ready[1], "1", 1);
            ::close(ready[1]);
          }
        }
      } catch (...) {
        ::_exit(2);
      }
    }
    ::close(ready[1]);
    char byte = 0;
    const bool saved_once = ::read(ready[0], &byte, 1) == 1;  // EOF: the writer died
    ::close(ready[0]);
    if (saved_once) std::this_thread::sleep_for(std::chrono::microseconds(wait_us(rng)));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(saved_once && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the writer failed on its own: status " << status;

    // The target is a whole A or B; anything else is a temporary file.
    ASSERT_TRUE(fs::exists(target));
    const char kind = check(read_all(target));
    ASSERT_NE(kind, '?') << "round " << round << ": a partial or corrupt file under the target's name";
    ++found[kind == 'A' ? 0 : 1];
    for (const std::string& name : dir.names()) {
      if (name == "checkpoint.bin") continue;
      EXPECT_TRUE(starts_with(name, ".checkpoint.bin.tmp-" + std::to_string(child) + "-")) << name;
      ++killed_mid_write;
      fs::remove(dir / name);
    }
  }
  // The kills landed mid-write (a temporary file left), not only between saves.
  EXPECT_GT(killed_mid_write, 0);
  std::printf("[          ] %d rounds (a save takes %lld us): %d found A, %d found B, %d killed mid-write\n", rounds,
              static_cast<long long>(save_us), found[0], found[1], killed_mid_write);
}

}  // namespace
