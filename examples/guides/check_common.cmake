# What the guides' check scripts share: run the guide's program, fail with its output, read
# numbers from it. A guide whose data are missing prints "SKIPPED: ..." (the test is skipped).
#   include(check_common.cmake); guide_run(<args>...); guide_expect("^stopped: stop \\(forecast\\)")
#
# TIMED (-DTIMED=1, the default) says the build's timings are representative. A sanitizer build
# (TIMED=0) runs every step several times slower and less evenly, beside other tests: a step may
# then cost more than its forecast, and the controller's bound (the overshoot is less than that
# one step) lets the run reach its wall limit. There the checks hold the guide to what it does
# (it trains, stops on the budget, evaluates, writes its files) and leave the claims about time
# (stopped by the forecast, inside the limit) to the plain build.
if(NOT DEFINED TIMED)
  set(TIMED 1)
endif()

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

# The run stopped on the budget's <resource> limit ("wall"), after the line's prefix ("stopped: "):
# by the controller's forecast; without TIMED, by the forecast or the limit reached.
function(guide_expect_budget_stop prefix resource)
  if(TIMED)
    guide_expect("(^|\n)${prefix}stop \\(forecast\\): ${resource}: ")
  else()
    guide_expect("(^|\n)${prefix}stop \\((forecast|budget_exhausted)\\): ${resource}: ")
  endif()
endfunction()

include("${CMAKE_CURRENT_LIST_DIR}/../../cmake/frugal_fixed_point.cmake")

# "12.345" -> 12345: a decimal with up to three digits after the point as a whole number of
# thousandths, for math(EXPR), which has integers only.
function(guide_thousandths var text)
  frugal_fixed_point(value "${text}" 3)
  if(value STREQUAL "")
    guide_fail("not a decimal number: '${text}'")
  endif()
  set(${var} "${value}" PARENT_SCOPE)
endfunction()
