# ctest example.fashion_mnist.out_of_memory: a model that does not fit the memory the process
# may use (784-65536-65536-10, 17 GB of weights, under `ulimit -v 8000000`) is a clear message
# naming what could not be allocated and exit status 1, never an abort (before: an unhandled
# std::bad_alloc, status 134). Not under a sanitizer: their runtimes reserve terabytes of
# address space, which the ulimit forbids.
# cmake -DEXE=<fashion_mnist> -DDATA=<dir> -DWORK=<scratch dir> [-DTHREADS=2] -P check_out_of_memory.cmake
cmake_minimum_required(VERSION 3.20)

include("${CMAKE_CURRENT_LIST_DIR}/check_common.cmake")
frugal_check_prologue(check_out_of_memory.cmake)
if(PROLOGUE_SKIPPED)
  return()
endif()

file(REMOVE_RECURSE "${WORK}")
execute_process(
  COMMAND sh -c "ulimit -v 8000000 && exec \"$0\" \"$@\"" "${EXE}" --hidden 65536,65536 --threads ${THREADS}
          --trace-events 0 --data "${DATA}" --out "${WORK}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(expected "fashion_mnist: out of memory building the model \\(784-65536-65536-10, 4347133962 parameters, [0-9.]+ GiB of weights\\): std::bad_alloc")
if(NOT rc STREQUAL "1" OR NOT err MATCHES "${expected}")
  message(FATAL_ERROR "example.fashion_mnist.out_of_memory: exit status '${rc}' (expected 1), and stderr should "
                      "match '${expected}'\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endif()
message(STATUS "example.fashion_mnist.out_of_memory: ok")
