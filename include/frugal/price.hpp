/// @file
/// A price model: what the resources a budget measures cost in money. A cloud instance is billed
/// by the hour (charged from wall time), a shared cluster by the core-hour (from CPU time), a
/// metered service by the operation (from FLOPs). A budget with a price reads `cost` as that sum,
/// so cost is never charged on its own and always agrees with the resources it is derived from.
#pragma once

#include <frugal/units.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace frugal {

/// Prices per instance-hour of wall time, per core-hour of CPU time and per FLOP, in one
/// currency (an ISO 4217 code, or none). Every price is finite and >= 0; the setters throw
/// std::invalid_argument naming the field and the value, and return *this to chain:
/// `price{}.instance_hour(3.06).currency("USD")`.
class price {
 public:
  price() = default;

  /// Per hour of wall time (the budget's wall: the time one of its scopes was open).
  price& instance_hour(double amount) { return set(instance_hour_, "instance_hour", amount); }
  /// Per hour of CPU time (the budget's cpu: the budget then measures CPU, see budget::set_price).
  price& core_hour(double amount) { return set(core_hour_, "core_hour", amount); }
  /// Per floating-point operation counted (a metered service; usually tiny, e.g. 2e-15).
  price& per_flop(double amount) { return set(per_flop_, "flop", amount); }
  /// The currency the prices are in: an ISO 4217 code ("USD"), or "" for none.
  price& currency(std::string_view code) {
    if (!code.empty())
      if (auto problem = detail::units_impl::currency_problem(code))
        throw std::invalid_argument("frugal: price: currency: " + *problem);
    currency_ = std::string(code);
    return *this;
  }

  /// The price of an hour of wall time (0: not priced).
  [[nodiscard]] double instance_hour() const noexcept { return instance_hour_; }
  /// The price of an hour of CPU time (0: not priced).
  [[nodiscard]] double core_hour() const noexcept { return core_hour_; }
  /// The price of one FLOP (0: not priced).
  [[nodiscard]] double per_flop() const noexcept { return per_flop_; }
  /// The ISO 4217 code the prices are in; empty when none is named.
  [[nodiscard]] const std::string& currency() const noexcept { return currency_; }

  /// Whether nothing is priced (every price 0): such a price cannot measure a cost.
  [[nodiscard]] bool empty() const noexcept { return instance_hour_ == 0 && core_hour_ == 0 && per_flop_ == 0; }
  /// Whether the CPU time is priced, so a budget must measure it.
  [[nodiscard]] bool prices_cpu() const noexcept { return core_hour_ > 0; }

  /// What `wall_seconds` of wall, `cpu_seconds` of CPU and `flops` FLOPs cost.
  [[nodiscard]] double cost(double wall_seconds, double cpu_seconds, double flops) const noexcept {
    return wall_seconds / 3600.0 * instance_hour_ + cpu_seconds / 3600.0 * core_hour_ + flops * per_flop_;
  }

  /// The wall time `amount` of money buys at most: it pays for the instance-hours at least, so
  /// the wall cannot run longer (+infinity when wall time is not priced). The hard deadline
  /// holds a cost limit with it.
  [[nodiscard]] double wall_bound(double amount) const noexcept {
    if (!(instance_hour_ > 0)) return std::numeric_limits<double>::infinity();
    return amount / instance_hour_ * 3600.0;
  }

  ///@{
  /// "instance_hour=3.06USD,core_hour=0.04USD,flop=2e-15USD". Keys instance_hour, core_hour,
  /// flop, each at most once, at least one; each amount as parse_money() reads it; the currency
  /// named once is enough ("instance_hour=3.06USD,core_hour=0.04"), but every one named must be
  /// the same. A key may also be `currency=USD`. Throws std::invalid_argument naming the entry
  /// (the entries are split as limits::parse splits them).
  [[nodiscard]] static price parse(std::string_view text) {
    namespace d = detail::units_impl;
    price out;
    if (d::trim(text).empty()) throw std::invalid_argument("frugal: price: empty price (expected e.g. instance_hour=3.06USD)");
    for (const auto& kv : split_key_values(text, "price")) {
      const std::string key(kv.key);
      const std::string_view value = kv.value;
      std::string code;
      if (key == "currency") {
        code = std::string(value);
        if (auto problem = d::currency_problem(code)) throw std::invalid_argument("frugal: price: currency: " + *problem);
      } else {
        const money m = parse_money(value, "price " + key);
        code = m.currency;
        if (key == "instance_hour") out.instance_hour(m.amount);
        else if (key == "core_hour") out.core_hour(m.amount);
        else if (key == "flop") out.per_flop(m.amount);
        else
          throw std::invalid_argument("frugal: price: unknown key '" + key + "' in '" + std::string(text) +
                                      "' (keys: instance_hour, core_hour, flop, currency)");
      }
      if (!code.empty()) {
        if (!out.currency_.empty() && out.currency_ != code)
          throw std::invalid_argument("frugal: price: entry '" + std::string(kv.entry) + "' is in " + code +
                                      " but an earlier one is in " + out.currency_ + " (one currency per price)");
        out.currency_ = code;
      }
    }
    if (out.empty())
      throw std::invalid_argument("frugal: price: '" + std::string(text) +
                                  "' prices nothing (every price is 0): a cost could not be measured");
    return out;
  }
  ///@}

  /// The priced keys in parse()'s form, the currency on each amount: parse(to_string()) == *this.
  [[nodiscard]] std::string to_string() const {
    namespace d = detail::units_impl;
    std::string out;
    const auto append = [&](const char* key, double v) {
      if (v == 0) return;
      if (!out.empty()) out += ',';
      out.append(key).append("=").append(d::shortest(v)).append(currency_);
    };
    append("instance_hour", instance_hour_);
    append("core_hour", core_hour_);
    append("flop", per_flop_);
    if (out.empty() && !currency_.empty()) out = "currency=" + currency_;
    return out;
  }

  /// Same prices and currency.
  friend bool operator==(const price& a, const price& b) noexcept {
    return a.instance_hour_ == b.instance_hour_ && a.core_hour_ == b.core_hour_ && a.per_flop_ == b.per_flop_ &&
           a.currency_ == b.currency_;
  }
  /// Not operator==.
  friend bool operator!=(const price& a, const price& b) noexcept { return !(a == b); }

 private:
  price& set(double& slot, const char* field, double amount) {
    if (!std::isfinite(amount) || amount < 0)
      throw std::invalid_argument(std::string("frugal: price: ") + field + " must be finite and >= 0, got " +
                                  detail::units_impl::shortest(amount));
    slot = amount + 0.0;  // -0.0 would print as "-0", which parse() refuses
    return *this;
  }

  double instance_hour_ = 0;
  double core_hour_ = 0;
  double per_flop_ = 0;
  std::string currency_;
};

}  // namespace frugal
