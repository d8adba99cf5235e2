// A small streaming JSON writer for frugal's reports and traces: correct string escaping,
// locale-independent numbers, no DOM, no allocation beyond the output stream's.
#pragma once

#include <charconv>
#include <cmath>
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

  void write_string(std::string_view s) {
    out_ << '"';
    for (char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      switch (c) {
        case '"': out_ << "\\\""; break;
        case '\\': out_ << "\\\\"; break;
        case '\n': out_ << "\\n"; break;
        case '\r': out_ << "\\r"; break;
        case '\t': out_ << "\\t"; break;
        default:
          if (c < 0x20) {
            static constexpr char hex[] = "0123456789abcdef";
            out_ << "\\u00" << hex[c >> 4] << hex[c & 0xf];
          } else {
            out_ << ch;
          }
      }
    }
    out_ << '"';
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
