# The Fashion-MNIST example's trainer (examples/fashion_mnist/*.hpp, whose IDX reader needs
# zlib), built as the example is: Eigen's GEMM buffers on the stack, the allocation hooks linked.
find_package(ZLIB REQUIRED)
target_include_directories(${FRUGAL_BENCH_TARGET} PRIVATE "${PROJECT_SOURCE_DIR}/examples/fashion_mnist")
target_link_libraries(${FRUGAL_BENCH_TARGET} PRIVATE ZLIB::ZLIB)
target_compile_definitions(${FRUGAL_BENCH_TARGET} PRIVATE EIGEN_STACK_ALLOCATION_LIMIT=1048576)
if(TARGET frugal::allocation_hooks)
  target_link_libraries(${FRUGAL_BENCH_TARGET} PRIVATE frugal::allocation_hooks)
endif()
