# cmake -D BUILD_DIR=... -D TARGET=... -D CONFIG=... -D EXPECT=<regex<frugal-sep>regex...> -P this-file
# Builds TARGET, which must fail, and checks that each expected diagnostic appears.
execute_process(
  COMMAND "${CMAKE_COMMAND}" --build "${BUILD_DIR}" --target "${TARGET}" --config "${CONFIG}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${TARGET} compiled, but it is made of misuses that must not")
endif()
string(REPLACE "<frugal-sep>" ";" expected "${EXPECT}")
foreach(pattern IN LISTS expected)
  if(NOT out MATCHES "${pattern}")
    message(FATAL_ERROR "missing the diagnostic '${pattern}' in the build output:\n${out}")
  endif()
endforeach()
message(STATUS "${TARGET}: every misuse was rejected at compile time")
