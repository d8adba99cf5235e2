# ctest example.fashion_mnist.quantize: a plan (--epochs 2) that does not fit its FLOP budget.
#   1. without --quantize the budget ends the run early, every layer trained to the end;
#   2. with --quantize (and --checkpoint) the deferred rule waits for the first epoch end (the
#      plan's evaluations measured), then freezes layer 1 as int8: the run trains more of its
#      plan in the same budget, never past it, and the step's FLOPs fall by exactly what the job
#      predicted -- the controller's measured FLOPs per sample before and after (report.json)
#      times the batch equal the job's step FLOPs before and after;
#   3. --resume of the finished run reads the frozen int8 layer back; without --quantize it is
#      refused (exit 1), the message naming --quantize.
#   cmake -DEXE=<fashion_mnist> -DDATA=<dir> -DWORK=<dir> [-DTHREADS=N] -P check_quantize.cmake
include("${CMAKE_CURRENT_LIST_DIR}/check_common.cmake")

function(fail what)
  message(FATAL_ERROR "example.fashion_mnist.quantize: ${what}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endfunction()

frugal_check_prologue(check_quantize.cmake)
if(PROLOGUE_SKIPPED)
  return()
endif()

set(budget "flops=8e10")  # about 0.7 of what 2 epochs of the 784-256-128-10 network cost
set(batch 128)
set(steps_per_epoch 430)  # 55000 training images in steps of 128
set(checkpoint "${WORK}-checkpoint")
file(REMOVE_RECURSE "${checkpoint}")

frugal_run_example(--budget ${budget} --epochs 2 --batch ${batch} --trace-events 0)
epochs_trained(plain_epochs "without --quantize")
if(out MATCHES "\nquantized: ")
  fail("without --quantize, the model was quantized")
endif()

frugal_run_example(--budget ${budget} --epochs 2 --batch ${batch} --trace-events 0 --quantize --checkpoint "${checkpoint}")
if(NOT err MATCHES "step ([0-9]+): froze layer\\(s\\) 1-1 as int8 per-channel weights \\(784 KiB -> 197 KiB; ([0-9]+) of ([0-9]+) parameters trained\\)")
  fail("no freezing in the progress notes")
endif()
set(froze_at "${CMAKE_MATCH_1}")
if(NOT CMAKE_MATCH_2 EQUAL 34186 OR NOT CMAKE_MATCH_3 EQUAL 235146)
  fail("${CMAKE_MATCH_2} of ${CMAKE_MATCH_3} parameters trained after freezing layer 1: expected 34186 of 235146 (layers 2 and 3)")
endif()
if(froze_at LESS_EQUAL steps_per_epoch)
  fail("froze at step ${froze_at}, before the first epoch end (step ${steps_per_epoch}) measured the plan's evaluations")
endif()
if(NOT out MATCHES "\nquantized: layer\\(s\\) 1-1 frozen as int8 per-channel weights, 34186 of 235146 parameters trained; a step of ${batch} samples ([0-9]+) -> ([0-9]+) FLOPs\n")
  fail("no 'quantized: ...' summary")
endif()
set(flops_before "${CMAKE_MATCH_1}")
set(flops_after "${CMAKE_MATCH_2}")
epochs_trained(quantized_epochs "with --quantize")
if(NOT quantized_epochs GREATER plain_epochs)
  fail("with --quantize the run trained ${quantized_epochs} hundredths of an epoch, without ${plain_epochs}: no more of its plan")
endif()
if(NOT out MATCHES "\ntest accuracy: 0\\.[0-9]+")
  fail("no test accuracy")
endif()

# report.json: inside the budget; one "compressions" record, a quantize to 8 bits, measured.
file(READ "${WORK}/report.json" report)
json(used budget used flops)
json(limit budget limits flops)
if(used GREATER limit)
  fail("report.json: ${used} FLOPs used, past the limit of ${limit}")
endif()
string(JSON records LENGTH "${report}" controller compressions)
if(NOT records EQUAL 1)
  fail("report.json: ${records} compressions, expected the one quantizing")
endif()
json(action controller compressions 0 action)
json(bits controller compressions 0 bits)
json(lowered controller compressions 0 lowered)
if(NOT action STREQUAL "quantize" OR NOT bits EQUAL 8 OR NOT lowered STREQUAL "ON")
  fail("report.json: the compression is '${action}' to ${bits} bits, lowered ${lowered}: expected quantize, 8, true")
endif()
json(before controller compressions 0 effects 0 before_per_sample)
json(after controller compressions 0 effects 0 after_per_sample)
expect_per_sample("${before}" ${flops_before} ${batch} "before freezing")
expect_per_sample("${after}" ${flops_after} ${batch} "after freezing (the step the job predicted)")

# epochs.csv: the step FLOPs of the model each evaluation saw.
expect_last_step_flops(${flops_after} "the frozen step's")

# Resuming the finished run reads the frozen layer back; without --quantize it is refused.
frugal_run_example(--budget ${budget} --epochs 2 --batch ${batch} --trace-events 0 --quantize --checkpoint "${checkpoint}" --resume)
if(NOT err MATCHES "resumed from ")
  fail("the resume of the quantized run did not resume")
endif()
if(NOT out MATCHES "\nquantized: layer\\(s\\) 1-1 frozen as int8")
  fail("the resumed run's layer 1 is not frozen")
endif()
expect_run_refused("froze 1 layer\\(s\\) as int8 \\(resume with --quantize\\)" "resuming the quantized run without --quantize"
               --budget ${budget} --epochs 2 --batch ${batch} --trace-events 0 --checkpoint "${checkpoint}" --resume)
message("example.fashion_mnist.quantize: ok (${plain_epochs} hundredths of an epoch without --quantize, ${quantized_epochs} "
        "with; layer 1 frozen as int8 at step ${froze_at}; a step ${flops_before} -> ${flops_after} FLOPs, as measured)")
