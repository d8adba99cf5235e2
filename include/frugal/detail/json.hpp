// A small streaming JSON writer for frugal's reports and traces: correct string escaping,
// always valid UTF-8 (see write_string), locale-independent numbers, no DOM, no allocation
// beyond the output stream's.
#pragma once

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>
#include <system_error>

namespace frugal::detail {

class json_writer {
 public:
  explicit json_writer(std::ostream& out) noexcept : out_(out) {}

  json_writer& begin_object() { return open('{'); }
  json_writer& end_object() { return close('}'); }
  json_writer& begin_array() { return open('['); }
  json_writer& end_array() { return close(']'); }

  // The key of the next value inside an object.
  json_writer& key(std::string_view k) {
    separate();
    write_string(k);
    out_ << ':';
    after_key_ = true;
    return *this;
  }

  json_writer& value(std::string_view s) {
    separate();
    write_string(s);
    return *this;
  }
  json_writer& value(const char* s) { return value(std::string_view(s)); }
  json_writer& value(bool b) {
    separate();
    out_ << (b ? "true" : "false");
    return *this;
  }
  json_writer& value(double d) {
    separate();
    write_number(d);
    return *this;
  }
  json_writer& value(std::int64_t i) {
    separate();
    write_integer(i);
    return *this;
  }
  json_writer& value(std::uint64_t i) {
    separate();
    write_integer(i);
    return *this;
  }
  json_writer& value(int i) { return value(static_cast<std::int64_t>(i)); }
  json_writer& value(unsigned i) { return value(static_cast<std::uint64_t>(i)); }
  json_writer& null() {
    separate();
    out_ << "null";
    return *this;
  }

  template <class T>
  json_writer& member(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

 private:
  json_writer& open(char c) {
    separate();
    out_ << c;
    first_ = true;
    return *this;
  }
  json_writer& close(char c) {
    out_ << c;
    first_ = false;
    return *this;
  }
  // A comma before every element but the first of its container, and none after a key.
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_) out_ << ',';
    first_ = false;
  }

  // Names come from users and may be in any encoding, but JSON text must be UTF-8 (RFC 8259):
  // well-formed UTF-8 is written unchanged; every ill-formed sequence is replaced by U+FFFD,
  // one per maximal subpart (the Unicode Standard's recommended practice, ch. 3 "U+FFFD
  // Substitution of Maximal Subparts", as Python's errors="replace" and browsers do). So
  // "caf\xE9" is written as "caf" then U+FFFD (in UTF-8, EF BF BD), an overlong "\xC0\xAF" or
  // an encoded surrogate "\xED\xA0\x80" becomes one U+FFFD per byte, and a sequence cut short
  // (by the end of the name or by a byte that cannot continue it) becomes one U+FFFD.
  // Replacing rather than guessing an encoding (reading the bytes as Latin-1 would turn
  // Windows-1252 or Shift-JIS text into wrong letters) never shows a character the name did
  // not have. Control characters are escaped; nothing else is.
  void write_string(std::string_view s) {
    out_ << '"';
    std::size_t run = 0;  // start of the bytes not written yet, all to be copied unchanged
    auto flush = [&](std::size_t to) {
      if (to > run) out_.write(s.data() + run, static_cast<std::streamsize>(to - run));
    };
    std::size_t i = 0;
    while (i < s.size()) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0x80) {
        const std::size_t length = lead_of(c).length;
        const std::size_t valid = well_formed_prefix(s, i);
        if (length == 0 || valid < length) {  // ill-formed: the maximal subpart becomes U+FFFD
          flush(i);
          out_ << "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER, in UTF-8
          run = i + valid;
        }
        i += valid;
        continue;
      }
      const char* escape = nullptr;
      char buf[7] = {'\\', 'u', '0', '0', '0', '0', '\0'};
      switch (c) {
        case '"': escape = "\\\""; break;
        case '\\': escape = "\\\\"; break;
        case '\n': escape = "\\n"; break;
        case '\r': escape = "\\r"; break;
        case '\t': escape = "\\t"; break;
        default:
          if (c < 0x20) {
            static constexpr char hex[] = "0123456789abcdef";
            escape = buf;
            buf[4] = hex[c >> 4];
            buf[5] = hex[c & 0xf];
          }
      }
      if (escape) {
        flush(i);
        out_ << escape;
        run = i + 1;
      }
      ++i;
    }
    flush(s.size());
    out_ << '"';
  }

  // The second byte's range after a lead byte (Unicode Table 3-7, "Well-Formed UTF-8 Byte
  // Sequences"), which excludes overlong forms, surrogates and code points past U+10FFFF;
  // later bytes are 80..BF. Length 0: not a lead byte.
  struct utf8_lead {
    std::size_t length;
    unsigned char low, high;
  };
  static constexpr utf8_lead lead_of(unsigned char c) noexcept {
    if (c >= 0xC2 && c <= 0xDF) return {2, 0x80, 0xBF};
    if (c == 0xE0) return {3, 0xA0, 0xBF};
    if (c == 0xED) return {3, 0x80, 0x9F};
    if (c >= 0xE1 && c <= 0xEF) return {3, 0x80, 0xBF};
    if (c == 0xF0) return {4, 0x90, 0xBF};
    if (c >= 0xF1 && c <= 0xF3) return {4, 0x80, 0xBF};
    if (c == 0xF4) return {4, 0x80, 0x8F};
    return {0, 0, 0};
  }
  // How many bytes of s, from i, are a prefix of a well-formed sequence: the whole sequence,
  // or else the maximal subpart one U+FFFD replaces (at least 1 byte).
  static std::size_t well_formed_prefix(std::string_view s, std::size_t i) noexcept {
    const utf8_lead lead = lead_of(static_cast<unsigned char>(s[i]));
    if (lead.length == 0) return 1;
    std::size_t k = 1;
    for (; k < lead.length && i + k < s.size(); ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      const unsigned char low = k == 1 ? lead.low : 0x80, high = k == 1 ? lead.high : 0xBF;
      if (b < low || b > high) break;
    }
    return k;
  }

  // JSON has no NaN or infinity: they are written as null (an unlimited limit, for example).
  void write_number(double d) {
    if (!std::isfinite(d)) {
      out_ << "null";
      return;
    }
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, d);
    out_.write(buf, r.ptr - buf);
  }

  template <class I>
  void write_integer(I i) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, i);
    out_.write(buf, r.ptr - buf);
  }

  std::ostream& out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace frugal::detail
