# Compile-time checks of controller callbacks: tests/compile_fail/callback_hooks.cpp must fail
# to compile, with one diagnostic per misuse (a hook matching no event, an observation event
# taken by non-const reference, a hook returning a value, a misspelled event type).
frugal_add_compile_fail_test(controller_callback_compile_fail
  SOURCE "${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/callback_hooks.cpp"
  EXPECT "the callback handles no frugal event"
         "take events by const reference"
         "callback hooks must return void"
         "did you mean [^\n]*approaching_event")
