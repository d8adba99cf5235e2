// libFuzzer target: frugal::limits::parse and the quantity parsers behind it. Any input either
// parses or throws std::invalid_argument (anything else escaping is a finding); what parses
// round-trips exactly: parse(l.to_string()) == l, and to_string() of that is the same text.
#include <frugal/units.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void finding(const char* what, std::string_view input, const std::string& detail) {
  std::fprintf(stderr, "fuzz_limits: %s\n  input: '%.*s'\n  %s\n", what, static_cast<int>(input.size()),
               input.data(), detail.c_str());
  std::abort();
}

// A quantity parser: a finite value >= 0, or std::invalid_argument.
template <class Parse>
void check_quantity(std::string_view text, const char* name, Parse parse) {
  try {
    const double v = parse(text);
    if (!std::isfinite(v) || v < 0) finding("a quantity parser returned a value not finite and >= 0", text, name);
  } catch (const std::invalid_argument&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  check_quantity(text, "parse_duration", [](std::string_view t) { return frugal::parse_duration(t); });
  check_quantity(text, "parse_bytes", [](std::string_view t) { return frugal::parse_bytes(t); });
  check_quantity(text, "parse_count", [](std::string_view t) { return frugal::parse_count(t); });
  check_quantity(text, "parse_energy", [](std::string_view t) { return frugal::parse_energy(t); });
  check_quantity(text, "parse_money", [](std::string_view t) { return frugal::parse_money(t).amount; });

  frugal::limits parsed;
  try {
    parsed = frugal::limits::parse(text);
  } catch (const std::invalid_argument&) {
    return 0;  // rejected, with the one exception type the parser documents
  }
  const std::string canonical = parsed.to_string();
  frugal::limits again;
  try {
    again = frugal::limits::parse(canonical);
  } catch (const std::invalid_argument& e) {
    finding("to_string() of a parsed limits does not parse", text, "to_string(): '" + canonical + "': " + e.what());
  }
  if (!(again == parsed)) finding("parse(l.to_string()) != l", text, "to_string(): '" + canonical + "'");
  if (again.to_string() != canonical)
    finding("to_string() is not stable", text, "'" + canonical + "' then '" + again.to_string() + "'");
  return 0;
}
