# Runs mpi_failure under mpirun with one rank failing (MODE) and asserts that the job ends within
# 60 s -- no rank waits for ever -- with a failing exit status and words that say why.
# -DMPIRUN=<mpirun and its flags, a list> -DEXE=<mpi_failure> -DMODE=<throw|kill|stuck|deadline>
string(TIMESTAMP start "%s")
execute_process(
  COMMAND ${MPIRUN} "${EXE}" "${MODE}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err
  TIMEOUT 60)
string(TIMESTAMP end "%s")
math(EXPR seconds "${end} - ${start}")
message(STATUS "mode ${MODE}: exit '${rc}' after ${seconds} s\n--- stdout\n${out}\n--- stderr\n${err}")

if(rc MATCHES "timeout|Process terminated due to timeout")
  message(FATAL_ERROR "mode ${MODE}: the job was still running after 60 s: a rank waits for ever")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "mode ${MODE}: the job exited 0 although a rank failed")
endif()
if(out MATCHES "ran to its end")
  message(FATAL_ERROR "mode ${MODE}: a rank ran to the end as if nothing had failed")
endif()

if(MODE STREQUAL "throw")
  set(expect "frugal::mpi: rank 2 of 4: an exception escaped: rank two failed on purpose: ending the job")
elseif(MODE STREQUAL "kill")
  # mpirun's own words when a rank dies; they vary between versions, the signal does not.
  set(expect "signal 9")
elseif(MODE STREQUAL "stuck")
  set(expect "for ranks that did not arrive \\(collective_timeout 2 s\\): ending the job")
elseif(MODE STREQUAL "deadline")
  set(expect "the hard deadline fired and the other ranks did not arrive within 1 s \\(deadline_grace\\)")
else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()
if(NOT "${out}${err}" MATCHES "${expect}")
  message(FATAL_ERROR "mode ${MODE}: the output does not say '${expect}'")
endif()
if(MODE STREQUAL "deadline" AND NOT err MATCHES "on_abort on rank [012]: ")
  message(FATAL_ERROR "mode deadline: on_abort did not run before the job ended")
endif()
