/// @file
/// frugal's version, as numbers for preprocessor checks and as a string for reports.
/// Kept in step with project(VERSION) in the top-level CMakeLists.txt.
#pragma once

/// Major version: changes break the API.
#define FRUGAL_VERSION_MAJOR 0
/// Minor version: compatible additions (CMake's package version is SameMinorVersion-compatible).
#define FRUGAL_VERSION_MINOR 1
/// Patch version: fixes only.
#define FRUGAL_VERSION_PATCH 0
/// The version as "MAJOR.MINOR.PATCH", as written in reports.
#define FRUGAL_VERSION_STRING "0.1.0"

namespace frugal {
/// FRUGAL_VERSION_MAJOR as a C++ constant.
inline constexpr int version_major = FRUGAL_VERSION_MAJOR;
/// FRUGAL_VERSION_MINOR as a C++ constant.
inline constexpr int version_minor = FRUGAL_VERSION_MINOR;
/// FRUGAL_VERSION_PATCH as a C++ constant.
inline constexpr int version_patch = FRUGAL_VERSION_PATCH;
/// FRUGAL_VERSION_STRING as a C++ constant.
inline constexpr const char* version_string = FRUGAL_VERSION_STRING;
}  // namespace frugal
