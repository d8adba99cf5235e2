# The state document's half of the tests needs nlohmann_json (frugal::state_json); without it
# only the core (capture / restore) is tested.
if(TARGET frugal::state_json)
  target_link_libraries(${FRUGAL_TEST_TARGET} PRIVATE frugal::state_json)
else()
  target_compile_definitions(${FRUGAL_TEST_TARGET} PRIVATE FRUGAL_STATE_TEST_NO_JSON=1)
endif()
