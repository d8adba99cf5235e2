// Must NOT compile: each function below misuses frugal::controller::add_callback in a way a
// runtime-only callback system (ensmallen's) would silently ignore. controller_test.cmake
// builds it and checks that every misuse got its own diagnostic.
#include <frugal/controller.hpp>

namespace {

// A hook named like a method: no operator() matches any event.
struct named_hook {
  void on_approaching(const frugal::approaching_event&) {}
};

// An observation event taken by non-const reference: it could never be called.
struct mutable_observer {
  void operator()(frugal::approaching_event&) {}
};

// A hook returning bool, as if "true" meant "stop".
struct returns_bool {
  bool operator()(const frugal::exhausted_event&) { return true; }
};

}  // namespace

void register_all(frugal::controller& ctl) {
  ctl.add_callback("named", named_hook{});
  ctl.add_callback("mutable", mutable_observer{});
  ctl.add_callback("bool", returns_bool{});
  // A misspelled event type.
  ctl.add_callback("typo", [](const frugal::aproaching_event&) {});
}

int main() { return 0; }
