# ctest example.fashion_mnist.prune: a plan (--epochs 2) that does not fit its FLOP budget.
#   1. without --prune the budget ends the run early, at the full width;
#   2. with --prune (and --checkpoint) the controller has hidden units removed once its 10
#      warm-up steps are over: the run trains more of its plan in the same budget, never past
#      it, and every pruning lowers the step's FLOPs by exactly what the plan predicted -- the
#      controller's measured FLOPs per sample after the last pruning (report.json) times the
#      batch equal the step FLOPs the job predicted for the new width, and before the first
#      pruning the full width's;
#   3. --resume of the finished, pruned run reads the narrower model back; without --prune it
#      is refused (exit 1), the message naming --prune.
#   cmake -DEXE=<fashion_mnist> -DDATA=<dir> -DWORK=<dir> [-DTHREADS=N] -P check_prune.cmake
include("${CMAKE_CURRENT_LIST_DIR}/check_common.cmake")

function(fail what)
  message(FATAL_ERROR "example.fashion_mnist.prune: ${what}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endfunction()

frugal_check_prologue(check_prune.cmake)
if(PROLOGUE_SKIPPED)
  return()
endif()

set(budget "flops=5e10")  # about half of what 2 epochs of the 784-256-128-10 network cost
set(batch 128)
set(checkpoint "${WORK}-checkpoint")
file(REMOVE_RECURSE "${checkpoint}")

frugal_run_example(--budget ${budget} --epochs 2 --batch ${batch} --trace-events 0)
epochs_trained(plain_epochs "without --prune")
if(out MATCHES "\npruned: ")
  fail("without --prune, the model was pruned")
endif()

frugal_run_example(--budget ${budget} --epochs 2 --batch ${batch} --trace-events 0 --prune --checkpoint "${checkpoint}")
if(NOT err MATCHES "step ([0-9]+): pruned hidden layer 1 from 256 to ([0-9]+) units")
  fail("no pruning in the progress notes")
endif()
if(CMAKE_MATCH_1 LESS 10)
  fail("pruned at step ${CMAKE_MATCH_1}, inside the rule's 10 warm-up steps")
endif()
if(NOT out MATCHES "\npruned: MLP 784-256-128-10 -> 784-([0-9]+)-128-10 \\(([0-9]+) prunings\\), [0-9]+ parameters; a step of ${batch} samples ([0-9]+) -> ([0-9]+) FLOPs\n")
  fail("no 'pruned: MLP ...' summary")
endif()
set(width "${CMAKE_MATCH_1}")
set(prunings "${CMAKE_MATCH_2}")
set(flops_before "${CMAKE_MATCH_3}")
set(flops_after "${CMAKE_MATCH_4}")
if(NOT width LESS 256 OR width LESS 16)
  fail("hidden layer 1 ended ${width} units wide: expected fewer than 256, at least --prune-min-units 16")
endif()
if(NOT flops_after LESS flops_before)
  fail("a step costs ${flops_after} FLOPs after pruning, ${flops_before} before")
endif()
epochs_trained(pruned_epochs "with --prune")
if(NOT pruned_epochs GREATER plain_epochs)
  fail("with --prune the run trained ${pruned_epochs} hundredths of an epoch, without ${plain_epochs}: no more of its plan")
endif()
if(NOT out MATCHES "\ntest accuracy: 0\\.[0-9]+")
  fail("no test accuracy")
endif()

# report.json: inside the budget; one "compressions" record per pruning, each measured.
file(READ "${WORK}/report.json" report)
string(JSON used GET "${report}" budget used flops)
string(JSON limit GET "${report}" budget limits flops)
if(used GREATER limit)
  fail("report.json: ${used} FLOPs used, past the limit of ${limit}")
endif()
string(JSON records LENGTH "${report}" controller compressions)
if(NOT records EQUAL prunings)
  fail("report.json: ${records} compressions, the job reported ${prunings} prunings")
endif()
math(EXPR last "${records} - 1")
string(JSON first_before GET "${report}" controller compressions 0 effects 0 before_per_sample)
string(JSON last_after GET "${report}" controller compressions ${last} effects 0 after_per_sample)
expect_per_sample("${first_before}" ${flops_before} ${batch} "before pruning (the full width)")
expect_per_sample("${last_after}" ${flops_after} ${batch} "after pruning (the width the job predicted for)")

# epochs.csv: the parameters and step FLOPs of the model each evaluation saw.
expect_last_step_flops(${flops_after} "the pruned step's")

# Resuming the finished run reads the pruned model back; without --prune it is refused.
frugal_run_example(--budget ${budget} --epochs 2 --batch ${batch} --trace-events 0 --prune --checkpoint "${checkpoint}" --resume)
if(NOT err MATCHES "resumed from ")
  fail("the resume of the pruned run did not resume")
endif()
if(NOT err MATCHES "MLP 784-${width}-128-10")
  fail("the resumed run's model is not the pruned 784-${width}-128-10")
endif()
expect_run_refused("a pruned run: resume with --prune" "resuming the pruned run without --prune"
               --budget ${budget} --epochs 2 --batch ${batch} --trace-events 0 --checkpoint "${checkpoint}" --resume)
message("example.fashion_mnist.prune: ok (${plain_epochs} hundredths of an epoch without --prune, ${pruned_epochs} with; "
        "hidden layer 1 256 -> ${width} in ${prunings} prunings; a step ${flops_before} -> ${flops_after} FLOPs, as measured)")
