// frugal's version, as numbers for preprocessor checks and as a string for reports.
// Kept in step with project(VERSION) in the top-level CMakeLists.txt.
#pragma once

#define FRUGAL_VERSION_MAJOR 0
#define FRUGAL_VERSION_MINOR 1
#define FRUGAL_VERSION_PATCH 0
#define FRUGAL_VERSION_STRING "0.1.0"

namespace frugal {
inline constexpr int version_major = FRUGAL_VERSION_MAJOR;
inline constexpr int version_minor = FRUGAL_VERSION_MINOR;
inline constexpr int version_patch = FRUGAL_VERSION_PATCH;
inline constexpr const char* version_string = FRUGAL_VERSION_STRING;
}  // namespace frugal
