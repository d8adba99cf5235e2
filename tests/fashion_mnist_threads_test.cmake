# The Fashion-MNIST example's thread choice and trainer (examples/fashion_mnist/thread_choice.hpp,
# trainer.hpp); trainer.hpp includes the IDX reader, which reads gzip with zlib.
find_package(ZLIB REQUIRED)
target_include_directories(${FRUGAL_TEST_TARGET} PRIVATE "${PROJECT_SOURCE_DIR}/examples/fashion_mnist")
target_link_libraries(${FRUGAL_TEST_TARGET} PRIVATE ZLIB::ZLIB)
