# frugal_target_sanitizers(<target>...)
#
# Applies the FRUGAL_SANITIZE cache variable ("" | "address,undefined" |
# "thread", any comma list of address/undefined/leak/thread) to the compile
# and link flags of frugal's OWN targets. The INTERFACE target is never
# touched. Validation happens once, when this file is included.
include_guard(GLOBAL)

set(FRUGAL_SANITIZE_FLAGS "")
if(FRUGAL_SANITIZE)
  if(MSVC)
    message(FATAL_ERROR "FRUGAL_SANITIZE is only supported with GCC/Clang")
  endif()
  string(REPLACE "," ";" _frugal_san_list "${FRUGAL_SANITIZE}")
  foreach(_s IN LISTS _frugal_san_list)
    if(NOT _s MATCHES "^(address|undefined|leak|thread)$")
      message(FATAL_ERROR "FRUGAL_SANITIZE: unknown sanitizer '${_s}' "
        "(expected a comma list of address, undefined, leak, thread)")
    endif()
  endforeach()
  if("thread" IN_LIST _frugal_san_list AND
     ("address" IN_LIST _frugal_san_list OR "leak" IN_LIST _frugal_san_list))
    message(FATAL_ERROR "FRUGAL_SANITIZE: 'thread' cannot be combined with 'address'/'leak'")
  endif()
  list(APPEND FRUGAL_SANITIZE_FLAGS "-fsanitize=${FRUGAL_SANITIZE}" -fno-omit-frame-pointer)
  if("undefined" IN_LIST _frugal_san_list)
    list(APPEND FRUGAL_SANITIZE_FLAGS -fno-sanitize-recover=all)
  endif()
  unset(_s)
  unset(_frugal_san_list)
endif()

function(frugal_target_sanitizers)
  if(NOT FRUGAL_SANITIZE_FLAGS)
    return()
  endif()
  foreach(tgt IN LISTS ARGN)
    target_compile_options(${tgt} PRIVATE ${FRUGAL_SANITIZE_FLAGS})
    target_link_options(${tgt} PRIVATE ${FRUGAL_SANITIZE_FLAGS})
  endforeach()
endfunction()
