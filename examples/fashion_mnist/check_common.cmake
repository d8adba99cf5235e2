# Shared by the example's ctest scripts: checks their -D arguments, skips (with the package
# to install) when Fashion-MNIST is absent, and runs the example into a fresh WORK directory.
#   frugal_check_prologue(<script name>)          sets THREADS (default 2) unless given
#   frugal_run_example(<arg>...)                  runs EXE with DATA/WORK/THREADS; sets rc, out, err
#   json(<out var> <key or index>...)             the value there in the caller's ${report} (the
#                                                 text of report.json); fail()s when it is absent
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
