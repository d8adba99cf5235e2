# What the guides' check scripts share: run the guide's program, fail with its output, read
# numbers from it. A guide whose data are missing prints "SKIPPED: ..." (the test is skipped).
#   include(check_common.cmake); guide_run(<args>...); guide_expect("^stopped: stop \\(forecast\\)")

# Runs ${EXE} with the arguments; sets out, err and rc in the caller's scope.
macro(guide_run)
  execute_process(COMMAND "${EXE}" ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(out MATCHES "SKIPPED: ")
    message("${out}")
    return()
  endif()
endmacro()

function(guide_fail what)
  message(FATAL_ERROR "${what}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endfunction()

# The run must have ended with this exit status.
function(guide_expect_status status)
  if(NOT "${rc}" STREQUAL "${status}")
    guide_fail("exit status ${rc}, expected ${status}")
  endif()
endfunction()

# stdout must match the regular expression (a line: "(^|\n)stopped: ..."); its groups are then
# CMAKE_MATCH_1... in the caller's scope.
function(guide_expect regex)
  if(NOT out MATCHES "${regex}")
    guide_fail("stdout does not match '${regex}'")
  endif()
  foreach(i RANGE 1 9)
    set(CMAKE_MATCH_${i} "${CMAKE_MATCH_${i}}" PARENT_SCOPE)
  endforeach()
endfunction()

# "12.345" -> 12345: a decimal with up to three digits after the point as a whole number of
# thousandths, for math(EXPR), which has integers only.
function(guide_thousandths var text)
  if(NOT text MATCHES "^([0-9]+)(\\.([0-9]*))?$")
    guide_fail("not a decimal number: '${text}'")
  endif()
  set(frac "${CMAKE_MATCH_3}000")
  string(SUBSTRING "${frac}" 0 3 frac)
  math(EXPR value "${CMAKE_MATCH_1} * 1000 + 1${frac} - 1000")
  set(${var} "${value}" PARENT_SCOPE)
endfunction()
