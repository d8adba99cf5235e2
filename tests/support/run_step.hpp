// One training step of known cost under a frugal::manual_clock, for tests of the controller
// and of what it saves.
#pragma once

#include <frugal/budget.hpp>
#include <frugal/clock.hpp>
#include <frugal/meter.hpp>
#include <frugal/scope.hpp>

#include <chrono>
#include <cstdint>

namespace frugal_test {

// Charged to the run like a real loop's scope would be: `wall` of the manual clock, `flops`,
// and `samples` of the unit "samples".
inline void run_step(frugal::budget& run, frugal::manual_clock& clock, std::chrono::nanoseconds wall,
                     std::uint64_t flops = 0, double samples = 0) {
  frugal::scope s{run, "step"};
  clock.advance(wall);
  frugal::add_flops(flops);
  if (samples > 0) frugal::add_units("samples", samples);
}

}  // namespace frugal_test
