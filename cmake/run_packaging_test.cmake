# Driver for the `packaging.*` CTest tests (see tests/packaging/CMakeLists.txt).
# Run as:  cmake -DMODE=<mode> -D... -P cmake/run_packaging_test.cmake
#
# MODE=install          cmake --install FRUGAL_BINARY_DIR into PREFIX (fresh),
#                       then check the package files are there.
# MODE=find_package     \
# MODE=add_subdirectory  > configure + build CONSUMER_SOURCE_DIR in a fresh
# MODE=fetchcontent     /  WORK_DIR with -DFRUGAL_CONSUME=MODE, run the binary.
#
# Other variables: FRUGAL_SOURCE_DIR, FRUGAL_BINARY_DIR, CONSUMER_SOURCE_DIR,
# WORK_DIR, PREFIX, GENERATOR, MAKE_PROGRAM (optional), CXX_COMPILER,
# BUILD_TYPE, EXPECTED_VERSION, INSTALL_CMAKEDIR (install mode; default
# lib/cmake/frugal).
cmake_minimum_required(VERSION 3.20)

function(require)
  foreach(var IN LISTS ARGN)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
      message(FATAL_ERROR "run_packaging_test: -D${var}=... is required")
    endif()
  endforeach()
endfunction()

function(run_step what)
  string(TIMESTAMP t0 "%s")
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE out)
  string(TIMESTAMP t1 "%s")
  math(EXPR dt "${t1} - ${t0}")
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "packaging (${MODE}): ${what} failed (exit ${rc})\n"
      "command: ${cmd}\n----- output -----\n${out}")
  endif()
  message(STATUS "packaging (${MODE}): ${what} ok (${dt}s)")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

require(MODE BUILD_TYPE)

if(MODE STREQUAL "install")
  require(FRUGAL_BINARY_DIR PREFIX)
  file(REMOVE_RECURSE "${PREFIX}")
  run_step("cmake --install"
    "${CMAKE_COMMAND}" --install "${FRUGAL_BINARY_DIR}" --prefix "${PREFIX}" --config "${BUILD_TYPE}")
  if(NOT INSTALL_CMAKEDIR)
    set(INSTALL_CMAKEDIR lib/cmake/frugal)
  endif()
  foreach(f IN ITEMS
      ${INSTALL_CMAKEDIR}/frugalConfig.cmake
      ${INSTALL_CMAKEDIR}/frugalConfigVersion.cmake
      ${INSTALL_CMAKEDIR}/frugalTargets.cmake
      include/frugal/version.hpp)
    if(NOT EXISTS "${PREFIX}/${f}")
      message(FATAL_ERROR "packaging (install): ${PREFIX}/${f} was not installed")
    endif()
  endforeach()
  return()
endif()

if(NOT MODE MATCHES "^(find_package|add_subdirectory|fetchcontent)$")
  message(FATAL_ERROR "run_packaging_test: unknown MODE '${MODE}'")
endif()
require(CONSUMER_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER EXPECTED_VERSION)

set(configure_args
  -S "${CONSUMER_SOURCE_DIR}"
  -B "${WORK_DIR}"
  -G "${GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
  "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
  "-DFRUGAL_CONSUME=${MODE}"
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(MODE STREQUAL "find_package")
  require(PREFIX)
  list(APPEND configure_args "-DCMAKE_PREFIX_PATH=${PREFIX}" "-DFRUGAL_EXPECTED_PREFIX=${PREFIX}")
else()
  require(FRUGAL_SOURCE_DIR)
  list(APPEND configure_args "-DFRUGAL_SOURCE_DIR=${FRUGAL_SOURCE_DIR}")
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
run_step("configure consumer" "${CMAKE_COMMAND}" ${configure_args})
run_step("build consumer" "${CMAKE_COMMAND}" --build "${WORK_DIR}" --config "${BUILD_TYPE}")

# Single-config generators put the binary in WORK_DIR, multi-config ones in
# WORK_DIR/<config>.
set(exe "")
foreach(candidate IN ITEMS "${WORK_DIR}/consumer" "${WORK_DIR}/${BUILD_TYPE}/consumer"
                           "${WORK_DIR}/consumer.exe" "${WORK_DIR}/${BUILD_TYPE}/consumer.exe")
  if(EXISTS "${candidate}")
    set(exe "${candidate}")
    break()
  endif()
endforeach()
if(NOT exe)
  message(FATAL_ERROR "packaging (${MODE}): consumer binary not found under ${WORK_DIR}")
endif()
run_step("run consumer" "${exe}")
if(NOT step_output MATCHES "frugal ${EXPECTED_VERSION}")
  message(FATAL_ERROR "packaging (${MODE}): consumer printed\n${step_output}\n"
    "expected it to contain 'frugal ${EXPECTED_VERSION}'")
endif()
message(STATUS "packaging (${MODE}): consumer says: ${step_output}")
