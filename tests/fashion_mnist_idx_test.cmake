# The Fashion-MNIST example's IDX reader (examples/fashion_mnist/idx.hpp) reads gzip with zlib.
find_package(ZLIB REQUIRED)
target_include_directories(${FRUGAL_TEST_TARGET} PRIVATE "${PROJECT_SOURCE_DIR}/examples/fashion_mnist")
target_link_libraries(${FRUGAL_TEST_TARGET} PRIVATE ZLIB::ZLIB)
