# The thread-lifecycle tests (fork, late key destructors, thread churn) run with frugal's malloc
# hooks linked in.
target_link_libraries(${FRUGAL_TEST_TARGET} PRIVATE frugal::allocation_hooks)
list(APPEND FRUGAL_TEST_PROPERTIES TIMEOUT 120)
