# ctest example.fashion_mnist: runs the example on a FLOP budget (deterministic, a few seconds
# even under sanitizers) and checks what it promises:
#   - frugal::controller stops it for the FLOP limit, never past it, and not early (the next
#     step and the final evaluation would not have fitted);
#   - report.json parses, its limits are the ones given, and its totals equal the sums of its
#     stages (FLOPs exactly: train = epoch = step + eval, step = forward + backward + update);
#   - epochs.csv has its header and one row per evaluation;
#   - trace.json (once the library records traces) is Chrome trace event JSON;
#   - the test accuracy is above a floor.
# cmake -DEXE=<fashion_mnist> -DDATA=<dir> -DWORK=<scratch dir> [-DTHREADS=2] [-DEXPECT_TRACE=ON]
#       -P check_run.cmake
cmake_minimum_required(VERSION 3.20)

foreach(v EXE DATA WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_run.cmake: -D${v}=... is required")
  endif()
endforeach()

if(NOT EXISTS "${DATA}/train-images-idx3-ubyte.gz")
  message("SKIPPED: Fashion-MNIST not installed in ${DATA} (apt-get install dataset-fashion-mnist)")
  return()
endif()

if(NOT DEFINED THREADS)
  set(THREADS 2)
endif()

# A pass and a bit over the data with a 784-64-10 network, two evaluations: under a second in
# Release, ~10 s with ASan or TSan.
set(flop_limit 16000000000)
# Measured 0.84 with these settings; the floor leaves room for another CPU's rounding.
set(accuracy_floor 0.80)

function(fail what)
  message(FATAL_ERROR "example.fashion_mnist: ${what}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endfunction()

file(REMOVE_RECURSE "${WORK}")
execute_process(
  COMMAND "${EXE}" --budget "flops=${flop_limit}" --epochs 50 --hidden 64 --batch 128 --threads ${THREADS} --seed 1
          --data "${DATA}" --out "${WORK}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL "0")
  fail("exit status ${rc}, expected 0")
endif()
message("${out}")

# --- the stop and the accuracy (stdout) -----------------------------------------------------
# frugal::controller's words for the same rule: after an evaluation, one more step and its
# evaluation would cross the FLOP limit.
if(NOT out MATCHES "stopped: stop \\(forecast\\): flops: [^\n]* used of [^\n]*, one step and an epoch end forecast")
  fail("did not stop for the FLOP limit")
endif()
if(NOT out MATCHES "\ntest accuracy: ([0-9]\\.[0-9][0-9][0-9][0-9])\n?$")
  fail("no last line 'test accuracy: 0.XXXX' on stdout")
endif()
set(accuracy "${CMAKE_MATCH_1}")
if(NOT accuracy GREATER accuracy_floor)
  fail("test accuracy ${accuracy} is not above the floor ${accuracy_floor}")
endif()

# --- report.json --------------------------------------------------------------------------------
if(NOT EXISTS "${WORK}/report.json")
  fail("no report.json in ${WORK}")
endif()
file(READ "${WORK}/report.json" report)

function(json out_var)
  string(JSON value ERROR_VARIABLE error GET "${report}" ${ARGN})
  if(error)
    fail("report.json: ${ARGN}: ${error}")
  endif()
  set(${out_var} "${value}" PARENT_SCOPE)
endfunction()

# The stage named `name` of the budget at `path` (a list of JSON keys/indices): its `field`.
function(stage_field out_var name field)
  string(JSON count LENGTH "${report}" ${ARGN} stages)
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    json(stage_name ${ARGN} stages ${i} name)
    if(stage_name STREQUAL name)
      json(value ${ARGN} stages ${i} ${field})
      set(${out_var} "${value}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
  fail("report.json: no stage '${name}' in ${ARGN}")
endfunction()

json(version frugal_version)
json(name budget name)
json(limit budget limits flops)
json(used budget used flops)
string(JSON wall_limit TYPE "${report}" budget limits wall)
if(NOT name STREQUAL "train")
  fail("report.json: root budget is '${name}', expected 'train'")
endif()
if(NOT limit EQUAL flop_limit)
  fail("report.json: limits.flops is ${limit}, expected ${flop_limit}")
endif()
if(NOT wall_limit STREQUAL "NULL")
  fail("report.json: limits.wall is a ${wall_limit}, expected null (unlimited)")
endif()
if(used GREATER limit)
  fail("used ${used} FLOPs, more than the limit ${limit}")
endif()

json(eval_name budget children 0 path)
if(NOT eval_name STREQUAL "train/eval")
  fail("report.json: first child is '${eval_name}', expected 'train/eval'")
endif()
json(eval_used budget children 0 used flops)
stage_field(epoch_flops epoch flops budget)
stage_field(step_flops step flops budget)
stage_field(step_calls step calls budget)
stage_field(forward_flops forward flops budget)
stage_field(backward_flops backward flops budget)
stage_field(update_flops update flops budget)
stage_field(validation_flops validation flops budget children 0)
stage_field(validation_calls validation calls budget children 0)
stage_field(test_flops test flops budget children 0)
foreach(stage forward backward update)
  stage_field(calls ${stage} calls budget)
  if(NOT calls EQUAL step_calls)
    fail("report.json: stage ${stage} has ${calls} calls, step has ${step_calls}")
  endif()
endforeach()

math(EXPR step_parts "${forward_flops} + ${backward_flops} + ${update_flops}")
math(EXPR eval_parts "${validation_flops} + ${test_flops}")
math(EXPR epoch_parts "${step_flops} + ${eval_used}")
if(NOT step_flops EQUAL step_parts)
  fail("report.json: step FLOPs ${step_flops} != forward + backward + update = ${step_parts}")
endif()
if(NOT eval_used EQUAL eval_parts)
  fail("report.json: train/eval used ${eval_used} FLOPs != validation + test = ${eval_parts}")
endif()
if(NOT epoch_flops EQUAL epoch_parts)
  fail("report.json: epoch FLOPs ${epoch_flops} != step + eval = ${epoch_parts}")
endif()
if(NOT used EQUAL epoch_flops)
  fail("report.json: train used ${used} FLOPs != its outermost stage (epoch) ${epoch_flops}")
endif()

# Not early either: one more step and one more evaluation would have crossed the limit.
math(EXPR next_step "${step_flops} / ${step_calls}")
math(EXPR next_eval "${eval_used} / ${validation_calls}")
math(EXPR would_use "${used} + ${next_step} + ${next_eval}")
if(NOT would_use GREATER limit)
  fail("stopped early: ${used} used + a step (${next_step}) + an evaluation (${next_eval}) fits in ${limit}")
endif()

# --- epochs.csv --------------------------------------------------------------------------------
file(STRINGS "${WORK}/epochs.csv" csv)
list(LENGTH csv csv_lines)
list(GET csv 0 header)
if(NOT header STREQUAL
   "epoch,wall_s,fraction_used,flops,batch_size,lr,train_loss,val_loss,val_accuracy,test_accuracy")
  fail("epochs.csv: unexpected header '${header}'")
endif()
math(EXPR rows "${csv_lines} - 1")
if(NOT rows EQUAL validation_calls)
  fail("epochs.csv: ${rows} rows, expected one per evaluation (${validation_calls})")
endif()
math(EXPR last_row "${csv_lines} - 1")
list(GET csv ${last_row} last)
string(REPLACE "," ";" last "${last}")
list(GET last 9 last_accuracy)
if(NOT last_accuracy MATCHES "^${accuracy}")
  fail("epochs.csv: last test_accuracy ${last_accuracy} is not the reported ${accuracy}")
endif()

# --- stages.csv: the library's CSV writer, one row per stage of the tree ----------------------
file(STRINGS "${WORK}/stages.csv" stages_csv)
list(GET stages_csv 0 stages_header)
if(NOT stages_header MATCHES "^budget,stage,calls,wall_s,share,flops,allocations,alloc_bytes,peak_bytes")
  fail("stages.csv: unexpected header '${stages_header}'")
endif()
string(REPLACE ";" "\n" stages_text "${stages_csv}")
if(NOT "\n${stages_text}" MATCHES "\ntrain,step,${step_calls},[^,]*,[^,]*,${step_flops},")
  fail("stages.csv: no row 'train,step,${step_calls},...,${step_flops},...'")
endif()
if(NOT "\n${stages_text}" MATCHES "\ntrain/eval,test,${validation_calls},[^,]*,[^,]*,${test_flops},")
  fail("stages.csv: no row 'train/eval,test,${validation_calls},...,${test_flops},...'")
endif()

# --- trace.json ---------------------------------------------------------------------------------
if(EXPECT_TRACE)
  if(NOT EXISTS "${WORK}/trace.json")
    fail("no trace.json in ${WORK}")
  endif()
  file(READ "${WORK}/trace.json" trace)
  # The first GET parses the whole document: any JSON error anywhere fails here. The events
  # may be the document itself (a JSON array) or its "traceEvents" member (Chrome's object form).
  string(JSON kind ERROR_VARIABLE error TYPE "${trace}")
  if(error)
    fail("trace.json is not JSON: ${error}")
  endif()
  if(kind STREQUAL "OBJECT")
    set(events traceEvents)
  elseif(kind STREQUAL "ARRAY")
    set(events "")
  else()
    fail("trace.json: top level is ${kind}, expected an array or an object with traceEvents")
  endif()
  string(JSON n ERROR_VARIABLE error LENGTH "${trace}" ${events})
  if(error OR n EQUAL 0)
    fail("trace.json: no events (${error})")
  endif()
  # Each GET parses the document again, so only a sample of the events is checked field by field.
  math(EXPR last "${n} - 1")
  set(sample 0 1 2 3 4 5 6 7 8 9 ${last})
  set(complete 0)
  foreach(i IN LISTS sample)
    if(i GREATER last)
      continue()
    endif()
    foreach(field name ph pid tid)
      string(JSON v ERROR_VARIABLE error GET "${trace}" ${events} ${i} ${field})
      if(error)
        fail("trace.json: event ${i} has no '${field}': ${error}")
      endif()
    endforeach()
    string(JSON ph GET "${trace}" ${events} ${i} ph)
    if(ph STREQUAL "X")
      foreach(field ts dur)
        string(JSON v ERROR_VARIABLE error GET "${trace}" ${events} ${i} ${field})
        if(error OR NOT v MATCHES "^[0-9.eE+-]+$")
          fail("trace.json: complete event ${i} has no numeric '${field}' (${v} ${error})")
        endif()
      endforeach()
      math(EXPR complete "${complete} + 1")
    endif()
  endforeach()
  if(complete EQUAL 0)
    fail("trace.json: no complete ('X') event among the events checked")
  endif()
endif()

message(STATUS "example.fashion_mnist: ok (frugal ${version}, ${used} of ${limit} FLOPs, test accuracy ${accuracy})")
