# frugal_target_native(<target>...)
#
# FRUGAL_NATIVE=ON compiles frugal's OWN targets (examples, benchmarks, tests) for the CPU
# of the machine that builds them (-march=native): Eigen then uses AVX2 / AVX-512 and FMA
# instead of the SSE2 baseline of x86-64, which roughly halves the main job's step here.
# Off by default because such binaries may not run on another CPU (packaging, CI images);
# examples/run.sh turns it on, since it builds and runs on the same machine. The INTERFACE
# target `frugal` is never touched: consumers choose their own architecture flags.
include_guard(GLOBAL)

set(FRUGAL_NATIVE_FLAGS "")
if(FRUGAL_NATIVE)
  if(MSVC)
    message(FATAL_ERROR "FRUGAL_NATIVE: -march=native is a GCC/Clang flag; use /arch with MSVC")
  endif()
  include(CheckCXXCompilerFlag)
  check_cxx_compiler_flag(-march=native FRUGAL_COMPILER_HAS_MARCH_NATIVE)
  if(NOT FRUGAL_COMPILER_HAS_MARCH_NATIVE)
    message(FATAL_ERROR "FRUGAL_NATIVE: ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION} "
      "does not accept -march=native; configure with -DFRUGAL_NATIVE=OFF")
  endif()
  set(FRUGAL_NATIVE_FLAGS -march=native)
  # GCC before 12.3 warns about its own AVX-512 intrinsics (avx512fintrin.h: `__m512 __Y = __Y;`,
  # the deliberate "undefined" merge operand) wherever Eigen's AVX-512 kernels are inlined:
  # GCC bug 105593, a false positive that -Werror would turn into a failed build.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 12.3)
    list(APPEND FRUGAL_NATIVE_FLAGS -Wno-maybe-uninitialized -Wno-uninitialized)
  endif()
endif()

function(frugal_target_native)
  foreach(tgt IN LISTS ARGN)
    if(FRUGAL_NATIVE_FLAGS)
      target_compile_options(${tgt} PRIVATE ${FRUGAL_NATIVE_FLAGS})
    endif()
  endforeach()
endfunction()
