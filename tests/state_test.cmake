# The state document (frugal::state_json: nlohmann_json, which every test here needs).
target_link_libraries(${FRUGAL_TEST_TARGET} PRIVATE frugal::state_json)
