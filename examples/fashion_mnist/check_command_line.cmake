# ctest example.fashion_mnist.command_line: --help explains every option; a bad value is a
# clear error naming the option and the value, with exit status 2 (the command line is CLI11's:
# its messages for a missing value, an unknown option, an unexpected argument and a missing
# companion option; the checks' own words for a bad value); missing or corrupt data is
# a clear message naming the Debian package or the file, exit status 1, never a crash.
# cmake -DEXE=<fashion_mnist> -DWORK=<scratch dir> -P check_command_line.cmake
cmake_minimum_required(VERSION 3.20)

foreach(v EXE WORK)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_command_line.cmake: -D${v}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

set(failures "")

# expect(<status> <regex the output must match> <args>...)
function(expect status regex)
  execute_process(COMMAND "${EXE}" ${ARGN} --out "${WORK}/out"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc STREQUAL status)
    set(failures "${failures}\n  [${ARGN}]: exit status '${rc}', expected ${status}\n${out}${err}" PARENT_SCOPE)
  elseif(NOT "${out}${err}" MATCHES "${regex}")
    set(failures "${failures}\n  [${ARGN}]: output does not match '${regex}':\n${out}${err}" PARENT_SCOPE)
  endif()
endfunction()

# --help: every option explained, exit status 0.
execute_process(COMMAND "${EXE}" --help RESULT_VARIABLE rc OUTPUT_VARIABLE help ERROR_VARIABLE err)
if(NOT rc STREQUAL "0")
  string(APPEND failures "\n  --help: exit status ${rc}")
endif()
foreach(option --budget --epochs --batch --lr --schedule --optimizer --momentum --hidden --patience
               --seed --threads --data --out --test-every-epoch --trace-events --checkpoint --resume --price --help
               --prune --prune-layer --prune-min-units --prune-max --quantize --quantize-layers --deploy-from --deploy model_bytes inference_flops
               budget-linear dataset-fashion-mnist "default 128" "Exit status")
  string(FIND "${help}" "${option}" at)
  if(at EQUAL -1)
    string(APPEND failures "\n  --help does not mention ${option}")
  endif()
endforeach()

# Bad values: exit status 2, the option and the value named.
expect(2 "--batch: invalid value '0'" --batch 0)
expect(2 "--batch: invalid value '12x'" --batch 12x)
expect(2 "--epochs: invalid value '-3'" --epochs=-3)
expect(2 "--epochs: missing value \\(the next argument, '--out', is an option\\)" --epochs)
expect(2 "--out: missing value \\(the next argument, '--resume', is an option\\)" --out --resume)
expect(2 "--lr: invalid value 'nan'" --lr nan)
expect(2 "--lr: invalid value '0'" --lr 0)
expect(2 "--momentum: invalid value '1'" --momentum 1)
expect(2 "--schedule: unknown schedule 'cosine'" --schedule cosine)
expect(2 "--hidden: invalid value '256,0': layer '0': must be in" --hidden 256,0)
expect(2 "--optimizer: invalid value 'rmsprop'" --optimizer rmsprop)
expect(2 "--threads: invalid value '0'" --threads 0)
expect(2 "--hidden: invalid value '256,,128'" --hidden 256,,128)
expect(2 "--trace-events: invalid value '1e3'" --trace-events 1e3)
expect(2 "--seed: invalid value '18446744073709551616': out of range" --seed 18446744073709551616)
expect(2 "--budget: invalid value 'wall=-1s'.*negative" --budget wall=-1s)
expect(2 "--budget: invalid value 'wall=5 parsecs'.*unknown unit 'parsecs'" "--budget" "wall=5 parsecs")
expect(2 "--budget: invalid value 'flops'.*no '='" --budget flops)
expect(2 "argument was not expected: --frobnicate" --frobnicate)
expect(2 "arguments were not expected: 1 --frobnicate" --frobnicate 1)
expect(2 "argument was not expected: extra" extra)
expect(2 "--resume requires --checkpoint DIR" --resume)
expect(2 "--prune requires --epochs N" --prune)
expect(2 "--prune-max requires --prune" --prune-max 0.3 --epochs 3)
expect(2 "--prune-max: invalid value '0'" --prune --epochs 3 --prune-max 0)
expect(2 "--prune-layer: invalid value '3': the network has 2 hidden layer" --prune --epochs 3 --prune-layer 3)
expect(2 "--prune-min-units: invalid value '0'" --prune --epochs 3 --prune-min-units 0)
expect(2 "--quantize requires --epochs N" --quantize)
expect(2 "--deploy-from requires --deploy LIMITS" --deploy-from "${WORK}")
expect(2 "--deploy-from excludes --checkpoint" --deploy-from "${WORK}" --deploy model_bytes=1MiB --checkpoint "${WORK}/ck")
expect(2 "--quantize-layers requires --quantize" --quantize-layers 1 --epochs 3)
expect(2 "--quantize-layers: invalid value '3': the network has 3 layers \\(--hidden\\), and the output layer trains" --quantize --epochs 3 --quantize-layers 3)
expect(2 "--quantize-layers: invalid value '0'" --quantize --epochs 3 --quantize-layers 0)
expect(2 "--checkpoint: invalid value ''" --checkpoint=)
expect(2 "--deploy: invalid value 'model_size=64KiB': unknown key 'model_size'" --deploy model_size=64KiB)
expect(2 "--deploy: invalid value 'model_bytes=-1'.*negative" --deploy model_bytes=-1)
expect(2 "--deploy: invalid value 'model_bytes=64 parsecs'.*unknown unit 'parsecs'" --deploy "model_bytes=64 parsecs")
expect(2 "--deploy: invalid value 'model_bytes=0': model_bytes must be in \\[1, 1e15\\]" --deploy model_bytes=0)
expect(2 "--deploy: invalid value 'inference_flops=1e5FLOPs'.*trailing text" --deploy inference_flops=1e5FLOPs)
expect(2 "--deploy: invalid value 'inference_flops=1.5': inference_flops must be a whole number" --deploy inference_flops=1.5)
expect(2 "--deploy: invalid value 'inference_flops': frugal: deploy: entry 'inference_flops' has no '=' \\(expected key=value\\) \\(use model_bytes=SIZE"
       --deploy inference_flops)
expect(2 "--deploy: invalid value 'model_bytes=1KiB,model_bytes=2KiB': frugal: deploy: entry 'model_bytes=2KiB' repeats key 'model_bytes'"
       --deploy model_bytes=1KiB,model_bytes=2KiB)
expect(2 "--deploy: invalid value 'model_bytes=1KiB,': frugal: deploy: entry 2 of 'model_bytes=1KiB,' is empty" --deploy model_bytes=1KiB,)
expect(2 "--deploy: invalid value 'model_bytes=': frugal: deploy: entry 'model_bytes=' has an empty value" --deploy model_bytes=)
expect(2 "--deploy: missing value \\(the next argument, '--out', is an option\\)" --deploy)
# "--budget=" and "--budget ''" mean no limit: the option after it is read as itself.
expect(2 "--batch: invalid value '0'" --budget= --batch 0)

# Missing data: the package to install is named.
expect(1 "Fashion-MNIST not found in ${WORK}/nowhere.*apt-get install dataset-fashion-mnist"
       --data "${WORK}/nowhere")

# Corrupt data: a file that is not IDX is named, with what is wrong with it.
file(MAKE_DIRECTORY "${WORK}/corrupt")
foreach(name train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz
             t10k-labels-idx1-ubyte.gz)
  file(WRITE "${WORK}/corrupt/${name}" "this is not an IDX file")
endforeach()
expect(1 "corrupt/train-images-idx3-ubyte.gz: not an IDX images file: magic number 0x74686973"
       --data "${WORK}/corrupt")

# Output that cannot be written: a clear error before any training.
file(WRITE "${WORK}/a_file" "")
execute_process(COMMAND "${EXE}" --data "${WORK}/corrupt" --out "${WORK}/a_file/sub"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL "1" OR NOT err MATCHES "--out: cannot create directory '${WORK}/a_file/sub'")
  string(APPEND failures "\n  --out under a file: exit status '${rc}', expected 1 and a message\n${out}${err}")
endif()

execute_process(COMMAND "${EXE}" --data "${WORK}/corrupt" --out "${WORK}/out" --checkpoint "${WORK}/a_file/ck"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL "1" OR NOT err MATCHES "--checkpoint: cannot create directory '${WORK}/a_file/ck'")
  string(APPEND failures "\n  --checkpoint under a file: exit status '${rc}', expected 1 and a message\n${out}${err}")
endif()

if(failures)
  message(FATAL_ERROR "example.fashion_mnist.command_line:${failures}")
endif()
message(STATUS "example.fashion_mnist.command_line: ok")
