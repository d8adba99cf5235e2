# The memory-limit tests measure a real heap: they run with frugal's malloc hooks linked in.
target_link_libraries(${FRUGAL_TEST_TARGET} PRIVATE frugal::allocation_hooks ${CMAKE_DL_LIBS})
