# ctest example.fashion_mnist.peak_bytes: the controller's batch knob reaches the trainer. The
# peak_bytes limit (50 MiB) is below what the loaded images alone hold (70000 x 784 bytes =
# 52.3 MiB), so the first step's peak crosses it whatever the allocator adds. The controller
# shrinks the batch 128 -> 64 with 2 accumulation steps; the second step runs 64 samples and
# gathers a gradient without an update; its peak does not fall (the trainer's buffers are sized
# for the largest batch, and the data dominate), the forecast line says not even the minimum
# batch (16) fits, and the controller stops. Deterministic: only the order of these decisions
# is checked, not a byte count. Skipped where the allocation hooks do not count (no peak, as
# under ASan); the FLOP limit keeps that run short.
# cmake -DEXE=<fashion_mnist> -DDATA=<dir> -DWORK=<scratch dir> [-DTHREADS=2] -P check_peak.cmake
cmake_minimum_required(VERSION 3.20)

include("${CMAKE_CURRENT_LIST_DIR}/check_common.cmake")
frugal_check_prologue(check_peak.cmake)
if(PROLOGUE_SKIPPED)
  return()
endif()

function(fail what)
  message(FATAL_ERROR "example.fashion_mnist.peak_bytes: ${what}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endfunction()

frugal_run_example(--budget "flops=2e9,peak_bytes=50MiB" --epochs 5 --hidden 64 --batch 128 --seed 1
                   --trace-events 0)

file(READ "${WORK}/report.json" report)
string(JSON peak_type ERROR_VARIABLE error TYPE "${report}" budget used peak_bytes)
if(error)
  fail("report.json: budget.used.peak_bytes: ${error}")
endif()
set(peak 0)
if(peak_type STREQUAL "NUMBER")
  string(JSON peak GET "${report}" budget used peak_bytes)
endif()
if(peak EQUAL 0)
  message("SKIPPED: the allocation hooks count nothing in this build (peak_bytes 0)")
  return()
endif()

if(NOT err MATCHES "step 1: shrink batch 128 -> 64 \\(accumulation 2\\): peak_bytes: the step peaked at [^\n]* over limit 50.0 MiB")
  fail("no shrink 128 -> 64 (accumulation 2) after the first step")
endif()
if(NOT out MATCHES "batch: shrank to 64 \\(x2 accumulation\\)")
  fail("stdout does not report the shrink")
endif()
if(NOT out MATCHES "stopped: stop \\(forecast\\): peak_bytes: next step forecast [^\n]* at batch 16 over limit 50.0 MiB \\(batch at its minimum\\)")
  fail("did not stop for the peak_bytes limit at the minimum batch")
endif()
# The second step ran at the shrunken batch: 128 + 64 samples. A stop decided at a step means
# not even the next step fits: no evaluation follows it.
if(NOT out MATCHES "\\(2 steps, 192 samples, 0 evaluations\\)")
  fail("expected 2 steps of 128 and 64 samples, and no evaluation after the stop")
endif()
# Accumulation: the 64-sample step gathered half of an effective batch and made no update.
foreach(stage step update)
  string(JSON count LENGTH "${report}" budget stages)
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    string(JSON name GET "${report}" budget stages ${i} name)
    if(name STREQUAL stage)
      string(JSON ${stage}_calls GET "${report}" budget stages ${i} calls)
    endif()
  endforeach()
endforeach()
if(NOT step_calls EQUAL 2 OR NOT update_calls EQUAL 1)
  fail("report.json: ${step_calls} steps and ${update_calls} updates, expected 2 and 1")
endif()
if(NOT out MATCHES "\ntest accuracy: not measured[^\n]*\n?$")
  fail("no last line 'test accuracy: not measured ...' on stdout")
endif()

message(STATUS "example.fashion_mnist.peak_bytes: ok (the batch shrank 128 -> 64, then the run stopped at the minimum)")
