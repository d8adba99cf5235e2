// The umbrella header: budgets, scopes, meters, clocks, limits and heap accounting — the core
// of frugal, with nothing optional. oneTBB integration: <frugal/tbb.hpp>.
#pragma once

#include <frugal/allocation.hpp>
#include <frugal/budget.hpp>
#include <frugal/clock.hpp>
#include <frugal/config.hpp>
#include <frugal/meter.hpp>
#include <frugal/scope.hpp>
#include <frugal/units.hpp>
#include <frugal/version.hpp>
