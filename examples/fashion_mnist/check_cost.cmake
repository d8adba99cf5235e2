# ctest example.fashion_mnist.cost: money as a budget. A cost limit priced per FLOP (counted, not
# timed: the same on any machine and under any sanitizer) stops the run inside it, for the cost,
# and report.json's cost is its FLOPs at the price exactly; stdout says what the run cost. A cost
# limit without --price, or in another currency, is a command-line error naming both; an energy
# limit runs where a RAPL counter can be read and is refused with the reason where none can.
# cmake -DEXE=<fashion_mnist> -DDATA=<dir> -DWORK=<scratch dir> [-DTHREADS=2] -P check_cost.cmake
cmake_minimum_required(VERSION 3.20)

include("${CMAKE_CURRENT_LIST_DIR}/check_common.cmake")
include("${CMAKE_CURRENT_LIST_DIR}/../../cmake/frugal_fixed_point.cmake")
frugal_check_prologue(check_cost.cmake)
if(PROLOGUE_SKIPPED)
  return()
endif()

function(fail what)
  message(FATAL_ERROR "example.fashion_mnist.cost: ${what}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endfunction()

# 1e-9 USD a FLOP: 30 USD buy 3e10 FLOPs, about 175 steps of 128 samples, the epoch's end the
# controller brings forward for them, and the final test.
frugal_run_example(--budget "cost=30USD" --price "flop=1e-9USD" --epochs 100 --trace-events 0)
if(NOT out MATCHES "stopped: stop \\([a-z_]+\\): [^\n]*cost: ")
  fail("the run did not stop for its cost")
endif()
# The controller's words give money with its currency, as the report does.
if(NOT out MATCHES "stopped: [^\n]*cost: [0-9.]+ USD used of 30[.0]* USD")
  fail("the stop does not name the cost with its currency")
endif()
if(NOT out MATCHES "\ncost: [0-9.]+ USD for [^\n]* FLOPs \\(price flop=1e-09USD\\)\n")
  fail("stdout does not say what the run cost at its price")
endif()
file(READ "${WORK}/report.json" report)
string(JSON cost GET "${report}" budget used cost)
string(JSON flops GET "${report}" budget used flops)
string(JSON limit GET "${report}" budget limits cost)
string(JSON currency GET "${report}" budget limits currency)
string(JSON price GET "${report}" budget price flop)
if(NOT currency STREQUAL "USD")
  fail("the cost limit's currency is '${currency}', not USD")
endif()
# In nano-dollars (9 decimals): the cost is the FLOPs at 1e-9 a FLOP, to the last digit, and at
# or under 30 USD.
frugal_fixed_point(cost_nano "${cost}" 9)
frugal_fixed_point(limit_nano "${limit}" 9)
if(cost_nano STREQUAL "" OR limit_nano STREQUAL "")
  fail("cost '${cost}' or its limit '${limit}' is not a plain decimal")
endif()
math(EXPR diff "${cost_nano} - ${flops}")
if(diff GREATER 1 OR diff LESS -1)
  fail("report.json's cost ${cost} USD is not its ${flops} FLOPs at ${price} USD a FLOP")
endif()
if(cost_nano GREATER limit_nano)
  fail("the run spent ${cost} USD, past its limit of ${limit} USD")
endif()
# Within two steps and the evaluations' share of the limit: a cost limit is used, not just kept.
if(cost_nano LESS 28000000000)
  fail("the run stopped at ${cost} USD, far short of its limit of ${limit} USD")
endif()

# Refusals: exit status 2 and words naming the fault.
function(refused what needle)
  file(REMOVE_RECURSE "${WORK}")
  execute_process(COMMAND "${EXE}" ${ARGN} --threads ${THREADS} --data "${DATA}" --out "${WORK}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc STREQUAL "2")
    fail("${what}: exit status ${rc}, expected 2")
  endif()
  string(FIND "${err}" "${needle}" at)
  if(at EQUAL -1)
    fail("${what}: stderr does not say '${needle}'")
  endif()
endfunction()
refused("a cost limit without a price" "--price" --budget "cost=1USD")
refused("a cost limit in another currency" "the cost limit is in EUR but --price is in USD"
        --budget "cost=1EUR" --price "instance_hour=1USD")
refused("a bad price" "ISO 4217" --budget "wall=1s" --price "instance_hour=1usd")

# Energy: read where a RAPL counter is readable, refused with its reason where none is.
file(REMOVE_RECURSE "${WORK}")
execute_process(COMMAND "${EXE}" --budget "energy=1MJ,flops=2e9" --trace-events 0 --threads ${THREADS}
                        --data "${DATA}" --out "${WORK}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc STREQUAL "0")
  if(NOT out MATCHES "\nenergy: [0-9.]+ [kMG]?J over ")
    fail("an energy-limited run did not say how much energy it used")
  endif()
elseif(rc STREQUAL "2")
  if(NOT err MATCHES "energy cannot be measured here: [^\n]*(powercap|intel-rapl|not readable)")
    fail("an energy limit was refused without the counter's reason")
  endif()
else()
  fail("an energy limit: exit status ${rc}, expected 0 (a RAPL counter) or 2 (none)")
endif()
message(STATUS "example.fashion_mnist.cost: ok")
