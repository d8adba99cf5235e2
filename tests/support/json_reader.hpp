// Reading frugal's JSON output back in tests (reports, Chrome traces, the search report) with
// nlohmann_json, a well-kept strict parser (RFC 8259; strings must be well-formed UTF-8 --
// Unicode Table 3-7: no overlong forms, no encoded surrogates, nothing past U+10FFFF, no
// truncated sequence -- and a lone surrogate escape is an error), into a small tree whose
// accessors throw on a missing member or a wrong type (nlohmann's const operator[] on a missing
// key is undefined behaviour, which a failing test must not hit). Members keep their order.
// Test support only; frugal itself only writes JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
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
  // The document, or std::runtime_error with nlohmann_json's words for what is wrong and where.
  static json parse(std::string_view s) {
    try {
      return convert(nlohmann::ordered_json::parse(s.begin(), s.end()));
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(std::string("invalid JSON: ") + e.what());
    }
  }

 private:
  static json convert(const nlohmann::ordered_json& j) {
    json v;
    switch (j.type()) {
      case nlohmann::ordered_json::value_t::null: break;
      case nlohmann::ordered_json::value_t::boolean:
        v.type = json::kind::boolean;
        v.boolean = j.get<bool>();
        break;
      case nlohmann::ordered_json::value_t::number_integer:
      case nlohmann::ordered_json::value_t::number_unsigned:
      case nlohmann::ordered_json::value_t::number_float:
        v.type = json::kind::number;
        v.number = j.get<double>();
        break;
      case nlohmann::ordered_json::value_t::string:
        v.type = json::kind::string;
        v.text = j.get<std::string>();
        break;
      case nlohmann::ordered_json::value_t::array:
        v.type = json::kind::array;
        for (const auto& item : j) v.items.push_back(convert(item));
        break;
      case nlohmann::ordered_json::value_t::object:
        v.type = json::kind::object;
        for (const auto& [key, value] : j.items()) v.members.emplace_back(key, convert(value));
        break;
      default: throw std::runtime_error("unexpected JSON value (binary or discarded)");
    }
    return v;
  }
};

}  // namespace frugal_test
