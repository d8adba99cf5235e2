# ctest example.fashion_mnist.deploy: the deployment budget (--deploy).
#   1. a short training run (flops=3e10) deployed under limits that need int8 weights AND
#      pruning (the int8 model at full width is ~238 kB and ~477k FLOPs per image): the deployed
#      model is narrower and int8 (its bytes are below what its own shape takes in float), its
#      file's bytes and its FLOPs per image (counted by frugal while it classified the test set)
#      are at or under the limits, and its test accuracy is within `max_drop` (2 points) of the
#      float model's;
#   2. fashion_mnist_classify loads model.deployed and reproduces the accuracy and the FLOPs per
#      image exactly (the same code, the same arithmetic);
#   3. a damaged file (one byte altered; cut short) and a missing one are refused with exit status
#      1, the message naming the file and what is wrong;
#   4. a limit that not even one hidden unit meets deploys nothing, says so, and exits 0;
#   5. --deploy-from the run's checkpoint deploys the same model without training: the same
#      float and deployed shapes, bytes, FLOPs and accuracies.
# No timing is checked (it runs under sanitizers too).
#   cmake -DEXE=<fashion_mnist> -DCLASSIFY=<fashion_mnist_classify> -DDATA=<dir> -DWORK=<dir>
#         [-DTHREADS=N] -P check_deploy.cmake
include("${CMAKE_CURRENT_LIST_DIR}/check_common.cmake")

function(fail what)
  message(FATAL_ERROR "example.fashion_mnist.deploy: ${what}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endfunction()

frugal_check_prologue(check_deploy.cmake)
if(PROLOGUE_SKIPPED)
  return()
endif()
if(NOT DEFINED CLASSIFY)
  message(FATAL_ERROR "check_deploy.cmake: -DCLASSIFY=... is required")
endif()

set(bytes_limit 204800)   # 200KiB
set(flops_limit 400000)   # 4e5 per image
set(max_drop 200)         # in ten-thousandths of accuracy: 2 points

# Accuracy "0.8123" -> 8123 (ten-thousandths, exact with 10000 test images).
function(ten_thousandths var text)
  if(NOT text MATCHES "^0\\.([0-9][0-9][0-9][0-9])$")
    fail("accuracy '${text}' is not 0.XXXX")
  endif()
  math(EXPR v "1${CMAKE_MATCH_1} - 10000")
  set(${var} "${v}" PARENT_SCOPE)
endfunction()

# ---- 1. deploy under limits that need int8 and pruning ------------------------------------------
set(checkpoint "${WORK}-checkpoint")
file(REMOVE_RECURSE "${checkpoint}")
frugal_run_example(--budget flops=3e10 --trace-events 0 --deploy "model_bytes=200KiB,inference_flops=4e5"
                   --checkpoint "${checkpoint}")
set(number "[0-9]+(\\.[0-9]+)?")
if(NOT out MATCHES "\n  float:    784-256-128-10, ([0-9]+) B \\(float32\\), (${number}) FLOPs/sample, [0-9.]+ us/sample, accuracy (0\\.[0-9]+)\n")
  fail("no 'float:' line for the 784-256-128-10 model")
endif()
set(float_bytes "${CMAKE_MATCH_1}")
set(float_flops "${CMAKE_MATCH_2}")
set(float_acc_text "${CMAKE_MATCH_4}")
ten_thousandths(float_acc "${float_acc_text}")
if(NOT out MATCHES "\n  deployed: 784-([0-9]+)-128-10, ([0-9]+) B \\(int8, as saved\\), (${number}) FLOPs/sample, [0-9.]+ us/sample, accuracy (0\\.[0-9]+) \\([-+][0-9.]+ points\\)\n")
  fail("no 'deployed:' line")
endif()
set(units "${CMAKE_MATCH_1}")
set(bytes "${CMAKE_MATCH_2}")
set(flops "${CMAKE_MATCH_3}")
set(acc_text "${CMAKE_MATCH_5}")
ten_thousandths(acc "${acc_text}")
if(NOT out MATCHES "\n  done:     int8 per-channel weights, float biases; hidden layer 1 256 -> ${units} units")
  fail("the 'done:' line does not say int8 and the pruning of hidden layer 1 to ${units} units")
endif()
if(NOT units LESS 256 OR units LESS 1)
  fail("hidden layer 1 is ${units} units wide: these limits need pruning")
endif()
# int8: fewer bytes than the same narrower shape takes in float32 (pruning alone is not enough).
math(EXPR narrow_float_bytes "4 * (784 * ${units} + ${units} + ${units} * 128 + 128 + 128 * 10 + 10)")
if(NOT bytes LESS narrow_float_bytes)
  fail("the deployed model is ${bytes} B, not below the ${narrow_float_bytes} B of its shape in float: not int8")
endif()
file(SIZE "${WORK}/model.deployed" file_bytes)
if(NOT file_bytes EQUAL bytes)
  fail("model.deployed is ${file_bytes} B, the job reported ${bytes}")
endif()
if(bytes GREATER bytes_limit)
  fail("the deployed model is ${bytes} B, over model_bytes=${bytes_limit}")
endif()
if(flops GREATER flops_limit)
  fail("the deployed model costs ${flops} FLOPs per image, over inference_flops=${flops_limit}")
endif()
if(NOT float_flops GREATER flops_limit OR NOT float_bytes GREATER bytes_limit)
  fail("the float model (${float_bytes} B, ${float_flops} FLOPs) already fits: the limits test nothing")
endif()
math(EXPR drop "${float_acc} - ${acc}")
if(drop GREATER max_drop)
  fail("the deployed accuracy ${acc_text} is ${drop} ten-thousandths below the float model's, more than ${max_drop}")
endif()
if(NOT out MATCHES "\n  fits:     model_bytes ${bytes} <= ${bytes_limit} B: yes; inference_flops ${flops} <= ${flops_limit}: yes\n")
  fail("the 'fits:' line does not say both limits hold")
endif()
if(NOT out MATCHES "\ntest accuracy: 0\\.[0-9]+\n?$")
  fail("'test accuracy' is not the last line with --deploy")
endif()
file(READ "${WORK}/deploy.json" json)
string(JSON json_bytes GET "${json}" deployed bytes)
string(JSON json_correct GET "${json}" deployed correct)
string(JSON predicted GET "${json}" plan predicted_bytes)
if(NOT json_bytes EQUAL bytes OR NOT json_correct EQUAL acc OR NOT predicted EQUAL bytes)
  fail("deploy.json: bytes ${json_bytes}, correct ${json_correct}, predicted bytes ${predicted}; the job printed ${bytes} B, accuracy ${acc_text}")
endif()

# ---- 2. fashion_mnist_classify reproduces it ----------------------------------------------------
execute_process(COMMAND "${CLASSIFY}" "${WORK}/model.deployed" --data "${DATA}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  fail("fashion_mnist_classify: exit status ${rc}, expected 0")
endif()
if(NOT out MATCHES "\nimages: 10000\n")
  fail("fashion_mnist_classify did not classify the 10000 test images")
endif()
if(NOT out MATCHES "\naccuracy: ${acc_text} \\(${acc} correct\\)")
  fail("fashion_mnist_classify's accuracy is not the main job's ${acc_text}")
endif()
string(REPLACE "." "\\." flops_re "${flops}")
if(NOT out MATCHES "\nFLOPs/sample: ${flops_re}\n")
  fail("fashion_mnist_classify's FLOPs per image are not the main job's ${flops}")
endif()

# ---- 3. damaged and missing files are refused ---------------------------------------------------
# One weight byte (offset 1000, inside layer 0's weights, which start at 40) set to 0x80: no
# weight is ever -128, so the byte changes. dd and printf: coreutils.
set(damaged "${WORK}/damaged.deployed")
file(COPY_FILE "${WORK}/model.deployed" "${damaged}")
execute_process(COMMAND bash -c "printf '\\x80' | dd of='${damaged}' bs=1 seek=1000 conv=notrunc status=none"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  fail("could not alter ${damaged}")
endif()
function(expect_refused file regex)
  execute_process(COMMAND "${CLASSIFY}" "${file}" --data "${DATA}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 1 OR NOT err MATCHES "${regex}")
    fail("fashion_mnist_classify ${file}: exit status ${rc}, expected 1 and a message matching '${regex}'")
  endif()
endfunction()
expect_refused("${damaged}" "model '${damaged}': checksum: the contents do not match")
set(short "${WORK}/short.deployed")
math(EXPR cut "${bytes} - 100")
execute_process(COMMAND dd "if=${WORK}/model.deployed" "of=${short}" bs=${cut} count=1 status=none RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  fail("could not cut ${short}")
endif()
expect_refused("${short}" "model '${short}': size: the file is ${cut} bytes, a 784-${units}-128-10 model is ${bytes}")
expect_refused("${WORK}/nowhere.deployed" "model '${WORK}/nowhere.deployed': file: ")

# ---- 4. a limit no model meets: a decision, not an error -----------------------------------------
# A budget too small to train (the formulas stop it before the first step): the deployment still
# runs, on the untrained model, and finds that even one hidden unit costs more than 1000 FLOPs.
frugal_run_example(--budget flops=2e9 --trace-events 0 --deploy inference_flops=1000)
if(NOT out MATCHES "\n  not deployed: inference_flops=1000 cannot be met: the smallest model, 784-1-128-10 int8 per-channel \\(hidden layer 1 at 1 unit\\), is [0-9]+ B and ([0-9]+) FLOPs/sample\n")
  fail("no 'not deployed' line naming inference_flops=1000 and the smallest model")
endif()
if(NOT CMAKE_MATCH_1 GREATER 1000)
  fail("the smallest model costs ${CMAKE_MATCH_1} FLOPs, within the limit it was said not to meet")
endif()
if(EXISTS "${WORK}/model.deployed")
  fail("a model was saved though the limit cannot be met")
endif()
file(READ "${WORK}/deploy.json" json)
string(JSON deployed TYPE "${json}" deployed)
if(NOT deployed STREQUAL "NULL")
  fail("deploy.json: 'deployed' is ${deployed}, expected null")
endif()

# ---- 5. --deploy-from: the saved model, deployed without training -------------------------------
frugal_run_example(--deploy-from "${checkpoint}" --deploy "model_bytes=200KiB,inference_flops=4e5")
string(REPLACE "." "\\." float_flops_re "${float_flops}")
if(NOT out MATCHES "\n  float:    784-256-128-10, ${float_bytes} B \\(float32\\), ${float_flops_re} FLOPs/sample, [0-9.]+ us/sample, accuracy ${float_acc_text}\n")
  fail("--deploy-from: the 'float:' line is not the trained run's (${float_bytes} B, ${float_flops} FLOPs, accuracy ${float_acc_text})")
endif()
if(NOT out MATCHES "\n  deployed: 784-${units}-128-10, ${bytes} B \\(int8, as saved\\), ${flops_re} FLOPs/sample, [0-9.]+ us/sample, accuracy ${acc_text} ")
  fail("--deploy-from: the 'deployed:' line is not the trained run's (784-${units}-128-10, ${bytes} B, ${flops} FLOPs, accuracy ${acc_text})")
endif()
if(out MATCHES "\ntest accuracy: " OR err MATCHES "epoch [0-9]")
  fail("--deploy-from trained or tested the model")
endif()
expect_run_refused("--deploy-from: frugal: cannot read state file '${WORK}/nowhere/state.json'"
                   "--deploy-from a directory without a checkpoint" --deploy-from "${WORK}/nowhere" --deploy model_bytes=1MiB)

message("example.fashion_mnist.deploy: ok (784-256-128-10 -> 784-${units}-128-10 int8: ${float_bytes} -> ${bytes} B, "
        "${float_flops} -> ${flops} FLOPs/image, accuracy ${float_acc} -> ${acc} ten-thousandths; classify and --deploy-from agree)")
