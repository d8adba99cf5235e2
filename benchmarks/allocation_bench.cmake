# Measures the hooks themselves: linked with frugal's malloc replacements.
target_link_libraries(${FRUGAL_BENCH_TARGET} PRIVATE frugal::allocation_hooks)
