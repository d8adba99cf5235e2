// FLOP-counted Eigen: expression counting and counted assignment (frugal::flops_of,
// frugal::assign), named training ops, and the counting scalar that verifies the counts.
#pragma once

#include <frugal/eigen/counting_scalar.hpp>
#include <frugal/eigen/flops.hpp>
#include <frugal/eigen/ops.hpp>
