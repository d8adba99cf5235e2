/// @file
/// Resources frugal can budget, strict parsers and human formatters for their quantities,
/// and `limits`: the set of caps (builtin resources plus named user units) a budget enforces.
#pragma once

#include <frugal/process_memory.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace frugal {

/// peak_bytes is the highest live heap (the allocation hooks measure it); rss_bytes the highest
/// resident set of the process, read from /proc only when asked (budget::used(), reports).
/// cost is money, derived from wall, cpu and flops by the budget's price (price.hpp), never
/// charged on its own; energy is joules the machine's RAPL domains used (energy.hpp), read only
/// when asked, like rss_bytes.
enum class resource : unsigned char { wall, cpu, flops, allocations, alloc_bytes, peak_bytes, rss_bytes, cost, energy };

/// How many builtin resources there are: the size of `resource`.
inline constexpr std::size_t resource_count = 9;

/// Every builtin resource, in enum order (the order reports list them in).
inline constexpr std::array<resource, resource_count> all_resources = {
    resource::wall,       resource::cpu,       resource::flops, resource::allocations, resource::alloc_bytes,
    resource::peak_bytes, resource::rss_bytes, resource::cost,  resource::energy,
};

/// Longer names are almost certainly a bug (a pasted value, a path) and would bloat reports.
inline constexpr std::size_t max_unit_name_length = 63;

/// The resource's name as limits and reports spell it ("wall", "peak_bytes", ...); "unknown" for an
/// out-of-range value.
[[nodiscard]] constexpr std::string_view to_string(resource r) noexcept {
  switch (r) {
    case resource::wall: return "wall";
    case resource::cpu: return "cpu";
    case resource::flops: return "flops";
    case resource::allocations: return "allocations";
    case resource::alloc_bytes: return "alloc_bytes";
    case resource::peak_bytes: return "peak_bytes";
    case resource::rss_bytes: return "rss_bytes";
    case resource::cost: return "cost";
    case resource::energy: return "energy";
  }
  // Reachable only through a cast of an out-of-range integer; never crash while reporting.
  return "unknown";
}

/// The resource named `name` (as to_string() spells it); empty for any other name (a user unit).
[[nodiscard]] inline std::optional<resource> resource_from_name(std::string_view name) noexcept {
  for (resource r : all_resources) {
    if (to_string(r) == name) return r;
  }
  return std::nullopt;
}

/// Two kinds of resource, and every aggregate over resources says which it covers.
/// A consumable is spent and can run out: its fraction used drives "budget used", schedules and
/// exhausted(). A level is a height that must stay under a ceiling (the peak heap, the resident
/// set): crossing it is its own state, answered by a smaller batch, never by decaying the learning
/// rate. User units are always consumables.
enum class resource_kind : unsigned char { consumable, level };

/// "consumable" or "level"; "unknown" for an out-of-range value.
[[nodiscard]] constexpr std::string_view to_string(resource_kind k) noexcept {
  switch (k) {
    case resource_kind::consumable: return "consumable";
    case resource_kind::level: return "level";
  }
  return "unknown";
}

/// peak_bytes and rss_bytes are levels; every other builtin is a consumable.
[[nodiscard]] constexpr resource_kind kind_of_resource(resource r) noexcept {
  switch (r) {
    case resource::peak_bytes:
    case resource::rss_bytes: return resource_kind::level;
    case resource::wall:
    case resource::cpu:
    case resource::flops:
    case resource::allocations:
    case resource::alloc_bytes:
    case resource::cost:
    case resource::energy: break;
  }
  return resource_kind::consumable;
}

/// Whether `r` is a level (a height under a ceiling).
[[nodiscard]] constexpr bool is_level(resource r) noexcept { return kind_of_resource(r) == resource_kind::level; }
/// Whether `r` is a consumable (spent, can run out).
[[nodiscard]] constexpr bool is_consumable(resource r) noexcept {
  return kind_of_resource(r) == resource_kind::consumable;
}

/// What a resource's amounts measure: seconds (duration), a number (count), bytes, money (in the
/// limit's or the price's currency) or joules (energy); decides how they are parsed and formatted.
enum class quantity_kind { duration, count, bytes, money, energy };

/// wall and cpu are durations; alloc_bytes, peak_bytes and rss_bytes are bytes; flops and
/// allocations counts; cost money; energy joules.
[[nodiscard]] constexpr quantity_kind kind_of(resource r) noexcept {
  switch (r) {
    case resource::wall:
    case resource::cpu: return quantity_kind::duration;
    case resource::alloc_bytes:
    case resource::peak_bytes:
    case resource::rss_bytes: return quantity_kind::bytes;
    case resource::cost: return quantity_kind::money;
    case resource::energy: return quantity_kind::energy;
    case resource::flops:
    case resource::allocations: break;
  }
  return quantity_kind::count;
}

/// Whether amounts of `r` are whole numbers: counts and bytes are; durations, money and joules
/// may be fractions.
[[nodiscard]] constexpr bool is_whole_quantity(resource r) noexcept {
  return kind_of(r) == quantity_kind::count || kind_of(r) == quantity_kind::bytes;
}

namespace detail::units_impl {

// Locale-free on purpose: a host program's setlocale() must not change what a config means.
constexpr bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
constexpr bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr char to_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

constexpr std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

inline std::string_view skip_space(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  return s;
}

[[noreturn]] inline void throw_parse_error(std::string_view field, std::string_view kind,
                                           std::string_view text, std::string_view reason) {
  std::string msg = "frugal: ";
  msg.append(field).append(": cannot parse ").append(kind).append(" '").append(text);
  msg.append("': ").append(reason);
  throw std::invalid_argument(msg);
}

// Shortest text that from_chars reads back to the identical double; locale-free.
inline std::string shortest(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

inline std::string fixed(double v, int decimals) {
  char buf[400];  // a double printed in full fixed notation needs at most ~330 chars
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, decimals);
  return std::string(buf, res.ptr);
}

// Three significant digits for v below ~1024; the thresholds are the rounding points, so
// 9.996 prints "10.0" rather than "10.00" and 0.9999 prints "1.00" rather than "1".
inline std::string sig3(double v) {
  if (v < 0.9995) {
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 3);
    return std::string(buf, res.ptr);
  }
  if (v < 9.995) return fixed(v, 2);
  if (v < 99.95) return fixed(v, 1);
  return fixed(v, 0);
}

// "2.50e12": three significant digits, exponent without '+' or zero padding so it reads
// like the scientific literals users type into configs.
inline std::string sci3(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific, 2);
  std::string s(buf, res.ptr);
  auto e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mantissa = s.substr(0, e);
  std::string exponent = s.substr(e + 1);
  bool negative = !exponent.empty() && exponent.front() == '-';
  if (!exponent.empty() && (exponent.front() == '+' || exponent.front() == '-')) exponent.erase(0, 1);
  auto nz = exponent.find_first_not_of('0');
  exponent = nz == std::string::npos ? "0" : exponent.substr(nz);
  return mantissa + "e" + (negative ? "-" : "") + exponent;
}

// Strict unsigned decimal: digits [ '.' digits ] [ (e|E) [+-] digits ], at least one mantissa
// digit. Deliberately rejects what strtod would accept (inf, nan, hex, leading blanks, signs),
// because each of those in a budget config is a typo, not an intent.
struct scanned_number {
  double value = 0;
  std::size_t length = 0;  // 0: no number at the start of the text
  bool out_of_range = false;
};

inline scanned_number scan_number(std::string_view s) noexcept {
  std::size_t i = 0;
  std::size_t digits = 0;
  while (i < s.size() && is_digit(s[i])) { ++i; ++digits; }
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) { ++i; ++digits; }
  }
  if (digits == 0) return {};
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    std::size_t j = i + 1;
    if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
    std::size_t exp_start = j;
    while (j < s.size() && is_digit(s[j])) ++j;
    // Without exponent digits the 'e' belongs to whatever follows (a unit), not to the number.
    if (j > exp_start) i = j;
  }
  scanned_number out;
  out.length = i;
  auto res = std::from_chars(s.data(), s.data() + i, out.value, std::chars_format::general);
  if (res.ec == std::errc::result_out_of_range || res.ptr != s.data() + i || !std::isfinite(out.value)) {
    out.out_of_range = true;
  }
  return out;
}

// Shared by units() and parse(); returns why the name is unusable, or nullopt if it is fine.
inline std::optional<std::string> unit_name_problem(std::string_view name) {
  if (name.empty()) return std::string("name is empty");
  if (name.size() > max_unit_name_length) {
    return "name is longer than " + std::to_string(max_unit_name_length) + " characters";
  }
  if (!(is_alpha(name.front()) || name.front() == '_')) {
    return std::string("name must start with a letter or '_' (pattern [A-Za-z_][A-Za-z0-9_]*)");
  }
  for (char c : name) {
    if (!(is_alpha(c) || is_digit(c) || c == '_')) {
      return std::string("name may contain only letters, digits and '_' (pattern [A-Za-z_][A-Za-z0-9_]*)");
    }
  }
  // Case-insensitive so that a typo like "Wall=1h" is an error rather than a user unit that
  // silently never gets charged.
  for (resource r : all_resources) {
    std::string_view builtin = to_string(r);
    if (builtin.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i) same = builtin[i] == to_lower(name[i]);
    if (same) return "name is reserved for the builtin resource '" + std::string(builtin) + "'";
  }
  return std::nullopt;
}

struct duration_unit {
  std::string_view name;
  double multiplier;  // seconds per unit for h/m/s ...
  double divisor;     // ... and units per second for sub-second units, so 250ms is exactly 0.25
  int rank;           // units must appear largest first, each at most once
};

inline constexpr std::array<duration_unit, 8> duration_units = {{
    {"h", 3600.0, 1.0, 0},
    {"m", 60.0, 1.0, 1},
    {"s", 1.0, 1.0, 2},
    {"ms", 1.0, 1e3, 3},
    {"us", 1.0, 1e6, 4},
    {"\xC2\xB5s", 1.0, 1e6, 4},  // U+00B5 MICRO SIGN
    {"\xCE\xBCs", 1.0, 1e6, 4},  // U+03BC GREEK SMALL LETTER MU, which keyboards often produce
    {"ns", 1.0, 1e9, 5},
}};

// A unit that scales a number: bytes (B, kB, KiB, ...) and energy (J, kJ, Wh, ...).
struct scaled_unit {
  std::string_view name;
  double multiplier;
  int decimal_shift;  // decimal units: multiplier == 10^decimal_shift, applied to the text
};

inline constexpr std::array<scaled_unit, 10> byte_units = {{
    {"B", 1.0, 0},
    {"kB", 1e3, 3},
    {"KB", 1e3, 3},
    {"MB", 1e6, 6},
    {"GB", 1e9, 9},
    {"TB", 1e12, 12},
    {"KiB", 1024.0, 0},
    {"MiB", 1024.0 * 1024.0, 0},
    {"GiB", 1024.0 * 1024.0 * 1024.0, 0},
    {"TiB", 1024.0 * 1024.0 * 1024.0 * 1024.0, 0},
}};

// Joules per unit. A watt-hour is 3600 J; the SI multiples shift the decimal point, so 1.1kJ is
// exactly 1100 J.
inline constexpr std::array<scaled_unit, 7> energy_units = {{
    {"J", 1.0, 0},
    {"kJ", 1e3, 3},
    {"MJ", 1e6, 6},
    {"GJ", 1e9, 9},
    {"Wh", 3600.0, 0},
    {"kWh", 3.6e6, 0},
    {"MWh", 3.6e9, 0},
}};

// ISO 4217 codes are three capital letters; anything else in a budget is a typo (usd, US$).
inline std::optional<std::string> currency_problem(std::string_view code) {
  bool capitals = code.size() == 3;
  for (char c : code) capitals = capitals && c >= 'A' && c <= 'Z';
  if (capitals) return std::nullopt;
  return "a currency is an ISO 4217 code of three capital letters (USD, EUR, GBP, ...), got '" +
         std::string(code) + "'";
}

// Integral seconds print as "1h30m5s" (readable, and exact on re-parse since every term is an
// integer below 2^53); anything else as shortest-round-trip seconds.
inline std::string canonical_duration(double seconds) {
  if (seconds == 0) return "0s";
  if (seconds != std::floor(seconds) || seconds >= 9007199254740992.0) return shortest(seconds) + "s";
  auto total = static_cast<long long>(seconds);
  long long h = total / 3600;
  long long m = (total % 3600) / 60;
  long long s = total % 60;
  std::string out;
  if (h != 0) out += std::to_string(h) + "h";
  if (m != 0) out += std::to_string(m) + "m";
  if (s != 0) out += std::to_string(s) + "s";
  return out;
}

// Exact binary multiples print with the largest exact suffix ("512MiB"); the rest as plain bytes.
inline std::string canonical_bytes(double bytes) {
  if (bytes != 0 && bytes == std::floor(bytes)) {
    for (auto it = byte_units.rbegin(); it != byte_units.rend(); ++it) {
      if (it->name.size() != 3) continue;  // only the IEC suffixes
      double q = bytes / it->multiplier;
      if (q >= 1 && q == std::floor(q) && q * it->multiplier == bytes) {
        return shortest(q) + std::string(it->name);
      }
    }
  }
  return shortest(bytes);
}

}  // namespace detail::units_impl

/// One entry of a "key=value,key=value" text: the entry as written (trimmed), its key and value.
struct key_value {
  std::string_view entry;  ///< "key = value", trimmed
  std::string_view key;    ///< before the first '=', trimmed
  std::string_view value;  ///< after it, trimmed
};

/// Splits "key=value,key=value" -- the form limits::parse() and price::parse() read, for a
/// caller's own keys -- into entries, each trimmed and split at its first '=', key and value
/// trimmed. Throws std::invalid_argument, "frugal: <what>: entry ..." naming the entry, for an
/// empty entry, one without '=', an empty key or value, or a key given twice. `text` must outlive
/// the result (its views point into it).
[[nodiscard]] inline std::vector<key_value> split_key_values(std::string_view text, std::string_view what) {
  using detail::units_impl::trim;
  const std::string prefix = "frugal: " + std::string(what) + ": entry ";
  std::vector<key_value> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    key_value kv;
    kv.entry = trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (kv.entry.empty())
      throw std::invalid_argument(prefix + std::to_string(out.size() + 1) + " of '" + std::string(text) + "' is empty");
    const auto eq = kv.entry.find('=');
    if (eq == std::string_view::npos)
      throw std::invalid_argument(prefix + "'" + std::string(kv.entry) + "' has no '=' (expected key=value)");
    kv.key = trim(kv.entry.substr(0, eq));
    kv.value = trim(kv.entry.substr(eq + 1));
    if (kv.key.empty()) throw std::invalid_argument(prefix + "'" + std::string(kv.entry) + "' has an empty key");
    if (kv.value.empty()) throw std::invalid_argument(prefix + "'" + std::string(kv.entry) + "' has an empty value");
    for (const key_value& seen : out)
      if (seen.key == kv.key)
        throw std::invalid_argument(prefix + "'" + std::string(kv.entry) + "' repeats key '" + std::string(kv.key) + "'");
    out.push_back(kv);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

namespace detail::units_impl {
// The number a byte size or a count starts with (s is the trimmed text; text, as given, is
// what errors quote): not empty, not negative, a number, and in range.
inline scanned_number leading_number(std::string_view s, std::string_view text, std::string_view field,
                                     std::string_view kind, const char* negative) {
  if (s.empty()) throw_parse_error(field, kind, text, "empty value");
  if (s.front() == '-') throw_parse_error(field, kind, text, negative);
  const scanned_number num = scan_number(s);
  if (num.length == 0) throw_parse_error(field, kind, text, "expected a number");
  if (num.out_of_range) throw_parse_error(field, kind, text, "number is out of range");
  return num;
}

// `number` (as scan_number read it) times 10^shift, read as one decimal: 1.1kB is exactly 1100
// bytes, where 1.1 * 1000 would be 1100.0000000000002 and not a whole number of bytes.
inline scanned_number scaled_decimal(std::string_view number, int shift) {
  std::size_t e = 0;
  while (e < number.size() && number[e] != 'e' && number[e] != 'E') ++e;
  long long exponent = 0;
  if (e < number.size()) {
    std::size_t j = e + 1;
    const bool negative = number[j] == '-';
    if (number[j] == '+' || number[j] == '-') ++j;
    for (; j < number.size(); ++j)  // saturates: from_chars then reports the range error
      if (exponent < 1'000'000'000) exponent = exponent * 10 + (number[j] - '0');
    if (negative) exponent = -exponent;
  }
  const std::string text = std::string(number.substr(0, e)) + "e" + std::to_string(exponent + shift);
  scanned_number out;
  out.length = number.size();
  const auto res = std::from_chars(text.data(), text.data() + text.size(), out.value, std::chars_format::general);
  out.out_of_range = res.ec != std::errc() || res.ptr != text.data() + text.size() || !std::isfinite(out.value);
  return out;
}

// `num` (read from the start of `s`) in the unit named `suffix`, one of `units`: a decimal unit
// shifts the decimal point of the text (1.1kB is exactly 1100), the others multiply (binary
// units and B, J: powers of two or 1, exact; Wh: 3600). Errors name `field` and quote `text`.
template <std::size_t N>
[[nodiscard]] double in_unit(std::string_view s, const scanned_number& num, std::string_view suffix,
                             const std::array<scaled_unit, N>& units, std::string_view text, std::string_view field,
                             std::string_view kind, std::string_view choices) {
  const scaled_unit* unit = nullptr;
  for (const auto& u : units)
    if (u.name == suffix) unit = &u;
  if (unit == nullptr) throw_parse_error(field, kind, text, "unknown unit '" + std::string(suffix) + "'" + std::string(choices));
  double value = num.value * unit->multiplier;
  if (unit->decimal_shift != 0) {
    const auto scaled = scaled_decimal(s.substr(0, num.length), unit->decimal_shift);
    if (scaled.out_of_range) throw_parse_error(field, kind, text, "value is out of range");
    value = scaled.value;
  }
  if (!std::isfinite(value)) throw_parse_error(field, kind, text, "value is out of range");
  return value;
}

// Counts of things frugal measures in whole units (FLOPs, allocations, bytes) must be whole.
[[nodiscard]] inline bool is_whole(double v) noexcept { return std::isfinite(v) && v == std::floor(v); }
}  // namespace detail::units_impl

/// The text forms of quantities, as limits::parse() and the parse_* functions read them. Numbers
/// are unsigned decimals (digits, an optional fraction, an optional exponent: "2.5e12", ".5",
/// "5."); no sign, inf, nan, hex or digit separators. Whitespace around tokens is ignored.
/// - Durations: number+unit terms, units h, m, s, ms, us (or µs), ns, largest first, each at most
///   once: "1h30m", "1.5s", "250ms", "1s500ms", ".5s". A fraction is allowed in any term, but a
///   number right after a unit must start with a digit: "1s.5ms" is an error (for 1.5s or 1s5ms?).
/// - Byte sizes (peak_bytes, alloc_bytes): whole bytes once the unit is applied (parse_bytes).
/// - Builtin counts (flops, allocations): whole numbers, in any notation ("2.5e12"; not "1.5").
/// - Money (cost): a number and an optional ISO 4217 code, "12.50USD" (parse_money).
/// - Energy: a number and a unit, J, kJ, MJ, GJ, Wh, kWh, MWh: "50kJ" (parse_energy).
/// - User units: any non-negative number, fractions included: they are charged as doubles.
/// Errors are std::invalid_argument naming the field and quoting the text.
[[nodiscard]] inline double parse_duration(std::string_view text, std::string_view field = "duration") {
  namespace d = detail::units_impl;
  constexpr std::string_view kind = "duration";
  std::string_view s = d::trim(text);
  if (s.empty()) d::throw_parse_error(field, kind, text, "empty value");
  if (s.front() == '-') d::throw_parse_error(field, kind, text, "negative durations are not allowed");
  double total = 0;
  int last_rank = -1;
  while (!s.empty()) {
    auto num = d::scan_number(s);
    // "1s.5ms" would read as 1 s + 0.5 ms, but is almost surely a typo (for 1.5s, or 1s5ms):
    // a number right after a unit must start with a digit.
    if (last_rank >= 0 && num.length != 0 && s.front() == '.') {
      const std::string number(s.substr(0, num.length));
      d::throw_parse_error(field, kind, text,
                           "number '" + number + "' right after a unit must start with a digit (write '0" +
                               number + "' if that is meant)");
    }
    if (num.length == 0) {
      d::throw_parse_error(field, kind, text, "expected a number at '" + std::string(s) + "'");
    }
    if (num.out_of_range) {
      d::throw_parse_error(field, kind, text,
                           "number '" + std::string(s.substr(0, num.length)) + "' is out of range");
    }
    std::string_view number_text = s.substr(0, num.length);
    s = d::skip_space(s.substr(num.length));
    std::size_t unit_len = 0;
    // Non-ASCII bytes are taken too so that "µs" is one token and a stray UTF-8 unit is
    // reported whole instead of as a confusing fragment.
    while (unit_len < s.size() &&
           (d::is_alpha(s[unit_len]) || static_cast<unsigned char>(s[unit_len]) >= 0x80)) {
      ++unit_len;
    }
    if (unit_len == 0) {
      d::throw_parse_error(field, kind, text,
                           "missing unit after '" + std::string(number_text) + "' (use h, m, s, ms, us, ns)");
    }
    std::string_view unit_text = s.substr(0, unit_len);
    const d::duration_unit* unit = nullptr;
    for (const auto& u : d::duration_units) {
      if (u.name == unit_text) unit = &u;
    }
    if (unit == nullptr) {
      d::throw_parse_error(field, kind, text,
                           "unknown unit '" + std::string(unit_text) + "' (use h, m, s, ms, us, ns)");
    }
    if (unit->rank <= last_rank) {
      d::throw_parse_error(field, kind, text,
                           "unit '" + std::string(unit_text) +
                               "' is repeated or out of order (write larger units first, each once)");
    }
    last_rank = unit->rank;
    total += num.value * unit->multiplier / unit->divisor;
    if (!std::isfinite(total)) d::throw_parse_error(field, kind, text, "value is out of range");
    s = d::skip_space(s.substr(unit_len));
  }
  return total;
}

/// A byte size: a number and an optional unit (B; decimal kB = KB, MB, GB, TB; binary KiB, MiB,
/// GiB, TiB), e.g. "512MiB", "1.5 KiB", "8GB", "1e9". The size must be a whole number of bytes
/// once the unit is applied: "1.5KiB" (1536) and "1.1kB" (1100) are fine, "0.5" and "0.1KiB"
/// (102.4 B) are errors. Decimal units shift the decimal point, so "1.1kB" is exactly 1100.
[[nodiscard]] inline double parse_bytes(std::string_view text, std::string_view field = "bytes") {
  namespace d = detail::units_impl;
  constexpr std::string_view kind = "bytes";
  constexpr std::string_view choices = " (use B, kB, KB, MB, GB, TB, KiB, MiB, GiB, TiB)";
  const std::string_view s = d::trim(text);
  const auto num = d::leading_number(s, text, field, kind, "negative sizes are not allowed");
  std::string_view suffix = d::trim(s.substr(num.length));
  double value = num.value;
  if (!suffix.empty()) value = d::in_unit(s, num, suffix, d::byte_units, text, field, kind, choices);
  if (!std::isfinite(value)) d::throw_parse_error(field, kind, text, "value is out of range");
  if (!d::is_whole(value)) {
    d::throw_parse_error(field, kind, text,
                         "not a whole number of bytes (" + d::shortest(value) + " B); sizes are whole bytes");
  }
  return value;
}

/// A non-negative number with nothing after it: "950", "2.5e12", "1e6", "0.25". Fractions are
/// read here because user units (charged with add_units(name, double)) may be fractional;
/// parse_quantity() and limits::parse() require the builtin counts (flops, allocations) whole.
[[nodiscard]] inline double parse_count(std::string_view text, std::string_view field = "count") {
  namespace d = detail::units_impl;
  constexpr std::string_view kind = "count";
  const std::string_view s = d::trim(text);
  const auto num = d::leading_number(s, text, field, kind, "negative counts are not allowed");
  if (num.length != s.size()) {
    d::throw_parse_error(field, kind, text,
                         "unexpected trailing text '" + std::string(d::skip_space(s.substr(num.length))) + "'");
  }
  return num.value;
}

/// An amount of money and the currency it names ("" when it names none).
struct money {
  double amount = 0;     ///< >= 0, finite; fractions allowed
  std::string currency;  ///< an ISO 4217 code ("USD"), or empty
};

/// An amount of money: a number and an optional ISO 4217 currency code after it, "12.50USD",
/// "12.50 USD", "0.4". Negative amounts, lower-case or unknown-shaped codes are errors naming
/// `field` and quoting the text.
[[nodiscard]] inline money parse_money(std::string_view text, std::string_view field = "cost") {
  namespace d = detail::units_impl;
  constexpr std::string_view kind = "money";
  const std::string_view s = d::trim(text);
  const auto num = d::leading_number(s, text, field, kind, "negative amounts are not allowed");
  const std::string_view code = d::trim(s.substr(num.length));
  money out;
  out.amount = num.value;
  if (!code.empty()) {
    if (auto problem = d::currency_problem(code)) d::throw_parse_error(field, kind, text, *problem);
    out.currency = std::string(code);
  }
  return out;
}

/// An amount of energy in joules: a number and a unit, J, kJ, MJ, GJ, Wh, kWh or MWh ("50kJ",
/// "1.5 kWh"). The unit is required: a bare number could mean joules or kilowatt-hours.
[[nodiscard]] inline double parse_energy(std::string_view text, std::string_view field = "energy") {
  namespace d = detail::units_impl;
  constexpr std::string_view kind = "energy";
  constexpr std::string_view choices = " (use J, kJ, MJ, GJ, Wh, kWh, MWh)";
  const std::string_view s = d::trim(text);
  const auto num = d::leading_number(s, text, field, kind, "negative energies are not allowed");
  const std::string_view suffix = d::trim(s.substr(num.length));
  if (suffix.empty())
    d::throw_parse_error(field, kind, text, "missing unit after '" + std::string(s) + "'" + std::string(choices));
  return d::in_unit(s, num, suffix, d::energy_units, text, field, kind, choices);
}

/// A limit for a builtin resource, in the text form limits::parse() reads. Counts of FLOPs and
/// allocations must be whole numbers: "2.5e12" is fine (it is whole), "1.5" and "1e-3" are errors.
[[nodiscard]] inline double parse_quantity(resource r, std::string_view text) {
  switch (kind_of(r)) {
    case quantity_kind::duration: return parse_duration(text, to_string(r));
    case quantity_kind::bytes: return parse_bytes(text, to_string(r));
    case quantity_kind::energy: return parse_energy(text, to_string(r));
    case quantity_kind::money: return parse_money(text, to_string(r)).amount;
    case quantity_kind::count: break;
  }
  const double n = parse_count(text, to_string(r));
  if (!detail::units_impl::is_whole(n)) {
    detail::units_impl::throw_parse_error(to_string(r), "count", text,
                                          "not a whole number (" + detail::units_impl::shortest(n) + "); " +
                                              std::string(to_string(r)) + " are counted in whole units");
  }
  return n;
}

/// A memory level's limit taken from the cgroup (what `peak_bytes=auto` and `rss_bytes=auto` in
/// limits::parse() mean): the cgroup's limit minus what it counts beyond the level, read now, under
/// `root` (a fake tree in tests). See auto_peak_bytes_limit() and auto_rss_bytes_limit() in
/// <frugal/process_memory.hpp>; errors name "<resource>=auto" and the file behind the reason.
[[nodiscard]] inline double auto_limit(resource r, std::string_view root = "/") {
  switch (r) {
    case resource::peak_bytes: return static_cast<double>(auto_peak_bytes_limit(root));
    case resource::rss_bytes: return static_cast<double>(auto_rss_bytes_limit(root));
    case resource::wall:
    case resource::cpu:
    case resource::flops:
    case resource::allocations:
    case resource::alloc_bytes:
    case resource::cost:
    case resource::energy: break;
  }
  throw std::invalid_argument("frugal: limits: " + std::string(to_string(r)) +
                              "=auto: 'auto' is only for the memory levels peak_bytes and rss_bytes "
                              "(their limit comes from the cgroup)");
}

/// Below one second: 3 significant digits in ns/us/ms/s ("850 ns", "12.3 us", "450 ms", "1.50 s").
/// From one minute on, whole units read better than decimals: "2m 05s", then "1h 30m".
[[nodiscard]] inline std::string format_duration(double seconds) {
  namespace d = detail::units_impl;
  if (std::isnan(seconds)) return "nan";
  if (seconds < 0) return "-" + format_duration(-seconds);
  if (std::isinf(seconds)) return "inf";
  if (seconds == 0) return "0 s";
  if (seconds * 1e9 < 999.5) return d::sig3(seconds * 1e9) + " ns";
  if (seconds * 1e6 < 999.5) return d::sig3(seconds * 1e6) + " us";
  if (seconds * 1e3 < 999.5) return d::sig3(seconds * 1e3) + " ms";
  if (seconds < 59.95) return d::sig3(seconds) + " s";
  double hours = seconds / 3600.0;
  if (hours >= 1e6) return d::sci3(hours) + " h";  // keeps the integer maths below in range
  long long total = std::llround(seconds);
  if (total < 3600) {
    long long m = total / 60;
    long long s = total % 60;
    return std::to_string(m) + "m " + (s < 10 ? "0" : "") + std::to_string(s) + "s";
  }
  long long minutes = std::llround(seconds / 60.0);
  long long h = minutes / 60;
  long long m = minutes % 60;
  return std::to_string(h) + "h " + (m < 10 ? "0" : "") + std::to_string(m) + "m";
}

/// Binary units, because memory limits are usually reasoned about in powers of two. Values stay
/// in a unit until they reach 1024 of it, so 1000-1023 show 4 digits ("1000 KiB"), like `ls -h`.
[[nodiscard]] inline std::string format_bytes(double bytes) {
  namespace d = detail::units_impl;
  if (std::isnan(bytes)) return "nan";
  if (bytes < 0) return "-" + format_bytes(-bytes);
  if (std::isinf(bytes)) return "inf";
  if (bytes < 1023.5) return d::fixed(bytes, 0) + " B";
  constexpr std::array<std::string_view, 6> names = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = bytes;
  for (std::string_view name : names) {
    v /= 1024.0;
    if (v < 1023.5) return d::sig3(v) + " " + std::string(name);
  }
  return d::sci3(bytes) + " B";
}

/// Plain below 1000 ("950", "12.5"), then SI suffixes "12.3k" and "4.56M", then scientific from
/// 1e9 on ("2.50e12"): FLOP counts are conventionally written that way, and it avoids the
/// G-vs-B ("billion") ambiguity of larger suffixes.
[[nodiscard]] inline std::string format_count(double n) {
  namespace d = detail::units_impl;
  if (std::isnan(n)) return "nan";
  if (n < 0) return "-" + format_count(-n);
  if (std::isinf(n)) return "inf";
  if (n < 999.5) {
    if (n == std::floor(n)) return d::fixed(n, 0);
    return d::sig3(n);
  }
  if (n / 1e3 < 999.5) return d::sig3(n / 1e3) + "k";
  if (n / 1e6 < 999.5) return d::sig3(n / 1e6) + "M";
  return d::sci3(n);
}

/// Joules with SI prefixes, three significant digits: "850 J", "12.3 kJ", "4.56 MJ", "1.20 GJ".
[[nodiscard]] inline std::string format_energy(double joules) {
  namespace d = detail::units_impl;
  if (std::isnan(joules)) return "nan";
  if (joules < 0) return "-" + format_energy(-joules);
  if (std::isinf(joules)) return "inf";
  if (joules < 999.5) return d::sig3(joules) + " J";
  if (joules / 1e3 < 999.5) return d::sig3(joules / 1e3) + " kJ";
  if (joules / 1e6 < 999.5) return d::sig3(joules / 1e6) + " MJ";
  if (joules / 1e9 < 999.5) return d::sig3(joules / 1e9) + " GJ";
  return d::sci3(joules) + " J";
}

/// Money: two decimals from 1 on ("12.50"), three significant digits below ("0.0213": a short
/// run's bill is cents or less), then the currency when there is one ("12.50 USD").
[[nodiscard]] inline std::string format_money(double amount, std::string_view currency = {}) {
  namespace d = detail::units_impl;
  std::string out;
  if (std::isnan(amount)) out = "nan";
  else if (amount < 0) out = "-" + format_money(-amount);
  else if (std::isinf(amount)) out = "inf";
  else if (amount == 0) out = "0";
  else if (amount >= 0.995) out = d::fixed(amount, 2);
  else if (amount < 1e-6) out = d::sci3(amount);
  else {
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, amount, std::chars_format::fixed,
                                   2 - static_cast<int>(std::floor(std::log10(amount))));
    out = std::string(buf, res.ptr);
  }
  if (!currency.empty()) out.append(" ").append(currency);
  return out;
}

/// `value` in `r`'s units, formatted for people: format_duration, format_bytes, format_money (no
/// currency: the price or the limit names it), format_energy or format_count by kind_of(r).
[[nodiscard]] inline std::string format_quantity(resource r, double value) {
  switch (kind_of(r)) {
    case quantity_kind::duration: return format_duration(value);
    case quantity_kind::bytes: return format_bytes(value);
    case quantity_kind::money: return format_money(value);
    case quantity_kind::energy: return format_energy(value);
    case quantity_kind::count: break;
  }
  return format_count(value);
}

/// The caps a budget enforces: any builtin resource (seconds, counts, bytes) and named user units.
/// A cap is finite and >= 0 (whole for counts and bytes); unset means unlimited. The setters throw
/// std::invalid_argument for a bad value or unit name and return *this, to chain.
class limits {
 public:
  limits() = default;

  /// Caps wall time (any std::chrono duration, >= 0).
  template <class Rep, class Period>
  limits& wall(std::chrono::duration<Rep, Period> d) {
    return set(resource::wall, std::chrono::duration<double>(d).count());
  }
  /// Caps CPU time of the threads working for the budget (any std::chrono duration, >= 0).
  template <class Rep, class Period>
  limits& cpu(std::chrono::duration<Rep, Period> d) {
    return set(resource::cpu, std::chrono::duration<double>(d).count());
  }
  /// Caps FLOPs at n (whole, >= 0).
  limits& flops(double n) { return set(resource::flops, n); }
  /// Caps heap allocations at n (whole, >= 0).
  limits& allocations(double n) { return set(resource::allocations, n); }
  /// Caps requested heap bytes, summed over all allocations (whole, >= 0).
  limits& alloc_bytes(double bytes) { return set(resource::alloc_bytes, bytes); }
  /// Caps the live heap's level, in usable bytes (whole, >= 0).
  limits& peak_bytes(double bytes) { return set(resource::peak_bytes, bytes); }
  /// Caps the process's resident set, in bytes (whole, >= 0).
  limits& rss_bytes(double bytes) { return set(resource::rss_bytes, bytes); }
  /// Caps money, derived from wall, cpu and flops by the budget's price (budget::set_price); the
  /// currency, when named (an ISO 4217 code), must be the price's.
  limits& cost(double amount, std::string_view currency = {}) {
    if (!currency.empty())
      if (auto problem = detail::units_impl::currency_problem(currency))
        throw std::invalid_argument("frugal: limits: cost: " + *problem);
    set(resource::cost, amount);
    currency_ = std::string(currency);
    return *this;
  }
  /// Caps the energy the machine's RAPL domains use while the budget lives, in joules (>= 0).
  limits& energy(double joules) { return set(resource::energy, joules); }
  /// The currency the cost limit names; empty when it names none (or there is no cost limit).
  [[nodiscard]] const std::string& currency() const noexcept { return currency_; }

  /// Caps user unit `name` at n (finite, >= 0; fractional allowed); replaces an earlier cap of that
  /// unit. Throws for an invalid name.
  limits& units(std::string name, double n) {
    if (auto problem = detail::units_impl::unit_name_problem(name)) {
      throw std::invalid_argument("frugal: units: invalid unit name '" + name + "': " + *problem);
    }
    n = checked(name, n);
    for (auto& entry : units_) {
      if (entry.first == name) {
        entry.second = n;
        return *this;
      }
    }
    units_.emplace_back(std::move(name), n);
    return *this;
  }

  /// Caps `r` at `value`, in its units (seconds, count, bytes); throws std::invalid_argument for an
  /// unknown resource, a negative or non-finite value, or a fraction of a count or byte.
  limits& set(resource r, double value) {
    auto index = static_cast<std::size_t>(r);
    if (index >= resource_count) {
      throw std::invalid_argument("frugal: limits: unknown resource " + std::to_string(index));
    }
    const double v = checked(frugal::to_string(r), value);
    // As in parse(): FLOPs, allocations and bytes are counted in whole units, and a limit that
    // parse() would reject could not round-trip through to_string().
    if (is_whole_quantity(r) && !detail::units_impl::is_whole(v)) {
      throw std::invalid_argument("frugal: limits: " + std::string(frugal::to_string(r)) +
                                  " must be a whole number, got " + detail::units_impl::shortest(v));
    }
    builtin_[index] = v;
    return *this;
  }

  /// Lifts the cap on `r` (its currency too, for cost).
  limits& clear(resource r) noexcept {
    const auto index = static_cast<std::size_t>(r);
    if (index < resource_count) builtin_[index].reset();
    if (r == resource::cost) currency_.clear();
    return *this;
  }

  /// The cap on `r`; empty when unlimited.
  [[nodiscard]] std::optional<double> get(resource r) const noexcept {
    auto index = static_cast<std::size_t>(r);
    if (index >= resource_count) return std::nullopt;
    return builtin_[index];
  }

  /// Builtin names resolve too, so get("wall") means what it says instead of silently missing.
  [[nodiscard]] std::optional<double> get(std::string_view unit) const noexcept {
    if (auto r = resource_from_name(unit)) return get(*r);
    for (const auto& entry : units_) {
      if (entry.first == unit) return entry.second;
    }
    return std::nullopt;
  }

  /// Whether `r` is capped.
  [[nodiscard]] bool has(resource r) const noexcept { return get(r).has_value(); }

  /// The user-unit caps, (name, cap) in the order they were first set.
  [[nodiscard]] const std::vector<std::pair<std::string, double>>& unit_limits() const noexcept {
    return units_;
  }

  /// Whether nothing is capped.
  [[nodiscard]] bool empty() const noexcept {
    if (!units_.empty()) return false;
    for (const auto& v : builtin_)
      if (v.has_value()) return false;
    return true;
  }

  ///@{
  /// "wall=1h30m,flops=2.5e12,peak_bytes=512MiB,cost=12.50USD,energy=50kJ,samples=1e6". A memory level may be "auto"
  /// (peak_bytes=auto, rss_bytes=auto): its limit is taken from the cgroup now (auto_limit()),
  /// read under `root` ("/", or a fake tree in tests), and is a number from then on, which is what
  /// to_string() writes. Throws std::invalid_argument naming the first bad entry (unknown or
  /// repeated key, empty key or value, bad number or suffix, negative value).
  [[nodiscard]] static limits parse(std::string_view text) { return parse(text, "/"); }

  [[nodiscard]] static limits parse(std::string_view text, std::string_view root) {
    namespace d = detail::units_impl;
    limits out;
    if (d::trim(text).empty()) return out;
    for (const auto& [entry, key, value] : split_key_values(text, "limits")) {
      if (key == frugal::to_string(resource::cost)) {
        const money m = parse_money(value, key);
        out.cost(m.amount, m.currency);
      } else if (auto r = resource_from_name(key)) {
        out.set(*r, value == "auto" ? auto_limit(*r, root) : parse_quantity(*r, value));
      } else if (auto problem = d::unit_name_problem(key)) {
        throw std::invalid_argument("frugal: limits: entry '" + std::string(entry) + "' has invalid key '" +
                                    std::string(key) + "': " + *problem);
      } else {
        out.units(std::string(key), parse_count(value, key));
      }
    }
    return out;
  }
  ///@}

  /// Builtins in enum order, then user units in insertion order. Numbers use the shortest text
  /// that reads back to the identical double, so parse(to_string()) == *this exactly.
  [[nodiscard]] std::string to_string() const {
    namespace d = detail::units_impl;
    std::string out;
    auto append = [&out](std::string_view key, const std::string& value) {
      if (!out.empty()) out += ',';
      out.append(key).append("=").append(value);
    };
    for (resource r : all_resources) {
      const auto& v = builtin_[static_cast<std::size_t>(r)];
      if (!v) continue;
      switch (kind_of(r)) {
        case quantity_kind::duration: append(frugal::to_string(r), d::canonical_duration(*v)); break;
        case quantity_kind::bytes: append(frugal::to_string(r), d::canonical_bytes(*v)); break;
        case quantity_kind::count: append(frugal::to_string(r), d::shortest(*v)); break;
        case quantity_kind::money: append(frugal::to_string(r), d::shortest(*v) + currency_); break;
        case quantity_kind::energy: append(frugal::to_string(r), d::shortest(*v) + "J"); break;
      }
    }
    for (const auto& [name, v] : units_) append(name, d::shortest(v));
    return out;
  }

  /// Same caps. User units compare as a set: the order they were added in does not change the
  /// budget.
  friend bool operator==(const limits& a, const limits& b) {
    if (a.builtin_ != b.builtin_ || a.currency_ != b.currency_ || a.units_.size() != b.units_.size()) return false;
    for (const auto& [name, v] : a.units_) {
      auto other = b.get(std::string_view(name));
      if (!other || *other != v) return false;
    }
    return true;
  }
  /// Not operator==.
  friend bool operator!=(const limits& a, const limits& b) { return !(a == b); }

 private:
  static double checked(std::string_view field, double value) {
    if (!std::isfinite(value) || value < 0) {
      throw std::invalid_argument("frugal: limits: " + std::string(field) + " must be finite and >= 0, got " +
                                  detail::units_impl::shortest(value));
    }
    // -0.0 passes the check but would print as "-0", which parse() rejects as negative.
    return value + 0.0;
  }

  std::array<std::optional<double>, resource_count> builtin_{};
  std::string currency_;  ///< the cost limit's, when it names one
  std::vector<std::pair<std::string, double>> units_;
};

}  // namespace frugal
