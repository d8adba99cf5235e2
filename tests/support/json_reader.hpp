// A strict JSON reader (RFC 8259) for tests that read frugal's JSON output back: reports,
// Chrome traces. Test support only; frugal itself only writes JSON.
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
          if (at_ + 4 > s_.size()) fail("short \\u escape");
          const unsigned long cp = std::stoul(std::string(s_.substr(at_, 4)), nullptr, 16);
          at_ += 4;
          if (cp >= 0x80) fail("only ASCII \\u escapes are expected here");
          out += static_cast<char>(cp);
          break;
        }
        default: fail(std::string("bad escape \\") + e);
      }
    }
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
