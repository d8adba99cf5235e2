# ctest guide.early_stopping: the guide's program must be stopped by early stopping (not by its
# budget) exactly `patience` = 3 epochs after its best validation loss, must have saved the best
# weights (best.bin, the size of the 784-128-10 MLP's parameters) at that epoch, and the weights
# it loads back must give that same loss (the program exits 1 otherwise).
#   cmake -DEXE=<guide_early_stopping> -DWORK=<scratch dir> -P check.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../check_common.cmake")

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
guide_run("${WORK}" "wall=1m,samples=2e6")
guide_expect_status(0)
guide_expect("(^|\n)stopped: stop \\(early_stopping\\): val_loss did not improve")
guide_expect("(^|\n)best val_loss ([0-9.]+) at epoch ([0-9]+); reloaded from [^:]*: val_loss ([0-9.]+)")
set(best "${CMAKE_MATCH_2}")
set(best_epoch "${CMAKE_MATCH_3}")
if(NOT CMAKE_MATCH_4 STREQUAL best)
  guide_fail("the reloaded weights give val_loss ${CMAKE_MATCH_4}, not the best ${best}")
endif()
# The callback saved at the best epoch, and at no later one.
string(REGEX MATCHALL "new best val_loss [0-9.]+ at epoch [0-9]+" saves "${out}")
list(GET saves -1 last_save)
if(NOT last_save STREQUAL "new best val_loss ${best} at epoch ${best_epoch}")
  guide_fail("the last save was '${last_save}', expected the best epoch ${best_epoch}")
endif()
guide_expect("(^|\n)  the controller stopped the run at epoch ([0-9]+)")
math(EXPR expected "${best_epoch} + 3")
if(NOT CMAKE_MATCH_2 EQUAL expected)
  guide_fail("stopped at epoch ${CMAKE_MATCH_2}, expected ${expected} (best epoch ${best_epoch} + patience 3)")
endif()
file(SIZE "${WORK}/best.bin" size)
math(EXPR expected_size "(128 * 784 + 128 + 10 * 128 + 10) * 4")
if(NOT size EQUAL expected_size)
  guide_fail("best.bin holds ${size} bytes, expected ${expected_size} (the MLP's float parameters)")
endif()
message("guide.early_stopping: ok (best val_loss ${best} at epoch ${best_epoch}, stopped at epoch ${expected})")
