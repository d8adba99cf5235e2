# ctest guide.flop_budget_pruning: two runs of the guide's program under flops=6e9, about half of
# what its plan (6 epochs, 784-128-10) costs.
#   pruned:    exit 0; at least one pruning, none inside the rule's 10 warm-up steps, each at
#              least the 16 cooldown steps after the one before; each narrows the hidden layer
#              (to no fewer than 8 units), and the FLOPs measured for a step before and after it
#              are exactly those of the two widths by frugal's formulas (computed here, from
#              ops.hpp, and printed by the program); the whole plan trained, inside the limit,
#              with a final test accuracy above 0.6 on the last width;
#   noprune:   exit 0, never pruned, inside the limit, and less of the plan trained.
# FLOPs are counted exactly, so every number checked here is the same on every machine (only
# the accuracy is not); timings are not checked.
#   cmake -DEXE=<guide_flop_budget_pruning> -P check.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../check_common.cmake")

set(batch 50)  # main.cpp's batch: every step of its plan is a full one (4000 = 80 x 50)

# FLOPs of one training step of model.hpp's 784-h-10 MLP on a batch of b, as frugal's ops charge
# them (ops.hpp, one FLOP per transcendental): forward, loss, backward, gathering the gradient and
# the SGD update.
function(step_flops var h b)
  math(EXPR parameters "784 * ${h} + ${h} + 10 * ${h} + 10")
  math(EXPR forward "(2 * 784 * ${h} * ${b} + ${h} * ${b}) + ${h} * ${b} + (2 * ${h} * 10 * ${b} + 10 * ${b})")
  math(EXPR loss "${b} * (5 * 10 + 1 + 11)")  # softmax_cross_entropy_flops(10, b)
  # Layer 2 with its input gradient, relu_backward, layer 1 without one.
  math(EXPR backward "(4 * 10 * ${h} * ${b} + 10 * (${b} - 1)) + ${h} * ${b} + (2 * ${h} * 784 * ${b} + ${h} * (${b} - 1))")
  math(EXPR update "2 * ${parameters} + 2 * ${parameters}")  # gather (model.hpp) + sgd_update
  math(EXPR total "${forward} + ${loss} + ${backward} + ${update}")
  set(${var} "${total}" PARENT_SCOPE)
endfunction()

# "plan: N of M samples trained", "FLOPs used: U of L" and "final test accuracy: A (784-h-10)";
# sets trained, planned, flops_used, flops_limit, accuracy (thousandths) and final_width.
function(read_totals run)
  guide_expect("(^|\n)plan: ([0-9]+) of ([0-9]+) samples trained")
  set(trained "${CMAKE_MATCH_2}" PARENT_SCOPE)
  set(planned "${CMAKE_MATCH_3}" PARENT_SCOPE)
  guide_expect("(^|\n)FLOPs used: ([0-9]+) of ([0-9]+)\n")
  set(flops_used "${CMAKE_MATCH_2}")
  if(flops_used GREATER CMAKE_MATCH_3)
    guide_fail("${run}: ${flops_used} FLOPs used, past the limit of ${CMAKE_MATCH_3}")
  endif()
  set(flops_used "${flops_used}" PARENT_SCOPE)
  set(flops_limit "${CMAKE_MATCH_3}" PARENT_SCOPE)
  guide_expect("(^|\n)final test accuracy: ([0-9.]+) \\(784-([0-9]+)-10\\)")
  guide_thousandths(accuracy "${CMAKE_MATCH_2}")
  set(accuracy "${accuracy}" PARENT_SCOPE)
  set(final_width "${CMAKE_MATCH_3}" PARENT_SCOPE)
endfunction()

# --- with pruning ---
guide_run(flops=6e9)
guide_expect_status(0)
guide_expect("(^|\n)plan: 6 epochs of 4000 images, 784-128-10: ")
string(REGEX MATCHALL "(^|\n)step [0-9]+: pruned [0-9]+ -> [0-9]+ hidden units, a step's FLOPs [0-9]+ -> [0-9]+ \\(frugal's formula: [0-9]+\\)"
       prunings "${out}")
list(LENGTH prunings count)
if(count EQUAL 0)
  guide_fail("no pruning under a FLOP limit of half the plan")
endif()
string(REGEX MATCHALL "(^|\n)step [0-9]+: prune [0-9.]+ %: flops: " decisions "${out}")
list(LENGTH decisions decided)
if(NOT decided EQUAL count)
  guide_fail("${decided} prune decisions printed, ${count} prunings measured")
endif()
set(width 128)
set(previous_step "")
foreach(line IN LISTS prunings)
  string(REGEX MATCH "step ([0-9]+): pruned ([0-9]+) -> ([0-9]+) hidden units, a step's FLOPs ([0-9]+) -> ([0-9]+) \\(frugal's formula: ([0-9]+)\\)"
         _ "${line}")
  set(step "${CMAKE_MATCH_1}")
  set(before "${CMAKE_MATCH_2}")
  set(after "${CMAKE_MATCH_3}")
  set(measured_before "${CMAKE_MATCH_4}")
  set(measured_after "${CMAKE_MATCH_5}")
  set(printed_formula "${CMAKE_MATCH_6}")
  if(step LESS 10)
    guide_fail("pruned at step ${step}, inside the rule's 10 warm-up steps")
  endif()
  if(NOT previous_step STREQUAL "")
    math(EXPR gap "${step} - ${previous_step}")
    if(gap LESS 16)
      guide_fail("pruned at step ${step}, ${gap} steps after step ${previous_step}: inside the 16 cooldown steps")
    endif()
  endif()
  if(NOT before EQUAL width)
    guide_fail("step ${step}: pruned from ${before} units, but the layer was ${width} wide")
  endif()
  if(NOT after LESS before OR after LESS 8)
    guide_fail("step ${step}: ${before} -> ${after} units: not narrower, or below the floor of 8")
  endif()
  step_flops(expected_before ${before} ${batch})
  step_flops(expected_after ${after} ${batch})
  if(NOT measured_before EQUAL expected_before)
    guide_fail("step ${step}: a step at ${before} units measured ${measured_before} FLOPs, the formula says ${expected_before}")
  endif()
  if(NOT measured_after EQUAL expected_after OR NOT printed_formula EQUAL expected_after)
    guide_fail("step ${step}: a step at ${after} units measured ${measured_after} FLOPs (the program's formula "
               "${printed_formula}), the formula says ${expected_after}")
  endif()
  set(width ${after})
  set(previous_step ${step})
endforeach()
read_totals(pruned)
if(NOT final_width EQUAL width)
  guide_fail("the final evaluation ran at 784-${final_width}-10, the last pruning left ${width} units")
endif()
if(NOT trained EQUAL planned)
  guide_fail("with pruning ${trained} of the plan's ${planned} samples trained: the plan did not fit")
endif()
if(accuracy LESS 600)
  guide_fail("final test accuracy ${accuracy} thousandths after pruning: expected more than 0.6")
endif()
set(pruned_summary "${count} prunings, 128 -> ${width} units, ${trained} of ${planned} samples, ${flops_used} of ${flops_limit} FLOPs")
set(pruned_trained "${trained}")

# --- without pruning, the same limit ---
guide_run(flops=6e9 noprune)
guide_expect_status(0)
if(out MATCHES "(^|\n)step [0-9]+: prun")
  guide_fail("noprune: pruned anyway")
endif()
read_totals(noprune)
if(NOT final_width EQUAL 128)
  guide_fail("noprune: the final evaluation ran at 784-${final_width}-10, not the full 128 units")
endif()
if(NOT trained LESS pruned_trained)
  guide_fail("without pruning ${trained} samples of the plan trained, with pruning ${pruned_trained}: pruning won nothing")
endif()
message("guide.flop_budget_pruning: ok (${pruned_summary}; without pruning ${trained} samples)")
