// A directory tree in a fresh temporary directory, removed with the object: a fake root
// (/proc/self/..., /sys/fs/cgroup/...) for the readers that take one. Test support only.
#pragma once

#include <gtest/gtest.h>

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace frugal_test {

class temp_tree {
 public:
  temp_tree() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "frugal_test_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    root_ = tmpl;
  }
  ~temp_tree() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  temp_tree(const temp_tree&) = delete;
  temp_tree& operator=(const temp_tree&) = delete;

  // Writes `text` to <root>/<relative>, making its directories.
  void write(const std::string& relative, const std::string& text) const {
    const std::filesystem::path p = std::filesystem::path(root_) / relative;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  void mkdir(const std::string& relative) const {
    std::filesystem::create_directories(std::filesystem::path(root_) / relative);
  }
  [[nodiscard]] std::string path(const std::string& relative) const { return root_ + "/" + relative; }
  [[nodiscard]] const std::string& root() const noexcept { return root_; }

 private:
  std::string root_;
};

}  // namespace frugal_test
