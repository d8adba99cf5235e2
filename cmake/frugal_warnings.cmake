# frugal_target_warnings(<target>...)
#
# Warning flags for frugal's OWN targets (tests, examples, benchmarks).
# Never call this on the INTERFACE target `frugal`: consumers choose their own
# flags. Third-party headers (Eigen, oneTBB, GoogleTest, Google Benchmark) come
# from imported targets or /usr/include, so the compiler sees them as system
# headers and they do not trip -Werror.
include_guard(GLOBAL)

function(frugal_target_warnings)
  foreach(tgt IN LISTS ARGN)
    if(MSVC)
      target_compile_options(${tgt} PRIVATE /W4 /permissive-)
      if(FRUGAL_WARNINGS_AS_ERRORS)
        target_compile_options(${tgt} PRIVATE /WX)
      endif()
    else()
      target_compile_options(${tgt} PRIVATE -Wall -Wextra -Wpedantic)
      if(FRUGAL_WARNINGS_AS_ERRORS)
        target_compile_options(${tgt} PRIVATE -Werror)
      endif()
    endif()
  endforeach()
endfunction()

# frugal_setup_target(<target>...)
#
# Everything a frugal-owned executable needs: warnings + FRUGAL_SANITIZE + FRUGAL_NATIVE.
function(frugal_setup_target)
  frugal_target_warnings(${ARGN})
  frugal_target_sanitizers(${ARGN})
  frugal_target_native(${ARGN})
endfunction()
