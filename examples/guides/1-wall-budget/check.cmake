# ctest guide.wall_budget: the guide's program under wall=2s must end on its own (exit 0),
# stopped by the controller's forecast, inside its wall limit, after using most of it, with an
# evaluation of the trained model that ended inside the limit too. Without TIMED (a sanitizer
# build, check_common.cmake) it may stop at the limit, and where it stopped is not checked.
#   cmake -DEXE=<guide_wall_budget> [-DTIMED=0] -P check.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../check_common.cmake")

guide_run(wall=2s 20)  # an evaluation every 20 steps: several even in slow (sanitizer) builds
guide_expect_status(0)
guide_expect_budget_stop("stopped: " wall)
guide_expect("(^|\n)wall used: ([0-9.]+) s of ([0-9.]+) s \\(([0-9]+) evaluations")
set(used_text "${CMAKE_MATCH_2}")
set(limit_text "${CMAKE_MATCH_3}")
set(evaluations "${CMAKE_MATCH_4}")
guide_thousandths(used "${used_text}")
guide_thousandths(limit "${limit_text}")
if(NOT limit EQUAL 2000)
  guide_fail("the wall limit read back is ${limit_text} s, not 2 s")
endif()
if(TIMED AND used GREATER limit)
  guide_fail("the run used ${used_text} s of its ${limit_text} s wall limit: past it")
endif()
if(used LESS 1000)
  guide_fail("the run stopped after ${used_text} s of ${limit_text} s: it left half its budget unused")
endif()
if(evaluations LESS 2)
  guide_fail("${evaluations} evaluations: expected one per 20 steps, at least 2")
endif()

# The last evaluation: inside the limit, and a model that learnt (10 classes: chance is 0.1).
string(REGEX MATCHALL "evaluation [0-9]+ at [0-9.]+ s" lines "${out}")
list(GET lines -1 last)
string(REGEX MATCH "at ([0-9.]+) s" _ "${last}")
guide_thousandths(last_at "${CMAKE_MATCH_1}")
if(TIMED AND last_at GREATER limit)
  guide_fail("the last evaluation ended at ${CMAKE_MATCH_1} s, past the limit")
endif()
guide_expect("(^|\n)final test accuracy: 0\\.([0-9]+)")
guide_thousandths(accuracy "0.${CMAKE_MATCH_2}")
if(accuracy LESS 600)
  guide_fail("final test accuracy 0.${CMAKE_MATCH_2}: expected at least 0.6 after training")
endif()
message("guide.wall_budget: ok (${used_text} s of ${limit_text} s, ${evaluations} evaluations, final accuracy 0.${CMAKE_MATCH_2})")
