/// @file
/// The umbrella header: budgets, scopes, meters, clocks, limits, prices and energy counters,
/// heap accounting and the controller — the core of frugal. oneTBB integration and the hard deadline: <frugal/tbb.hpp>,
/// <frugal/deadline.hpp>; Eigen FLOP counting: <frugal/eigen.hpp>; tracing: <frugal/trace.hpp>.
#pragma once

#include <frugal/allocation.hpp>
#include <frugal/budget.hpp>
#include <frugal/clock.hpp>
#include <frugal/config.hpp>
#include <frugal/controller.hpp>
#include <frugal/controller_report.hpp>
#include <frugal/energy.hpp>
#include <frugal/meter.hpp>
#include <frugal/price.hpp>
#include <frugal/schedule.hpp>
#include <frugal/scope.hpp>
#include <frugal/units.hpp>
#include <frugal/version.hpp>
