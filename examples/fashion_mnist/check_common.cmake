# Shared by the example's ctest scripts: checks their -D arguments, skips (with the package
# to install) when Fashion-MNIST is absent, and runs the example into a fresh WORK directory.
#   frugal_check_prologue(<script name>)          sets THREADS (default 2) unless given
#   frugal_run_example(<arg>...)                  runs EXE with DATA/WORK/THREADS; sets rc, out, err
#   json(<out var> <key or index>...)             the value there in the caller's ${report} (the
#                                                 text of report.json); fail()s when it is absent
#   epochs_trained(<out var> <which run>)         the caller's run's "after N epochs" (${out}),
#                                                 in hundredths of an epoch
#   expect_per_sample(<json number> <step FLOPs> <batch> <what>)
#                                                 fail()s unless the per-sample FLOPs times the
#                                                 batch are the step's FLOPs, exactly
#   expect_last_step_flops(<step FLOPs> <whose>)  fail()s unless epochs.csv's last row ends with them
#   expect_run_refused(<message regex> <what> <arg>...)
#                                                 runs EXE with the args; fail()s unless it exits 1
#                                                 with the message
# A script that includes this file must return() when PROLOGUE_SKIPPED is set.
macro(frugal_check_prologue script)
  foreach(v EXE DATA WORK)
    if(NOT DEFINED ${v})
      message(FATAL_ERROR "${script}: -D${v}=... is required")
    endif()
  endforeach()
  set(PROLOGUE_SKIPPED OFF)
  if(NOT EXISTS "${DATA}/train-images-idx3-ubyte.gz")
    message("SKIPPED: Fashion-MNIST not installed in ${DATA} (apt-get install dataset-fashion-mnist)")
    set(PROLOGUE_SKIPPED ON)
  endif()
  if(NOT DEFINED THREADS)
    set(THREADS 2)
  endif()
endmacro()

macro(frugal_run_example)
  file(REMOVE_RECURSE "${WORK}")
  execute_process(
    COMMAND "${EXE}" ${ARGN} --threads ${THREADS} --data "${DATA}" --out "${WORK}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc STREQUAL "0")
    fail("exit status ${rc}, expected 0")
  endif()
endmacro()

function(json out_var)
  string(JSON value ERROR_VARIABLE error GET "${report}" ${ARGN})
  if(error)
    fail("report.json: ${ARGN}: ${error}")
  endif()
  set(${out_var} "${value}" PARENT_SCOPE)
endfunction()

function(epochs_trained var which)
  if(NOT out MATCHES "\nafter ([0-9.]+) epochs")
    fail("no 'after N epochs' line ${which}")
  endif()
  string(REPLACE "." "" hundredths "${CMAKE_MATCH_1}")  # two decimals: hundredths
  set(${var} "${hundredths}" PARENT_SCOPE)
endfunction()

# A per-sample cost in units of 1e-7: any whole number of FLOPs over a batch of 128 (2^7) has at
# most 7 decimals, so the comparison with a step's FLOPs * 1e7 / 128 is exact.
include("${CMAKE_CURRENT_LIST_DIR}/../../cmake/frugal_fixed_point.cmake")
function(expect_per_sample json_number step_flops batch what)
  frugal_fixed_point(measured "${json_number}" 7)
  if(measured STREQUAL "")
    fail("report.json: per-sample FLOPs '${json_number}' is not a plain decimal")
  endif()
  math(EXPR predicted "${step_flops} * 10000000 / ${batch}")
  if(NOT measured EQUAL predicted)
    fail("${what} the controller measured ${json_number} FLOPs per sample; a step of ${batch} samples is ${step_flops} FLOPs")
  endif()
endfunction()

function(expect_last_step_flops flops whose)
  file(STRINGS "${WORK}/epochs.csv" rows)
  list(GET rows -1 row)
  if(NOT row MATCHES ",([0-9]+),([0-9]+)$" OR NOT CMAKE_MATCH_2 EQUAL flops)
    fail("epochs.csv: the last row '${row}' does not end with ${whose} ${flops} FLOPs")
  endif()
endfunction()

function(expect_run_refused regex what)
  execute_process(COMMAND "${EXE}" ${ARGN} --threads ${THREADS} --data "${DATA}" --out "${WORK}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 1 OR NOT err MATCHES "${regex}")
    fail("${what}: exit status ${rc}, expected 1 and a message matching '${regex}'")
  endif()
endfunction()
