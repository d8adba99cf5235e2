# ctest example.fashion_mnist.peak_bytes: a memory limit that holds. Four runs of the main job
# on a FLOP budget (one evaluation, a hundred steps or so):
#   1. no memory limit: its peak P (the evaluation's 512-image chunks and the 128-sample steps);
#   2. peak_bytes=1GiB: the memory probe runs and report.json gives the model of a step's heap,
#      peak(b) = base + rise * b, and the heap's resolution (threads x fold bytes);
#   3-4. X = base + resolution + rise * 48 and + rise * 8: between "resident + a batch-1 step" and
#      "resident + the full batch". Each must keep the whole run's measured peak (evaluation
#      included) at or under X, with a smaller batch and about the same effective batch (128, by
#      accumulation), evaluate, and save against run 1 at least the rise of 32 samples;
#   5. X = base + half a sample's rise: the run stops before its first step.
# Skipped where the allocation hooks do not count (no peak, as under ASan).
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

# A JSON number as a whole number of bytes (the fraction dropped), for math(EXPR).
function(json_bytes var)
  string(JSON value ERROR_VARIABLE error GET "${report}" ${ARGN})
  if(error)
    fail("report.json: ${ARGN}: ${error}")
  endif()
  if(NOT value MATCHES "^([0-9]+)(\\.[0-9]*)?$")
    fail("report.json: ${ARGN}: not a plain byte count: ${value}")
  endif()
  set(${var} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

set(common --epochs 1 --hidden 64 --batch 128 --seed 1 --trace-events 0)

# 1. No memory limit.
frugal_run_example(--budget "flops=4e9" ${common})
file(READ "${WORK}/report.json" report)
string(JSON peak_type ERROR_VARIABLE error TYPE "${report}" budget used peak_bytes)
if(error OR NOT peak_type STREQUAL "NUMBER")
  message("SKIPPED: the allocation hooks count nothing in this build (peak_bytes ${peak_type})")
  return()
endif()
json_bytes(unlimited budget used peak_bytes)
if(unlimited EQUAL 0)
  message("SKIPPED: the allocation hooks count nothing in this build (peak_bytes 0)")
  return()
endif()

# 2. The model.
frugal_run_example(--budget "flops=4e9,peak_bytes=1GiB" ${common})
file(READ "${WORK}/report.json" report)
json_bytes(base controller memory step peak_bytes base_bytes)
json_bytes(rise controller memory step peak_bytes rise_per_unit_bytes)
json_bytes(resolution controller memory step peak_bytes resolution_bytes)
if(rise LESS 1000)
  fail("the memory model's rise per sample is ${rise} B: a step of the 784-64-10 MLP holds several KiB per sample")
endif()

foreach(samples 48 8)
  math(EXPR limit "${base} + ${resolution} + ${rise} * ${samples}")
  frugal_run_example(--budget "flops=4e9,peak_bytes=${limit}" ${common})
  file(READ "${WORK}/report.json" report)
  json_bytes(peak budget used peak_bytes)
  json_bytes(batch controller batch size)
  json_bytes(effective controller batch effective)
  if(peak GREATER limit)
    fail("peak_bytes=${limit} (base + resolution + ${samples} samples): the run peaked at ${peak} B")
  endif()
  math(EXPR saving "${unlimited} - ${peak}")
  math(EXPR wanted "${rise} * 32")
  if(saving LESS wanted)
    fail("peak_bytes=${limit}: peak ${peak} B saves ${saving} B against the unlimited run's ${unlimited} B, "
         "less than the rise of 32 samples (${wanted} B)")
  endif()
  # Accumulation keeps an update at 128 samples or the fewest micro-batches above it (7 x 19).
  math(EXPR most "128 + ${batch}")
  if(NOT batch LESS 128 OR effective LESS 128 OR NOT effective LESS most)
    fail("peak_bytes=${limit}: batch ${batch}, effective ${effective}: expected a smaller batch, effective 128 "
         "(or the fewest micro-batches above it)")
  endif()
  if(NOT out MATCHES ", 1 evaluations\\)")
    fail("peak_bytes=${limit}: expected the run to end with its evaluation")
  endif()
  message(STATUS "peak_bytes=${limit} (${samples} samples over the base): peak ${peak} B, batch ${batch}, "
                 "saved ${saving} B against ${unlimited} B")
endforeach()

# 5. Not even one sample fits (half a sample's rise over the base): the run stops before its
# first step, with the reason, and never runs a batch of 0.
math(EXPR limit "${base} + ${rise} / 2")
frugal_run_example(--budget "flops=4e9,peak_bytes=${limit}" ${common})
if(NOT out MATCHES "stopped: stop \\(forecast\\): (memory probe: [^\n]*not even the smallest batch fits; no step ran|peak_bytes: the level already stands at [^\n]*no batch size can fit)")
  fail("peak_bytes=${limit}: expected a stop before the first step, not even batch 1 fitting")
endif()
if(NOT out MATCHES "\\(0 steps, 0 samples, 0 evaluations\\)")
  fail("peak_bytes=${limit}: expected no step and no evaluation")
endif()

message(STATUS "example.fashion_mnist.peak_bytes: ok (both runs stayed at or under their limits; one that fits no "
               "batch stopped before its first step)")
