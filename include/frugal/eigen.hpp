/// @file
/// FLOP-counted Eigen: expression counting and counted assignment (frugal::flops_of,
/// frugal::assign), named training ops, the counting scalar, pruning, quantization and plans.
#pragma once

#include <frugal/eigen/compression_plan.hpp>
#include <frugal/eigen/counting_scalar.hpp>
#include <frugal/eigen/flops.hpp>
#include <frugal/eigen/ops.hpp>
#include <frugal/eigen/prune.hpp>
#include <frugal/eigen/quantize.hpp>
#include <frugal/eigen/structured_prune.hpp>
