// Checks shared by frugal's tests: what a call's std::invalid_argument says, and how many FLOPs
// a piece of code charges to the scope it runs in. Test support only.
#pragma once

#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace frugal_test {

// The message of the exception (std::invalid_argument unless told) f throws; a test failure
// if it throws none.
template <class E = std::invalid_argument, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "the expected exception was not thrown";
  return "(not thrown)";
}

// Expects f to throw std::invalid_argument whose message contains every one of `parts`.
template <class F>
void expect_invalid(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    for (const std::string& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

// FLOPs f charges, read from a fresh budget's stage.
template <class F>
std::uint64_t charged(F&& f) {
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "op"};
    f();
  }
  return run.stage("op").flops;
}

}  // namespace frugal_test
