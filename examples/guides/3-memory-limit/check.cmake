# ctest guide.memory_limit: two runs of the guide's program.
#   ROOM=1MiB:  the heap's peak (the whole run: probe, steps, evaluations) at or under the limit,
#               a batch below 256 chosen by the memory probe, accumulation keeping 256 samples
#               per update, and evaluations (sized in chunks) run;
#   ROOM=64MiB: room for the full batch: 256 x 1, and a higher peak than the first run's.
# Under a sanitizer (-DSANITIZE=...) the allocation hooks step aside: the program must say that
# peak_bytes is not measured, and why, and still train at the full batch; its wall stop may then
# be the limit reached (TIMED=0, check_common.cmake).
#   cmake -DEXE=<guide_memory_limit> [-DSANITIZE=address,undefined -DTIMED=0] -P check.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../check_common.cmake")

guide_run(1MiB)
guide_expect_status(0)
guide_expect_budget_stop("stopped: " wall)
if(SANITIZE)
  guide_expect("(^|\n)warning: peak_bytes is not measured in this build \\([^)]*sanitizer")
  guide_expect("(^|\n)batch: 256 x 1 accumulation steps = 256 samples per update")
  message("guide.memory_limit: ok (under ${SANITIZE}: the program says peak_bytes is not measured)")
  return()
endif()
if(out MATCHES "warning: peak_bytes is not measured")
  guide_fail("the allocation hooks do not count in a build without sanitizers")
endif()
guide_expect("(^|\n)memory probe: peak\\(b\\) = ")
guide_expect("(^|\n)epoch 0: val_acc ")
guide_expect("(^|\n)peak heap: ([0-9]+) B, limit ([0-9]+) B")
set(peak "${CMAKE_MATCH_2}")
set(limit "${CMAKE_MATCH_3}")
if(peak GREATER limit)
  guide_fail("the heap peaked at ${peak} B, over the limit of ${limit} B")
endif()
guide_expect("(^|\n)batch: ([0-9]+) x ([0-9]+) accumulation steps = ([0-9]+) samples per update")
set(batch "${CMAKE_MATCH_2}")
if(NOT batch LESS 256)
  guide_fail("batch ${batch} under a 1 MiB room: the memory probe did not shrink it")
endif()
if(NOT CMAKE_MATCH_4 EQUAL 256)
  guide_fail("${CMAKE_MATCH_4} samples per update, expected 256 (gradient accumulation)")
endif()
set(small_out "${out}")

guide_run(64MiB)
guide_expect_status(0)
guide_expect("(^|\n)batch: 256 x 1 accumulation steps = 256 samples per update")
guide_expect("(^|\n)peak heap: ([0-9]+) B, limit ([0-9]+) B")
if(NOT CMAKE_MATCH_2 GREATER peak)
  guide_fail("with room for the full batch the peak is ${CMAKE_MATCH_2} B, not above the 1 MiB run's ${peak} B\n${small_out}")
endif()
message("guide.memory_limit: ok (peak ${peak} B <= limit ${limit} B at batch ${batch}; ${CMAKE_MATCH_2} B at 256)")
