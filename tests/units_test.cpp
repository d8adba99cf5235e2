// Tests for frugal/units.hpp: resource names, the strict quantity parsers and their error
// messages, the human formatters, and limits (setters, validation, parse/to_string round trip).
#include <frugal/units.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support/xorshift.hpp"

namespace {

using frugal::limits;
using frugal::quantity_kind;
using frugal::resource;
using namespace std::chrono_literals;

constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

// Runs `fn`, expecting std::invalid_argument whose message contains every one of `needles`.
// Failure output shows the whole message, which is what a user would see.
::testing::AssertionResult throws_with(const std::function<void()>& fn,
                                       const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    for (const auto& needle : needles) {
      if (what.find(needle) == std::string::npos) {
        return ::testing::AssertionFailure() << "message \"" << what << "\" lacks \"" << needle << "\"";
      }
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a different exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

// ---------------------------------------------------------------------------------------------
// resources

TEST(Resource, NamesRoundTripInEnumOrder) {
  const char* expected[] = {"wall",       "cpu",       "flops", "allocations", "alloc_bytes",
                            "peak_bytes", "rss_bytes", "cost",  "energy"};
  static_assert(std::size(expected) == frugal::resource_count);
  ASSERT_EQ(frugal::all_resources.size(), frugal::resource_count);
  for (std::size_t i = 0; i < frugal::resource_count; ++i) {
    resource r = frugal::all_resources[i];
    EXPECT_EQ(static_cast<std::size_t>(r), i);
    EXPECT_EQ(frugal::to_string(r), expected[i]);
    EXPECT_EQ(frugal::resource_from_name(expected[i]), r);
  }
  static_assert(frugal::to_string(resource::peak_bytes) == "peak_bytes");
  static_assert(frugal::to_string(resource::rss_bytes) == "rss_bytes");
}

TEST(Resource, UnknownNamesAreNotResources) {
  EXPECT_FALSE(frugal::resource_from_name(""));
  EXPECT_FALSE(frugal::resource_from_name("Wall"));
  EXPECT_FALSE(frugal::resource_from_name("wall "));
  EXPECT_FALSE(frugal::resource_from_name("samples"));
}

TEST(Resource, KindOf) {
  static_assert(frugal::kind_of(resource::wall) == quantity_kind::duration);
  EXPECT_EQ(frugal::kind_of(resource::cpu), quantity_kind::duration);
  EXPECT_EQ(frugal::kind_of(resource::flops), quantity_kind::count);
  EXPECT_EQ(frugal::kind_of(resource::allocations), quantity_kind::count);
  EXPECT_EQ(frugal::kind_of(resource::alloc_bytes), quantity_kind::bytes);
  EXPECT_EQ(frugal::kind_of(resource::peak_bytes), quantity_kind::bytes);
  EXPECT_EQ(frugal::kind_of(resource::rss_bytes), quantity_kind::bytes);
  EXPECT_EQ(frugal::kind_of(resource::cost), quantity_kind::money);
  EXPECT_EQ(frugal::kind_of(resource::energy), quantity_kind::energy);
  // Whole: counts and bytes; money and joules come in fractions.
  for (resource r : frugal::all_resources)
    EXPECT_EQ(frugal::is_whole_quantity(r), frugal::kind_of(r) == quantity_kind::count || frugal::kind_of(r) == quantity_kind::bytes)
        << frugal::to_string(r);
  EXPECT_FALSE(frugal::is_whole_quantity(resource::cost));
  EXPECT_FALSE(frugal::is_whole_quantity(resource::energy));
}

TEST(Resource, PeakAndResidentBytesAreTheLevelsTheRestAreConsumables) {
  static_assert(frugal::kind_of_resource(resource::peak_bytes) == frugal::resource_kind::level);
  static_assert(frugal::is_level(resource::peak_bytes) && !frugal::is_consumable(resource::peak_bytes));
  static_assert(frugal::kind_of_resource(resource::rss_bytes) == frugal::resource_kind::level);
  static_assert(frugal::is_level(resource::rss_bytes) && !frugal::is_consumable(resource::rss_bytes));
  static_assert(frugal::is_consumable(resource::wall) && !frugal::is_level(resource::wall));
  for (resource r : frugal::all_resources) {
    const bool level = r == resource::peak_bytes || r == resource::rss_bytes;
    EXPECT_EQ(frugal::kind_of_resource(r), level ? frugal::resource_kind::level : frugal::resource_kind::consumable)
        << frugal::to_string(r);
    EXPECT_EQ(frugal::is_level(r), level) << frugal::to_string(r);
    EXPECT_EQ(frugal::is_consumable(r), !level) << frugal::to_string(r);
  }
  static_assert(frugal::to_string(frugal::resource_kind::consumable) == "consumable");
  EXPECT_EQ(frugal::to_string(frugal::resource_kind::level), "level");
  // An out-of-range value (only reachable through a cast) neither crashes nor claims a name.
  EXPECT_EQ(frugal::to_string(static_cast<frugal::resource_kind>(7)), "unknown");
}

// ---------------------------------------------------------------------------------------------
// parsers: good values

struct good_case {
  const char* text;
  double expected;
};

TEST(ParseDuration, GoodValues) {
  const good_case cases[] = {
      {"30s", 30.0},
      {"30 s", 30.0},
      {"  30s  ", 30.0},
      {"1.5s", 1.5},
      {".5s", 0.5},
      {"0s", 0.0},
      {"250ms", 0.25},
      {"1s500ms", 1.5},
      {"5m", 300.0},
      {"2m30s", 150.0},
      {"1h", 3600.0},
      {"1h30m", 5400.0},
      {"1h 30m", 5400.0},
      {"1h30m15s", 5415.0},
      {"1.5h", 5400.0},
      {"1h5s", 3605.0},
      {"100us", 1e-4},
      {"100\xC2\xB5s", 1e-4},
      {"100\xCE\xBCs", 1e-4},
      {"100ns", 1e-7},
      {"1e3ms", 1.0},
      {"2E1s", 20.0},
      {"1h1m1s1ms1us1ns", 3661.0 + 1e-3 + 1e-6 + 1e-9},
      {"1s0.5ms", 1.0 + 0.5e-3},  // a fraction after a unit, with its leading digit
      {"1h 0.5m", 3630.0},
      {"1.5h30m", 7200.0},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(frugal::parse_duration(c.text), c.expected) << "input: '" << c.text << "'";
  }
}

TEST(ParseBytes, GoodValues) {
  const good_case cases[] = {
      {"0", 0.0},
      {"512", 512.0},
      {"512B", 512.0},
      {"512 B", 512.0},
      {" 1e3 ", 1000.0},
      {"5.", 5.0},
      {"1kB", 1e3},
      {"1KB", 1e3},
      {"3MB", 3e6},
      {"2.5GB", 2.5e9},
      {"1TB", 1e12},
      {"1KiB", 1024.0},
      {"1.5KiB", 1536.0},
      {"512MiB", 536870912.0},
      {"512 MiB", 536870912.0},
      {"2GiB", 2147483648.0},
      {"1TiB", 1099511627776.0},
      // Whole bytes once the unit is applied; decimal units shift the decimal point exactly.
      {"0.5KiB", 512.0},
      {"2.5e-1KiB", 256.0},
      {"1.1kB", 1100.0},  // not 1.1 * 1000 = 1100.0000000000002
      {"1.001kB", 1001.0},
      {"1e-3kB", 1.0},
      {"1.5e-3MB", 1500.0},
      {"0.000001TB", 1e6},
      {"2.5e12B", 2.5e12},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(frugal::parse_bytes(c.text), c.expected) << "input: '" << c.text << "'";
  }
}

TEST(ParseCount, GoodValues) {
  const good_case cases[] = {
      {"0", 0.0},
      {"950", 950.0},
      {"1000000", 1e6},
      {"1e6", 1e6},
      {"1E6", 1e6},
      {"1e+6", 1e6},
      {"2.5e12", 2.5e12},
      {"2.5", 2.5},
      {"5.", 5.0},
      {".25", 0.25},
      {"  42\t", 42.0},
      {"1e-3", 1e-3},
      {"1.7976931348623157e308", std::numeric_limits<double>::max()},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(frugal::parse_count(c.text), c.expected) << "input: '" << c.text << "'";
  }
}

TEST(ParseQuantity, DispatchesOnKindAndNamesTheResource) {
  EXPECT_EQ(frugal::parse_quantity(resource::wall, "1h30m"), 5400.0);
  EXPECT_EQ(frugal::parse_quantity(resource::cpu, "250ms"), 0.25);
  EXPECT_EQ(frugal::parse_quantity(resource::flops, "2.5e12"), 2.5e12);
  EXPECT_EQ(frugal::parse_quantity(resource::allocations, "1000"), 1000.0);
  EXPECT_EQ(frugal::parse_quantity(resource::alloc_bytes, "1GB"), 1e9);
  EXPECT_EQ(frugal::parse_quantity(resource::peak_bytes, "512MiB"), 536870912.0);
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_quantity(resource::wall, "30"); }, {"wall: ", "'30'"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_quantity(resource::peak_bytes, "12 parsecs"); },
                          {"frugal: peak_bytes: cannot parse bytes '12 parsecs'", "unknown unit 'parsecs'"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_quantity(resource::flops, "lots"); },
                          {"frugal: flops: cannot parse count 'lots'"}));
}

// FLOPs and allocations are counted in whole units, so their limits are whole numbers in any
// notation; parse_count() itself reads fractions, which user units may have.
TEST(ParseQuantity, BuiltinCountsMustBeWhole) {
  EXPECT_EQ(frugal::parse_quantity(resource::flops, "5."), 5.0);
  EXPECT_EQ(frugal::parse_quantity(resource::flops, "1.5e3"), 1500.0);
  EXPECT_EQ(frugal::parse_quantity(resource::allocations, "2.5e12"), 2.5e12);
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_quantity(resource::flops, "1.5"); },
                          {"frugal: flops: cannot parse count '1.5': not a whole number (1.5); flops are counted in "
                           "whole units"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_quantity(resource::allocations, "1e-3"); },
                          {"frugal: allocations: cannot parse count '1e-3': not a whole number (0.001)"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_quantity(resource::flops, " .25 "); },
                          {"frugal: flops: ", "' .25 '", "not a whole number (0.25)"}));
  EXPECT_EQ(frugal::parse_count("2.5", "samples"), 2.5);
}

// ---------------------------------------------------------------------------------------------
// parsers: bad values. Each message must name the field and quote the whole offending text;
// `detail` pins the specific reason where it matters.

struct bad_case {
  const char* text;
  const char* detail;
};

TEST(ParseDuration, ParsecsMessageIsExact) {
  try {
    (void)frugal::parse_duration("5 parsecs", "wall");
    FAIL() << "did not throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "frugal: wall: cannot parse duration '5 parsecs': unknown unit 'parsecs' (use h, m, s, ms, us, ns)");
  }
  EXPECT_THROW((void)frugal::parse_duration("5 parsecs"), std::invalid_argument);
}

TEST(ParseDuration, BadValues) {
  const bad_case cases[] = {
      {"", "empty value"},
      {"   ", "empty value"},
      {"30", "missing unit after '30'"},
      {"1h30", "missing unit after '30'"},
      {"5 parsecs", "unknown unit 'parsecs'"},
      {"5sec", "unknown unit 'sec'"},
      {"5S", "unknown unit 'S'"},
      {"-5s", "negative"},
      {"1h-30m", "expected a number at '-30m'"},
      {"+5s", "expected a number"},
      {"s", "expected a number"},
      {"inf s", "expected a number"},
      {"nans", "expected a number"},
      {"0x10s", "unknown unit 'x'"},
      {"1.2.3s", "missing unit after '1.2'"},
      {"30m1h", "out of order"},
      {"1s1s", "repeated"},
      {"1e309s", "out of range"},
      {"1e308h", "out of range"},
      {"5s,", "expected a number at ','"},
      // A number right after a unit must start with a digit: "1s.5ms" is a typo, not 1.0005 s.
      {"1s.5ms", "number '.5' right after a unit must start with a digit (write '0.5' if that is meant)"},
      {"1h .5m", "number '.5' right after a unit"},
      {"1m.5", "number '.5' right after a unit"},
      {"1s.", "expected a number at '.'"},
      {"1 h 2", "missing unit after '2'"},
      {"5e", "unknown unit 'e'"},
  };
  for (const auto& c : cases) {
    EXPECT_THROW((void)frugal::parse_duration(c.text, "cpu"), std::invalid_argument) << c.text;
    EXPECT_TRUE(throws_with([&] { (void)frugal::parse_duration(c.text, "cpu"); },
                            {"frugal: cpu: ", std::string("'") + c.text + "'", c.detail}))
        << "input: '" << c.text << "'";
  }
}

TEST(ParseBytes, BadValues) {
  const bad_case cases[] = {
      {"", "empty value"},
      {"  ", "empty value"},
      {"12 parsecs", "unknown unit 'parsecs'"},
      {"1kb", "unknown unit 'kb'"},
      {"1mb", "unknown unit 'mb'"},
      {"1Mi", "unknown unit 'Mi'"},
      {"1K", "unknown unit 'K'"},
      {"1 KiB extra", "unknown unit 'KiB extra'"},
      {"-1KiB", "negative"},
      {"+1", "expected a number"},
      {"MiB", "expected a number"},
      {"inf", "expected a number"},
      {"nan", "expected a number"},
      {"0x10", "unknown unit 'x10'"},
      {"1e400", "out of range"},
      {"1e308TiB", "out of range"},
      {"1,5MiB", "unknown unit ',5MiB'"},
      // Sizes are whole bytes: a fraction left after the unit is an error, not a rounding.
      {"0.5", "not a whole number of bytes (0.5 B)"},
      {"2.5", "not a whole number of bytes (2.5 B)"},
      {"0.5B", "not a whole number of bytes (0.5 B)"},
      {"0.1KiB", "not a whole number of bytes (102.4 B)"},
      {"1.5e-3kB", "not a whole number of bytes (1.5 B)"},
      {"1.0001kB", "not a whole number of bytes (1000.1 B)"},
      {"1e-400kB", "out of range"},
  };
  for (const auto& c : cases) {
    EXPECT_THROW((void)frugal::parse_bytes(c.text, "peak_bytes"), std::invalid_argument) << c.text;
    EXPECT_TRUE(throws_with([&] { (void)frugal::parse_bytes(c.text, "peak_bytes"); },
                            {"frugal: peak_bytes: ", std::string("'") + c.text + "'", c.detail}))
        << "input: '" << c.text << "'";
  }
}

TEST(ParseCount, BadValues) {
  const bad_case cases[] = {
      {"", "empty value"},
      {" \t", "empty value"},
      {"-1", "negative"},
      {"+1", "expected a number"},
      {"inf", "expected a number"},
      {"infinity", "expected a number"},
      {"nan", "expected a number"},
      {"NaN", "expected a number"},
      {"0x10", "trailing text 'x10'"},
      {"1'000'000", "trailing text ''000'000'"},
      {"1,000", "trailing text ',000'"},
      {"12abc", "trailing text 'abc'"},
      {"1e", "trailing text 'e'"},
      {"1e+", "trailing text 'e+'"},
      {"1 2", "trailing text '2'"},
      {"1k", "trailing text 'k'"},
      {".", "expected a number"},
      {"e5", "expected a number"},
      {"1e309", "out of range"},
      {"1.5.2", "trailing text '.2'"},
  };
  for (const auto& c : cases) {
    EXPECT_THROW((void)frugal::parse_count(c.text, "samples"), std::invalid_argument) << c.text;
    EXPECT_TRUE(throws_with([&] { (void)frugal::parse_count(c.text, "samples"); },
                            {"frugal: samples: ", std::string("'") + c.text + "'", c.detail}))
        << "input: '" << c.text << "'";
  }
}

TEST(Parsers, DefaultFieldNames) {
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_duration("x"); }, {"frugal: duration: "}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_bytes("x"); }, {"frugal: bytes: "}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_count("x"); }, {"frugal: count: "}));
}

// ---------------------------------------------------------------------------------------------
// formatters

TEST(FormatDuration, Values) {
  EXPECT_EQ(frugal::format_duration(0), "0 s");
  EXPECT_EQ(frugal::format_duration(850e-9), "850 ns");
  EXPECT_EQ(frugal::format_duration(0.5e-9), "0.5 ns");
  EXPECT_EQ(frugal::format_duration(12.3e-6), "12.3 us");
  EXPECT_EQ(frugal::format_duration(0.45), "450 ms");
  EXPECT_EQ(frugal::format_duration(0.9999), "1.00 s");  // rounds up into the next unit
  EXPECT_EQ(frugal::format_duration(1.5), "1.50 s");
  EXPECT_EQ(frugal::format_duration(9.996), "10.0 s");
  EXPECT_EQ(frugal::format_duration(59.9), "59.9 s");
  EXPECT_EQ(frugal::format_duration(59.97), "1m 00s");
  EXPECT_EQ(frugal::format_duration(125), "2m 05s");
  EXPECT_EQ(frugal::format_duration(3599.6), "1h 00m");
  EXPECT_EQ(frugal::format_duration(5400), "1h 30m");
  EXPECT_EQ(frugal::format_duration(3600 * 100 + 300), "100h 05m");
  EXPECT_EQ(frugal::format_duration(-1.5), "-1.50 s");
  EXPECT_EQ(frugal::format_duration(inf), "inf");
  EXPECT_EQ(frugal::format_duration(nan_value), "nan");
  EXPECT_EQ(frugal::format_duration(3600e7), "1.00e7 h");
}

TEST(FormatBytes, Values) {
  EXPECT_EQ(frugal::format_bytes(0), "0 B");
  EXPECT_EQ(frugal::format_bytes(512), "512 B");
  EXPECT_EQ(frugal::format_bytes(1023), "1023 B");
  EXPECT_EQ(frugal::format_bytes(1024), "1.00 KiB");
  EXPECT_EQ(frugal::format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(frugal::format_bytes(1000 * 1024.0), "1000 KiB");
  EXPECT_EQ(frugal::format_bytes(536870912), "512 MiB");
  EXPECT_EQ(frugal::format_bytes(2147483648.0), "2.00 GiB");
  EXPECT_EQ(frugal::format_bytes(1.5 * 1099511627776.0), "1.50 TiB");
  EXPECT_EQ(frugal::format_bytes(-2048), "-2.00 KiB");
  EXPECT_EQ(frugal::format_bytes(inf), "inf");
  EXPECT_EQ(frugal::format_bytes(nan_value), "nan");
}

TEST(FormatCount, Values) {
  EXPECT_EQ(frugal::format_count(0), "0");
  EXPECT_EQ(frugal::format_count(950), "950");
  EXPECT_EQ(frugal::format_count(999), "999");
  EXPECT_EQ(frugal::format_count(12.5), "12.5");
  EXPECT_EQ(frugal::format_count(0.25), "0.25");
  EXPECT_EQ(frugal::format_count(1000), "1.00k");
  EXPECT_EQ(frugal::format_count(12345), "12.3k");
  EXPECT_EQ(frugal::format_count(999999), "1.00M");
  EXPECT_EQ(frugal::format_count(4.56e6), "4.56M");
  EXPECT_EQ(frugal::format_count(1e9), "1.00e9");
  EXPECT_EQ(frugal::format_count(2.5e12), "2.50e12");
  EXPECT_EQ(frugal::format_count(1.234e100), "1.23e100");
  EXPECT_EQ(frugal::format_count(-3), "-3");
  EXPECT_EQ(frugal::format_count(inf), "inf");
  EXPECT_EQ(frugal::format_count(nan_value), "nan");
}

TEST(FormatQuantity, DispatchesOnKind) {
  EXPECT_EQ(frugal::format_quantity(resource::wall, 1.5), "1.50 s");
  EXPECT_EQ(frugal::format_quantity(resource::cpu, 5400), "1h 30m");
  EXPECT_EQ(frugal::format_quantity(resource::flops, 2.5e12), "2.50e12");
  EXPECT_EQ(frugal::format_quantity(resource::allocations, 950), "950");
  EXPECT_EQ(frugal::format_quantity(resource::alloc_bytes, 1536), "1.50 KiB");
  EXPECT_EQ(frugal::format_quantity(resource::peak_bytes, 536870912), "512 MiB");
}

// ---------------------------------------------------------------------------------------------
// limits: setters, getters, validation

// The splitter limits::parse and price::parse use, public for a caller's own key=value options.
TEST(SplitKeyValues, TrimsAndKeepsTheOrder) {
  const std::string text = " model_bytes = 64KiB ,inference_flops=1e5";
  const std::vector<frugal::key_value> kv = frugal::split_key_values(text, "deploy");
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_EQ(kv[0].entry, "model_bytes = 64KiB");
  EXPECT_EQ(kv[0].key, "model_bytes");
  EXPECT_EQ(kv[0].value, "64KiB");
  EXPECT_EQ(kv[1].key, "inference_flops");
  EXPECT_EQ(kv[1].value, "1e5");
}

TEST(SplitKeyValues, NamesTheBadEntry) {
  const auto error = [](std::string_view text) {
    try {
      (void)frugal::split_key_values(text, "deploy");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error("a=1,"), "frugal: deploy: entry 2 of 'a=1,' is empty");
  EXPECT_EQ(error("a"), "frugal: deploy: entry 'a' has no '=' (expected key=value)");
  EXPECT_EQ(error("=1"), "frugal: deploy: entry '=1' has an empty key");
  EXPECT_EQ(error("a= "), "frugal: deploy: entry 'a=' has an empty value");
  EXPECT_EQ(error("a=1,a=2"), "frugal: deploy: entry 'a=2' repeats key 'a'");
}

TEST(Limits, DefaultIsEmpty) {
  limits l;
  EXPECT_TRUE(l.empty());
  for (resource r : frugal::all_resources) {
    EXPECT_FALSE(l.has(r));
    EXPECT_FALSE(l.get(r));
  }
  EXPECT_TRUE(l.unit_limits().empty());
  EXPECT_EQ(l.to_string(), "");
}

TEST(Limits, FluentSettersAndGetters) {
  limits l;
  l.wall(90min).cpu(1500ms).flops(2.5e12).allocations(1e6).alloc_bytes(1e9).peak_bytes(512.0 * 1024 * 1024)
      .rss_bytes(2.0 * 1024 * 1024 * 1024)
      .cost(12.5, "USD")
      .energy(5e4)
      .units("samples", 1'000'000)
      .units("tokens", 5e9);
  EXPECT_FALSE(l.empty());
  EXPECT_EQ(l.get(resource::wall), 5400.0);
  EXPECT_EQ(l.get(resource::cpu), 1.5);
  EXPECT_EQ(l.get(resource::flops), 2.5e12);
  EXPECT_EQ(l.get(resource::allocations), 1e6);
  EXPECT_EQ(l.get(resource::alloc_bytes), 1e9);
  EXPECT_EQ(l.get(resource::peak_bytes), 536870912.0);
  EXPECT_EQ(l.get(resource::rss_bytes), 2147483648.0);
  EXPECT_EQ(l.get("rss_bytes"), 2147483648.0);
  EXPECT_EQ(l.get(resource::cost), 12.5);
  EXPECT_EQ(l.currency(), "USD");
  EXPECT_EQ(l.get("energy"), 5e4);
  for (resource r : frugal::all_resources) EXPECT_TRUE(l.has(r));
  EXPECT_EQ(l.get("samples"), 1e6);
  EXPECT_EQ(l.get("tokens"), 5e9);
  EXPECT_FALSE(l.get("epochs"));
  EXPECT_EQ(l.get("wall"), 5400.0);  // builtin names resolve through the by-name getter too
  ASSERT_EQ(l.unit_limits().size(), 2u);
  EXPECT_EQ(l.unit_limits()[0].first, "samples");
  EXPECT_EQ(l.unit_limits()[1].first, "tokens");
}

TEST(Limits, DurationSettersConvertAnyChronoType) {
  limits l;
  l.wall(std::chrono::duration<double>(0.25)).cpu(std::chrono::nanoseconds(1500));
  EXPECT_EQ(l.get(resource::wall), 0.25);
  EXPECT_DOUBLE_EQ(*l.get(resource::cpu), 1.5e-6);
  l.wall(std::chrono::hours(2));
  EXPECT_EQ(l.get(resource::wall), 7200.0);
}

TEST(Limits, SetByResourceAndOnlyThatOne) {
  limits l;
  l.set(resource::peak_bytes, 4096);
  EXPECT_TRUE(l.has(resource::peak_bytes));
  EXPECT_FALSE(l.has(resource::alloc_bytes));
  EXPECT_FALSE(l.has(resource::wall));
  EXPECT_EQ(l.get(resource::peak_bytes), 4096.0);
}

TEST(Limits, SettingTwiceOverwrites) {
  limits l;
  l.flops(1e9).flops(2e9).wall(1s).wall(2s).set(resource::flops, 3e9);
  EXPECT_EQ(l.get(resource::flops), 3e9);
  EXPECT_EQ(l.get(resource::wall), 2.0);
  l.units("samples", 10).units("tokens", 1).units("samples", 20);
  ASSERT_EQ(l.unit_limits().size(), 2u);
  EXPECT_EQ(l.unit_limits()[0].first, "samples");  // keeps its original position
  EXPECT_EQ(l.unit_limits()[0].second, 20.0);
  EXPECT_EQ(l.get("samples"), 20.0);
}

TEST(Limits, ZeroIsAllowed) {
  limits l;
  l.flops(0).wall(0s).units("samples", 0);
  EXPECT_EQ(l.get(resource::flops), 0.0);
  EXPECT_EQ(l.get(resource::wall), 0.0);
  EXPECT_EQ(l.get("samples"), 0.0);
  EXPECT_FALSE(l.empty());
}

TEST(Limits, NegativeZeroIsNormalised) {
  limits l;
  l.flops(-0.0).units("samples", -0.0);
  EXPECT_FALSE(std::signbit(*l.get(resource::flops)));
  EXPECT_EQ(l.to_string(), "flops=0,samples=0");
  EXPECT_EQ(limits::parse(l.to_string()), l);
}

TEST(Limits, SettersRejectNegativeNanAndInfinity) {
  EXPECT_TRUE(throws_with([] { limits().flops(-1); }, {"frugal: limits: flops must be finite and >= 0, got -1"}));
  EXPECT_TRUE(throws_with([] { limits().allocations(nan_value); }, {"allocations", "nan"}));
  EXPECT_TRUE(throws_with([] { limits().alloc_bytes(inf); }, {"alloc_bytes", "got inf"}));
  EXPECT_TRUE(throws_with([] { limits().peak_bytes(-inf); }, {"peak_bytes", "got -inf"}));
  EXPECT_TRUE(throws_with([] { limits().wall(-1s); }, {"wall", "got -1"}));
  EXPECT_TRUE(throws_with([] { limits().cpu(std::chrono::duration<double>(nan_value)); }, {"cpu", "nan"}));
  EXPECT_TRUE(throws_with([] { limits().wall(std::chrono::duration<double>(inf)); }, {"wall", "inf"}));
  EXPECT_TRUE(throws_with([] { limits().set(resource::flops, -2.5); }, {"flops", "got -2.5"}));
  EXPECT_TRUE(throws_with([] { limits().units("samples", -3); }, {"samples", "got -3"}));
  EXPECT_TRUE(throws_with([] { limits().units("samples", inf); }, {"samples", "inf"}));
  // Whole numbers for what is counted in whole units, as parse() demands (or the limit could
  // not round-trip through to_string()); durations and user units may be fractional.
  EXPECT_TRUE(throws_with([] { limits().flops(1.5); }, {"frugal: limits: flops must be a whole number, got 1.5"}));
  EXPECT_TRUE(throws_with([] { limits().allocations(0.1); }, {"allocations must be a whole number, got 0.1"}));
  EXPECT_TRUE(throws_with([] { limits().alloc_bytes(0.5); }, {"alloc_bytes must be a whole number, got 0.5"}));
  EXPECT_TRUE(throws_with([] { limits().peak_bytes(1023.5); }, {"peak_bytes must be a whole number, got 1023.5"}));
  EXPECT_TRUE(throws_with([] { limits().set(resource::flops, std::numeric_limits<double>::min()); },
                          {"flops must be a whole number"}));
  EXPECT_EQ(limits().units("epochs", 2.5).cpu(std::chrono::duration<double>(0.5)).get("epochs"), 2.5);
  EXPECT_THROW(limits().flops(-1), std::invalid_argument);
  EXPECT_THROW(limits().set(static_cast<resource>(42), 1), std::invalid_argument);
}

TEST(Limits, FailedSetLeavesOldValue) {
  limits l;
  l.flops(5);
  EXPECT_THROW(l.flops(-1), std::invalid_argument);
  EXPECT_EQ(l.get(resource::flops), 5.0);
}

TEST(Limits, UnitNamesAreValidated) {
  const std::pair<std::string, const char*> cases[] = {
      {"", "empty"},
      {"1samples", "start with"},
      {"sam ples", "letters, digits"},
      {"sam-ples", "letters, digits"},
      {"caf\xC3\xA9", "letters, digits"},
      {std::string(64, 'a'), "longer than 63"},
      {"wall", "reserved"},
      {"peak_bytes", "reserved"},
      {"RSS_bytes", "reserved for the builtin resource 'rss_bytes'"},
      {"Wall", "reserved for the builtin resource 'wall'"},
      {"FLOPS", "reserved"},
  };
  for (const auto& c : cases) {
    const std::string& name = c.first;
    EXPECT_THROW(limits().units(name, 1), std::invalid_argument) << name;
    EXPECT_TRUE(throws_with([&] { limits().units(name, 1); },
                            {"frugal: units: ", "'" + name + "'", c.second}))
        << "name: '" << name << "'";
  }
  limits ok;
  ok.units(std::string(63, 'a'), 1).units("_x9", 2).units("Samples_2", 3);
  EXPECT_EQ(ok.unit_limits().size(), 3u);
}

TEST(Limits, GetWithOutOfRangeResourceIsEmpty) {
  limits l;
  l.flops(1);
  EXPECT_FALSE(l.get(static_cast<resource>(200)));
  EXPECT_FALSE(l.has(static_cast<resource>(7)));
}

// ---------------------------------------------------------------------------------------------
// limits: parse, to_string, equality

TEST(LimitsParse, IssueExample) {
  limits l = limits::parse("wall=1h30m,flops=2.5e12,peak_bytes=512MiB");
  EXPECT_EQ(l.get(resource::wall), 5400.0);
  EXPECT_EQ(l.get(resource::flops), 2.5e12);
  EXPECT_EQ(l.get(resource::peak_bytes), 536870912.0);
  EXPECT_FALSE(l.has(resource::cpu));
  EXPECT_TRUE(l.unit_limits().empty());
  EXPECT_EQ(l, limits().wall(90min).flops(2.5e12).peak_bytes(536870912));
}

TEST(LimitsParse, AllKeysAndUserUnits) {
  limits l = limits::parse(
      "wall=1h30m,cpu=45m,flops=2.5e12,allocations=1e6,alloc_bytes=8GB,peak_bytes=512MiB,rss_bytes=1GiB,samples=1e6,"
      "tokens=5e9");
  EXPECT_EQ(l.get(resource::cpu), 2700.0);
  EXPECT_EQ(l.get(resource::rss_bytes), 1073741824.0);
  EXPECT_EQ(l.get(resource::allocations), 1e6);
  EXPECT_EQ(l.get(resource::alloc_bytes), 8e9);
  ASSERT_EQ(l.unit_limits().size(), 2u);
  EXPECT_EQ(l.unit_limits()[0], (std::pair<std::string, double>("samples", 1e6)));
  EXPECT_EQ(l.unit_limits()[1], (std::pair<std::string, double>("tokens", 5e9)));
}

TEST(LimitsParse, WhitespaceIsIgnored) {
  limits l = limits::parse("  wall = 30 s ,\tflops= 1e9 , samples =10\n");
  EXPECT_EQ(l, limits().wall(30s).flops(1e9).units("samples", 10));
}

TEST(LimitsParse, EmptyInputIsEmptyLimits) {
  EXPECT_TRUE(limits::parse("").empty());
  EXPECT_TRUE(limits::parse(" \t\n ").empty());
  EXPECT_EQ(limits::parse(""), limits());
}

TEST(LimitsParse, StructuralErrorsNameTheEntry) {
  const bad_case cases[] = {
      {"wall", "entry 'wall' has no '='"},
      {"wall=1s,flops", "entry 'flops' has no '='"},
      {"=5", "entry '=5' has an empty key"},
      {" = 5", "entry '= 5' has an empty key"},
      {"wall=", "entry 'wall=' has an empty value"},
      {"samples= ", "entry 'samples=' has an empty value"},
      {"wall=1s,wall=2s", "entry 'wall=2s' repeats key 'wall'"},
      {"samples=1,samples=2", "entry 'samples=2' repeats key 'samples'"},
      {"wall=1s,,flops=2", "entry 2 of 'wall=1s,,flops=2' is empty"},
      {"wall=1s,", "entry 2 of 'wall=1s,' is empty"},
      {",wall=1s", "entry 1 of ',wall=1s' is empty"},
      {"my-unit=3", "entry 'my-unit=3' has invalid key 'my-unit'"},
      {"Wall=1h", "entry 'Wall=1h' has invalid key 'Wall'"},
      {"9lives=9", "invalid key '9lives'"},
  };
  for (const auto& c : cases) {
    EXPECT_THROW((void)limits::parse(c.text), std::invalid_argument) << c.text;
    EXPECT_TRUE(throws_with([&] { (void)limits::parse(c.text); }, {"frugal: limits: ", c.detail}))
        << "input: '" << c.text << "'";
  }
}

// The issue's lenient inputs, now errors naming the key and quoting the value.
TEST(LimitsParse, FractionalCountsAndBytesAndDotAfterAUnitAreErrors) {
  EXPECT_TRUE(throws_with([] { (void)limits::parse("peak_bytes=0.5"); },
                          {"frugal: peak_bytes: cannot parse bytes '0.5': not a whole number of bytes (0.5 B)"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("wall=1h,alloc_bytes=0.1KiB"); },
                          {"frugal: alloc_bytes: cannot parse bytes '0.1KiB'", "(102.4 B)"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("flops=1.5"); },
                          {"frugal: flops: cannot parse count '1.5': not a whole number (1.5)"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("allocations=0.5"); }, {"frugal: allocations: ", "'0.5'"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("wall=1s.5ms"); },
                          {"frugal: wall: cannot parse duration '1s.5ms': number '.5' right after a unit"}));
  // What stays fine: whole values in any notation, fractions where they mean something.
  const limits ok =
      limits::parse("wall=1.5s,cpu=1s500ms,flops=2.5e12,allocations=1e6,alloc_bytes=1.1kB,peak_bytes=1.5KiB,"
                    "samples=0.5");
  EXPECT_EQ(ok, limits()
                    .wall(1500ms)
                    .cpu(1500ms)
                    .flops(2.5e12)
                    .allocations(1e6)
                    .alloc_bytes(1100)
                    .peak_bytes(1536)
                    .units("samples", 0.5));
}

TEST(LimitsParse, ValueErrorsNameTheKey) {
  EXPECT_TRUE(throws_with([] { (void)limits::parse("peak_bytes=12 parsecs"); },
                          {"frugal: peak_bytes: cannot parse bytes '12 parsecs'", "unknown unit 'parsecs'"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("rss_bytes=0.1KiB"); },
                          {"frugal: rss_bytes: cannot parse bytes '0.1KiB': not a whole number of bytes (102.4 B)"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("rss_bytes=-1GiB"); }, {"frugal: rss_bytes: ", "negative"}));
  // "auto" takes a memory level's limit from the cgroup (process_memory_test); nothing else has one.
  EXPECT_TRUE(throws_with([] { (void)limits::parse("wall=auto"); },
                          {"frugal: limits: wall=auto: 'auto' is only for the memory levels peak_bytes and rss_bytes "
                           "(their limit comes from the cgroup)"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::auto_limit(resource::flops); }, {"frugal: limits: flops=auto: "}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("samples=auto"); },
                          {"frugal: samples: cannot parse count 'auto': expected a number"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("rss_bytes=Auto"); }, {"frugal: rss_bytes: ", "'Auto'"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("flops=2e12,wall=5 parsecs"); },
                          {"frugal: wall: cannot parse duration '5 parsecs'", "unknown unit 'parsecs'"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("wall=30"); }, {"frugal: wall: ", "'30'", "missing unit"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("samples=1M"); },
                          {"frugal: samples: cannot parse count '1M'", "trailing text 'M'"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("flops=-1"); }, {"frugal: flops: ", "'-1'", "negative"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("cpu=inf"); }, {"frugal: cpu: ", "'inf'"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("tokens=nan"); }, {"frugal: tokens: ", "'nan'"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("wall=1s=2s"); }, {"frugal: wall: ", "'1s=2s'"}));
}

TEST(LimitsToString, CanonicalText) {
  EXPECT_EQ(limits().wall(30s).flops(2e12).units("samples", 1000000).to_string(),
            "wall=30s,flops=2e+12,samples=1e+06");
  EXPECT_EQ(limits().wall(90min).to_string(), "wall=1h30m");
  EXPECT_EQ(limits().wall(3605s).to_string(), "wall=1h5s");
  EXPECT_EQ(limits().cpu(1500ms).to_string(), "cpu=1.5s");
  EXPECT_EQ(limits().cpu(0s).to_string(), "cpu=0s");
  EXPECT_EQ(limits().peak_bytes(536870912).alloc_bytes(1e9).to_string(),
            "alloc_bytes=1e+09,peak_bytes=512MiB");
  EXPECT_EQ(limits().peak_bytes(1536).to_string(), "peak_bytes=1536");  // 1.5 KiB: no whole suffix
  // Builtins come out in enum order regardless of the order they were set in.
  EXPECT_EQ(limits().units("b", 2).peak_bytes(1).wall(1s).units("a", 1).to_string(),
            "wall=1s,peak_bytes=1,b=2,a=1");
  EXPECT_EQ(limits().rss_bytes(2.0 * 1024 * 1024 * 1024).peak_bytes(512.0 * 1024 * 1024).to_string(),
            "peak_bytes=512MiB,rss_bytes=2GiB");
  EXPECT_EQ(limits::parse("rss_bytes=1.5GB").to_string(), "rss_bytes=1.5e+09");
}

TEST(LimitsToString, RoundTripsExactly) {
  const limits cases[] = {
      limits(),
      limits().wall(90min).flops(2.5e12).peak_bytes(536870912),
      limits().wall(std::chrono::duration<double>(0.1)).cpu(std::chrono::nanoseconds(1)),
      limits().wall(std::chrono::duration<double>(1e20)).cpu(std::chrono::duration<double>(1234.5678)),
      limits().flops(123456789).allocations(1e300).alloc_bytes(1100).peak_bytes(3.0 * 1099511627776.0 + 1),
      limits().alloc_bytes(1e20).peak_bytes(7.0 * 1024 * 1024 * 1024),
      limits().units("samples", 1e6).units("tokens", 1.0 / 3.0).units("_z", 0),
      limits().flops(std::numeric_limits<double>::max()).allocations(9007199254740994.0),
      limits().alloc_bytes(1536).peak_bytes((9007199254740992.0 + 2) * 1024).units("epochs", 2.5),
      limits().wall(0s).cpu(0s).flops(0).allocations(0).alloc_bytes(0).peak_bytes(0).rss_bytes(0),
      limits().rss_bytes(1073741824).peak_bytes(3 * 1024),
      limits().rss_bytes(123456789013),
  };
  for (const auto& l : cases) {
    std::string text = l.to_string();
    limits back = limits::parse(text);
    EXPECT_EQ(back, l) << text << " -> " << back.to_string();
    EXPECT_EQ(back.to_string(), text);
  }
}

// Whole counts and sizes of every magnitude, any durations and user units: every value a setter
// accepts comes back identical from parse(to_string()).
TEST(LimitsToString, RoundTripsEveryAcceptedValue) {
  frugal_test::xorshift64 next{0x9E3779B97F4A7C15u};
  for (int i = 0; i < 20000; ++i) {
    const auto bits = next();
    const double whole = std::ldexp(static_cast<double>(bits >> 11), static_cast<int>(next() % 200) - 40);
    const double count = std::floor(whole);
    const double any = std::ldexp(static_cast<double>(next() >> 11), static_cast<int>(next() % 120) - 80);
    limits l;
    l.flops(count).allocations(std::floor(count / 3)).alloc_bytes(count).peak_bytes(std::floor(whole / 1024) * 1024);
    l.rss_bytes(std::floor(whole / 4096) * 4096 + static_cast<double>(bits % 7));
    l.wall(std::chrono::duration<double>(any)).cpu(std::chrono::duration<double>(std::floor(any)));
    l.units("u", any);
    l.cost(any, bits % 2 ? "USD" : "").energy(any);
    const std::string text = l.to_string();
    limits back;
    ASSERT_NO_THROW(back = limits::parse(text)) << text;
    ASSERT_EQ(back, l) << text << " -> " << back.to_string();
  }
}

TEST(LimitsEquality, ComparesEveryLimit) {
  EXPECT_EQ(limits(), limits());
  EXPECT_NE(limits().flops(1), limits());
  EXPECT_NE(limits().flops(1), limits().flops(2));
  EXPECT_NE(limits().flops(1), limits().allocations(1));
  EXPECT_NE(limits().units("a", 1), limits().units("b", 1));
  EXPECT_NE(limits().units("a", 1), limits().units("a", 2));
  EXPECT_NE(limits().units("a", 1), limits().units("a", 1).units("b", 1));
  EXPECT_NE(limits().units("a", 1).units("b", 1), limits().units("a", 1));
  // Insertion order of user units does not make two budgets different.
  EXPECT_EQ(limits().units("a", 1).units("b", 2), limits().units("b", 2).units("a", 1));
  EXPECT_FALSE(limits().flops(1) != limits().flops(1));
  // The currency is part of the cost limit.
  EXPECT_NE(limits().cost(1, "USD"), limits().cost(1, "EUR"));
  EXPECT_NE(limits().cost(1, "USD"), limits().cost(1));
  EXPECT_NE(limits().energy(1), limits().cost(1));
}

// ---------------------------------------------------------------------------------------------
// money and energy

TEST(Money, AmountAndOptionalCurrency) {
  const frugal::money a = frugal::parse_money("12.50USD");
  EXPECT_EQ(a.amount, 12.5);
  EXPECT_EQ(a.currency, "USD");
  const frugal::money b = frugal::parse_money(" 0.02 EUR ");
  EXPECT_EQ(b.amount, 0.02);
  EXPECT_EQ(b.currency, "EUR");
  const frugal::money c = frugal::parse_money("3");
  EXPECT_EQ(c.amount, 3);
  EXPECT_EQ(c.currency, "");
  EXPECT_EQ(frugal::parse_money("2.5e-3GBP").amount, 0.0025);
}

TEST(Money, BadAmountsAndCurrenciesNameTheFieldAndTheText) {
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_money("-1USD", "cost"); }, {"cost", "'-1USD'", "negative"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_money("12.50usd", "cost"); }, {"cost", "'12.50usd'", "ISO 4217", "'usd'"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_money("12.50US$"); }, {"ISO 4217", "'US$'"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_money("USD"); }, {"expected a number"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_money(""); }, {"empty value"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_money("1e999USD"); }, {"out of range"}));
}

TEST(Energy, UnitsAreExact) {
  EXPECT_EQ(frugal::parse_energy("50kJ"), 50000);
  EXPECT_EQ(frugal::parse_energy("1.1kJ"), 1100);  // a decimal shift, not 1.1 * 1000
  EXPECT_EQ(frugal::parse_energy("250 J"), 250);
  EXPECT_EQ(frugal::parse_energy("2MJ"), 2e6);
  EXPECT_EQ(frugal::parse_energy("1GJ"), 1e9);
  EXPECT_EQ(frugal::parse_energy("1Wh"), 3600);
  EXPECT_EQ(frugal::parse_energy("0.5kWh"), 1.8e6);
  EXPECT_EQ(frugal::parse_energy("1MWh"), 3.6e9);
  EXPECT_EQ(frugal::parse_energy("0.25J"), 0.25);
}

TEST(Energy, ErrorsNameTheFieldAndTheText) {
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_energy("50", "energy"); }, {"energy", "'50'", "missing unit", "kWh"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_energy("50kj"); }, {"unknown unit 'kj'"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_energy("-5J"); }, {"negative"}));
  EXPECT_TRUE(throws_with([] { (void)frugal::parse_energy("1e308GJ"); }, {"out of range"}));
}

TEST(MoneyAndEnergy, Formatting) {
  EXPECT_EQ(frugal::format_money(12.5, "USD"), "12.50 USD");
  EXPECT_EQ(frugal::format_money(0.0213, "USD"), "0.0213 USD");
  EXPECT_EQ(frugal::format_money(0.5), "0.500");
  EXPECT_EQ(frugal::format_money(0.9999), "1.00");
  EXPECT_EQ(frugal::format_money(0), "0");
  EXPECT_EQ(frugal::format_money(1e-9, "EUR"), "1.00e-9 EUR");
  EXPECT_EQ(frugal::format_energy(850), "850 J");
  EXPECT_EQ(frugal::format_energy(12345), "12.3 kJ");
  EXPECT_EQ(frugal::format_energy(4.56e6), "4.56 MJ");
  EXPECT_EQ(frugal::format_energy(1.2e9), "1.20 GJ");
  EXPECT_EQ(frugal::format_quantity(resource::energy, 50000), "50.0 kJ");
  EXPECT_EQ(frugal::format_quantity(resource::cost, 2.5), "2.50");
}

TEST(LimitsParse, CostAndEnergy) {
  const limits l = limits::parse("wall=20s,cost=12.50USD,energy=50kJ");
  EXPECT_EQ(l.get(resource::cost), 12.5);
  EXPECT_EQ(l.currency(), "USD");
  EXPECT_EQ(l.get(resource::energy), 50000);
  EXPECT_EQ(l.to_string(), "wall=20s,cost=12.5USD,energy=50000J");
  EXPECT_EQ(limits::parse(l.to_string()), l);
  EXPECT_EQ(limits::parse("cost=3").currency(), "");
  EXPECT_EQ(limits().cost(0.02, "EUR").to_string(), "cost=0.02EUR");
  EXPECT_TRUE(throws_with([] { (void)limits::parse("cost=12.50 dollars"); }, {"cost", "ISO 4217", "'dollars'"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("energy=50"); }, {"energy", "missing unit"}));
  EXPECT_TRUE(throws_with([] { (void)limits::parse("cost=auto"); }, {"cost"}));
  EXPECT_TRUE(throws_with([] { (void)limits().cost(1, "usd"); }, {"cost", "ISO 4217", "'usd'"}));
  EXPECT_TRUE(throws_with([] { (void)limits().cost(-1, "USD"); }, {"cost", "-1"}));
  EXPECT_TRUE(throws_with([] { (void)limits().energy(nan_value); }, {"energy", "nan"}));
  // A user unit may not take a builtin's name, whatever its case.
  EXPECT_TRUE(throws_with([] { (void)limits().units("Cost", 1); }, {"reserved", "cost"}));
  EXPECT_TRUE(throws_with([] { (void)limits().units("ENERGY", 1); }, {"reserved", "energy"}));
  // Lifting the cost limit drops its currency too.
  limits c = limits().cost(1, "USD");
  c.clear(resource::cost);
  EXPECT_EQ(c, limits());
}

}  // namespace
