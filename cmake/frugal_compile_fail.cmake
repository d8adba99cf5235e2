# frugal_add_compile_fail_test(<name> SOURCE <file.cpp> EXPECT <regex>...)
#
# A ctest test that builds <file.cpp> (linked with frugal::frugal, never part of `all`) and
# passes only if the build FAILS with every <regex> in its output: for rules frugal enforces at
# compile time (an uncounted Eigen expression, a misspelled controller callback).
function(frugal_add_compile_fail_test name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "SOURCE" "EXPECT")
  add_executable(${name} EXCLUDE_FROM_ALL "${ARG_SOURCE}")
  target_link_libraries(${name} PRIVATE frugal::frugal)
  frugal_setup_target(${name})
  # A list cannot cross the command line intact: join it with a separator the script splits on.
  string(REPLACE ";" "<frugal-sep>" expected "${ARG_EXPECT}")
  add_test(NAME ${name}
    COMMAND "${CMAKE_COMMAND}"
      -D "BUILD_DIR=${CMAKE_BINARY_DIR}"
      -D "TARGET=${name}"
      -D "CONFIG=$<CONFIG>"
      -D "EXPECT=${expected}"
      -P "${PROJECT_SOURCE_DIR}/cmake/frugal_expect_compile_errors.cmake")
  set_tests_properties(${name} PROPERTIES LABELS unit TIMEOUT 300)
endfunction()
