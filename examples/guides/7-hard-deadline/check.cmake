# ctest guide.hard_deadline: the guide's program, twice, with the wall limit limit_s: 2 s, or
# 6 s without TIMED (a sanitizer's steps are tens of times slower).
# 1. With evaluations stalled 3 s a chunk from the second on: the second evaluation runs into the
#    limit, the hard deadline cancels the run, run() gives the evaluation up at once -- with
#    TIMED, within 100 ms of the limit, where waiting for the stalled chunks would take over a
#    second -- and the run ends on its own (exit 0) with the first evaluation's result. The
#    abandoned chunks end in the background, after the report.
#    Speed does not change which evaluation that is: the first one is not stalled and takes well
#    under half the limit even under a sanitizer beside other tests, so the forecast lets the second
#    start; its eight chunks of 3 s each, on two or three threads, outlast any limit here.
# 2. Without the stall the forecast stops the run before the limit, as in guide 1, and the hard
#    deadline never fires.
#   cmake -DEXE=<guide_hard_deadline> [-DTIMED=0] -P check.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../check_common.cmake")

if(TIMED)
  set(limit_s 2)
else()
  set(limit_s 6)
endif()
guide_run(wall=${limit_s}s 20 3000)
guide_expect_status(0)
guide_expect("(^|\n)stopped: cancelled \\(deadline\\): the deadline watchdog fired at the wall limit; parallel work in flight was cancelled\n")
guide_expect("(^|\n)evaluation 2 abandoned at the hard deadline: it fired ([0-9.]+) ms after the limit, run\\(\\) returned ([0-9.]+) ms after it\n")
set(returned_text "${CMAKE_MATCH_3}")
guide_thousandths(returned "${returned_text}")
if(TIMED AND returned GREATER 100000)
  guide_fail("run() returned ${returned_text} ms after the limit: it waited for the stalled chunks")
endif()
guide_expect("(^|\n)wall used: [0-9.]+ s of ${limit_s}\\.000 s \\(1 evaluation, ")
guide_expect("(^|\n)final test accuracy: 0\\.([0-9]+) \\(the last complete evaluation\\)")
set(final_digits "${CMAKE_MATCH_2}")
guide_thousandths(accuracy "0.${final_digits}")
if(accuracy LESS 500)
  guide_fail("final test accuracy 0.${final_digits}: expected at least 0.5 after an evaluation's training")
endif()
guide_expect("(^|\n)evaluation 1 at [0-9.]+ s: test accuracy 0\\.${final_digits}\n")
guide_expect("(^|\n)budget train\n")  # the report, written while the abandoned chunks still ran
guide_expect("\nthe abandoned chunks ended ([0-9.]+) ms after the report was written \\([0-9] of 8 chunks ran\\)")
set(joined_text "${CMAKE_MATCH_1}")
guide_thousandths(joined "${joined_text}")
# A stalled chunk sleeps 3 s from the second evaluation (before 0.1 s of the run) on: it ends
# past 3 s, while the report is written just after the limit, 2 s.
if(TIMED AND joined LESS 500000)
  guide_fail("the abandoned chunks ended ${joined_text} ms after the report: they cannot have been in flight")
endif()
message("guide.hard_deadline, stalled: ok (run() returned ${returned_text} ms after the limit; the chunks in flight ended ${joined_text} ms after the report)")

guide_run(wall=${limit_s}s 20)
guide_expect_status(0)
if(TIMED)
  guide_expect_budget_stop("stopped: " wall)
  if(out MATCHES "abandoned")
    guide_fail("an evaluation was abandoned without a stall")
  endif()
else()
  # A sanitizer's uneven steps may reach the limit, and then the hard deadline may fire first.
  guide_expect("(^|\n)stopped: (stop \\((forecast|budget_exhausted)\\): wall: |cancelled \\(deadline\\): )")
endif()
message("guide.hard_deadline, not stalled: ok")
