# ctest example.fashion_mnist.spent_budget: a budget that cannot hold one step runs none, or at
# most the one that measured it, and never an evaluation after it. wall=0s and samples=0 are
# spent before the first step: no step, no evaluation, 0 s used. cpu=1ms is spent by the first
# step (whose cost nothing could forecast): that step runs, the controller stops at once, and
# no evaluation follows. Before the controller trusted these, each ran a step and a full
# evaluation (0.21 s against wall=0s, 537 ms against cpu=1ms).
# cmake -DEXE=<fashion_mnist> -DDATA=<dir> -DWORK=<scratch dir> [-DTHREADS=2] -P check_spent.cmake
cmake_minimum_required(VERSION 3.20)

include("${CMAKE_CURRENT_LIST_DIR}/check_common.cmake")
frugal_check_prologue(check_spent.cmake)
if(PROLOGUE_SKIPPED)
  return()
endif()

function(fail what)
  message(FATAL_ERROR "example.fashion_mnist.spent_budget [${budget}]: ${what}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endfunction()

# check(<budget> <steps regex> <stop regex>)
function(check budget steps stop)
  frugal_run_example(--budget "${budget}" --trace-events 0)
  if(NOT out MATCHES "stopped: stop \\(budget_exhausted\\): ${stop}")
    fail("not stopped for the spent budget")
  endif()
  if(NOT out MATCHES "after 0.00 epochs \\(${steps} steps, [0-9]+ samples, 0 evaluations\\)")
    fail("ran more than the steps expected, or an evaluation")
  endif()
  if(NOT out MATCHES "test accuracy: not measured")
    fail("reported a test accuracy without an evaluation")
  endif()
  file(READ "${WORK}/report.json" report)
  string(JSON eval_wall GET "${report}" budget children 0 used wall)
  if(NOT eval_wall EQUAL 0)
    fail("the evaluation budget used ${eval_wall} s")
  endif()
  string(JSON first_at GET "${report}" controller decisions 0 at)
  set(first_at "${first_at}" PARENT_SCOPE)
endfunction()

check("wall=0s" 0 "wall: 0 s used of 0 s \\(limit reached\\)")
if(NOT first_at STREQUAL "start")
  fail("the stop was not decided before the first step (at '${first_at}')")
endif()
check("samples=0" 0 "samples: 0 used of 0 \\(limit reached\\)")
check("cpu=1ms" 1 "cpu: [^\n]* used of 1.00 ms \\(limit reached\\)")
if(NOT first_at STREQUAL "step")
  fail("the stop was not decided at the first step (at '${first_at}')")
endif()
message(STATUS "example.fashion_mnist.spent_budget: ok")
