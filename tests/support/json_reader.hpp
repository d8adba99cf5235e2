// A strict JSON reader (RFC 8259) for tests that read frugal's JSON output back: reports,
// Chrome traces. Strings must be well-formed UTF-8 (Unicode Table 3-7: no overlong forms, no
// encoded surrogates, nothing past U+10FFFF, no truncated sequence); \u escapes are decoded
// to UTF-8, surrogate pairs included, a lone surrogate escape is an error. Test support only;
// frugal itself only writes JSON.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace frugal_test {

struct json {
  enum class kind { null, boolean, number, string, array, object };
  kind type = kind::null;
  bool boolean = false;
  double number = 0;
  std::string text;
  std::vector<json> items;
  std::vector<std::pair<std::string, json>> members;

  [[nodiscard]] const json& operator[](std::string_view key) const {
    if (type != kind::object) throw std::runtime_error("not an object, looking for '" + std::string(key) + "'");
    for (const auto& [k, v] : members)
      if (k == key) return v;
    throw std::runtime_error("no member '" + std::string(key) + "'");
  }
  [[nodiscard]] const json& operator[](std::size_t i) const {
    if (type != kind::array || i >= items.size()) throw std::runtime_error("no element " + std::to_string(i));
    return items[i];
  }
  [[nodiscard]] bool is_null() const { return type == kind::null; }
  [[nodiscard]] double num() const {
    if (type != kind::number) throw std::runtime_error("not a number");
    return number;
  }
  [[nodiscard]] const std::string& str() const {
    if (type != kind::string) throw std::runtime_error("not a string");
    return text;
  }
};

class json_reader {
 public:
  static json parse(std::string_view s) {
    json_reader r(s);
    json v = r.value();
    r.space();
    if (r.at_ != s.size()) r.fail("trailing text");
    return v;
  }

 private:
  explicit json_reader(std::string_view s) : s_(s) {}
  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error("JSON error at " + std::to_string(at_) + ": " + why);
  }
  void space() {
    while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\n' || s_[at_] == '\r' || s_[at_] == '\t')) ++at_;
  }
  bool take(char c) {
    space();
    if (at_ < s_.size() && s_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!take(c)) fail(std::string("expected '") + c + "'");
  }
  bool literal(std::string_view word) {
    if (s_.substr(at_, word.size()) != word) return false;
    at_ += word.size();
    return true;
  }
  json value() {
    space();
    if (at_ >= s_.size()) fail("unexpected end");
    json v;
    const char c = s_[at_];
    if (c == '{') {
      ++at_;
      v.type = json::kind::object;
      if (take('}')) return v;
      do {
        space();
        std::string key = string();
        expect(':');
        v.members.emplace_back(std::move(key), value());
      } while (take(','));
      expect('}');
    } else if (c == '[') {
      ++at_;
      v.type = json::kind::array;
      if (take(']')) return v;
      do v.items.push_back(value());
      while (take(','));
      expect(']');
    } else if (c == '"') {
      v.type = json::kind::string;
      v.text = string();
    } else if (literal("null")) {
      v.type = json::kind::null;
    } else if (literal("true") || literal("false")) {
      v.type = json::kind::boolean;
      v.boolean = s_[at_ - 1] == 'e' && s_[at_ - 2] == 'u';
    } else {
      v.type = json::kind::number;
      v.number = number();
    }
    return v;
  }
  std::string string() {
    if (at_ >= s_.size() || s_[at_] != '"') fail("expected a string");
    ++at_;
    std::string out;
    for (;;) {
      if (at_ >= s_.size()) fail("unterminated string");
      const char c = s_[at_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (static_cast<unsigned char>(c) >= 0x80) {
        --at_;
        utf8_sequence(out);
        continue;
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= s_.size()) fail("unterminated escape");
      const char e = s_[at_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned long cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("lone low surrogate escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!literal("\\u")) fail("high surrogate escape without a low one");
            const unsigned long low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("high surrogate escape without a low one");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape \\") + e);
      }
    }
  }
  unsigned long hex4() {
    if (at_ + 4 > s_.size()) fail("short \\u escape");
    unsigned long cp = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[at_++];
      cp <<= 4;
      if (h >= '0' && h <= '9') {
        cp |= static_cast<unsigned long>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        cp |= static_cast<unsigned long>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        cp |= static_cast<unsigned long>(h - 'A' + 10);
      } else {
        fail("bad hex digit in a \\u escape");
      }
    }
    return cp;
  }
  static void append_utf8(std::string& out, unsigned long cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  // One well-formed multi-byte UTF-8 sequence at at_ (Unicode Table 3-7), appended to out.
  void utf8_sequence(std::string& out) {
    const auto lead = static_cast<unsigned char>(s_[at_]);
    std::size_t length = 0;
    unsigned char low = 0x80, high = 0xBF;  // the second byte's range
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;   // no overlong form
      if (lead == 0xED) high = 0x9F;  // no surrogate
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;   // no overlong form
      if (lead == 0xF4) high = 0x8F;  // nothing past U+10FFFF
    } else {
      fail("invalid UTF-8 lead byte");
    }
    if (at_ + length > s_.size()) fail("truncated UTF-8 sequence");
    for (std::size_t k = 1; k < length; ++k) {
      const auto b = static_cast<unsigned char>(s_[at_ + k]);
      if (b < (k == 1 ? low : 0x80) || b > (k == 1 ? high : 0xBF)) fail("ill-formed UTF-8 sequence");
    }
    out.append(s_.substr(at_, length));
    at_ += length;
  }
  double number() {
    const std::size_t start = at_;
    auto digits = [&] {
      const std::size_t from = at_;
      while (at_ < s_.size() && s_[at_] >= '0' && s_[at_] <= '9') ++at_;
      return at_ - from;
    };
    if (at_ < s_.size() && s_[at_] == '-') ++at_;
    if (at_ < s_.size() && s_[at_] == '0')
      ++at_;
    else if (digits() == 0)
      fail("expected a value");
    if (at_ < s_.size() && s_[at_] == '.') {
      ++at_;
      if (digits() == 0) fail("digits expected after '.'");
    }
    if (at_ < s_.size() && (s_[at_] == 'e' || s_[at_] == 'E')) {
      ++at_;
      if (at_ < s_.size() && (s_[at_] == '+' || s_[at_] == '-')) ++at_;
      if (digits() == 0) fail("digits expected in the exponent");
    }
    return std::strtod(std::string(s_.substr(start, at_ - start)).c_str(), nullptr);
  }

  std::string_view s_;
  std::size_t at_ = 0;
};

}  // namespace frugal_test
