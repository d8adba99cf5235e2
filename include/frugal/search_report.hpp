/// @file
/// A search's report: the trials and rungs of a frugal::search_result as a JSON section beside
/// the budget tree (write_json_report(out, parent, result)) and as text tables (print_report).
#pragma once

#include <frugal/detail/json.hpp>
#include <frugal/report.hpp>
#include <frugal/search.hpp>
#include <frugal/units.hpp>

#include <iomanip>
#include <ios>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace frugal {

namespace detail {
inline void json_optional_number(json_writer& w, const std::optional<double>& v) {
  if (v)
    w.value(*v);
  else
    w.null();
}
inline void json_config(json_writer& w, const configuration& c) {
  w.begin_object();
  for (const auto& [name, value] : c.values()) w.member(name, value);
  w.end_object();
}
inline std::string metric_text(const std::optional<double>& v) {
  if (!v) return "-";
  std::ostringstream s;
  s.precision(4);
  s << std::fixed << *v;
  return s.str();
}
inline std::string amount_text(const std::string& resource, double v) {
  if (const auto r = resource_from_name(resource)) {
    if (kind_of(*r) == quantity_kind::duration) return format_duration(v);
    if (kind_of(*r) == quantity_kind::bytes) return format_bytes(v);
  }
  return format_count(v);
}

inline void json_search(json_writer& w, const search_result& r) {
  w.begin_object();
  w.member("method", to_string(r.method)).member("eta", static_cast<std::uint64_t>(r.eta));
  w.member("resource", std::string_view(r.resource)).member("metric", std::string_view(r.metric));
  w.member("mode", to_string(r.mode)).member("concurrency", static_cast<std::uint64_t>(r.concurrency));
  w.member("unit", r.plan.unit).member("capacity", r.capacity).member("planned_cost", r.plan.cost(r.concurrency, r.resource == "wall"));
  w.member("used", r.used).member("parent_limit", r.parent_limit).member("parent_used", r.parent_used);
  w.member("inside_budget", r.parent_used <= r.parent_limit);
  w.member("completed", r.completed).member("stop", std::string_view(r.stop));
  w.key("best");
  if (const trial_record* b = r.best_trial()) {
    w.begin_object().member("trial", static_cast<std::uint64_t>(b->id));
    w.key("config");
    json_config(w, b->config);
    w.key("metric");
    json_optional_number(w, b->metric());
    w.member("resource", b->rungs.empty() ? 0.0 : b->rungs.back().used);
    w.member("budget", std::string_view(b->budget_path));
    w.end_object();
  } else {
    w.null();
  }
  w.key("rungs").begin_array();
  for (const rung_record& rr : r.rungs) {
    w.begin_object();
    w.member("bracket", static_cast<std::uint64_t>(rr.bracket)).member("s", static_cast<std::uint64_t>(r.plan.brackets[rr.bracket].s));
    w.member("rung", static_cast<std::uint64_t>(rr.rung)).member("planned_trials", static_cast<std::uint64_t>(rr.planned));
    w.member("trials_run", static_cast<std::uint64_t>(rr.run)).member("resource", rr.resource);
    w.member("promoted", static_cast<std::uint64_t>(rr.promoted));
    w.key("best_metric");
    json_optional_number(w, rr.best);
    w.key("ranking").begin_array();
    for (std::size_t id : rr.trials) w.value(static_cast<std::uint64_t>(id));
    w.end_array();
    w.end_object();
  }
  w.end_array();
  w.key("trials").begin_array();
  for (const trial_record& t : r.trials) {
    w.begin_object();
    w.member("id", static_cast<std::uint64_t>(t.id)).member("bracket", static_cast<std::uint64_t>(t.bracket));
    w.member("budget", std::string_view(t.budget_path));
    w.key("config");
    json_config(w, t.config);
    w.key("space_index");
    if (t.space_index)
      w.value(static_cast<std::uint64_t>(*t.space_index));
    else
      w.null();
    w.key("metric");
    json_optional_number(w, t.metric());
    w.key("error");
    if (t.error.empty())
      w.null();
    else
      w.value(std::string_view(t.error));
    w.key("rungs").begin_array();
    for (const trial_rung_record& x : t.rungs) {
      w.begin_object().member("rung", static_cast<std::uint64_t>(x.rung)).member("target", x.target);
      w.member("used", x.used).member("wall", x.wall);
      w.key("metric");
      json_optional_number(w, x.metric);
      w.member("metric_carried", x.metric_carried).member("stop", std::string_view(x.stop));
      w.end_object();
    }
    w.end_array();
    w.end_object();
  }
  w.end_array();
  w.end_object();
}
}  // namespace detail

/// Writes report.hpp's JSON document with the search's section. Its shape: report.hpp's document
/// for the parent budget (its tree holds every trial's budget), plus:
/// @verbatim
///   "search": {"method", "eta", "resource", "metric", "mode", "concurrency",
///     "unit" (the least resource a trial gets), "capacity" (what the plan was fitted to),
///     "planned_cost", "used", "parent_limit", "parent_used", "inside_budget", "completed", "stop",
///     "best": {"trial", "config": {<name>: value}, "metric", "resource", "budget"} or null,
///     "rungs": [{"bracket", "s", "rung", "planned_trials", "trials_run", "resource", "promoted",
///                "best_metric", "ranking": [trial ids, best first]}],
///     "trials": [{"id", "bracket", "budget", "config", "space_index", "metric", "error",
///                 "rungs": [{"rung", "target", "used", "wall", "metric", "metric_carried", "stop"}]}]}
/// @endverbatim
/// Missing and non-finite metrics are null.
inline void write_json_report(std::ostream& out, const budget& parent, const search_result& r) {
  detail::json_writer w(out);
  w.begin_object();
  detail::json_report_members(w, parent);
  w.key("search");
  detail::json_search(w, r);
  w.end_object();
  out << '\n';
}

/// write_json_report(out, parent, r) into a string.
[[nodiscard]] inline std::string json_report(const budget& parent, const search_result& r) {
  std::ostringstream s;
  write_json_report(s, parent, r);
  return s.str();
}

/// The search as text: what it spent and why it ended, the rungs, the trials, the best.
inline void print_report(std::ostream& out, const search_result& r) {
  const bool wall = r.resource == "wall";
  out << "search: " << to_string(r.method) << ", eta " << r.eta << ", " << r.trials.size() << " trials over "
      << r.plan.brackets.size() << (r.plan.brackets.size() == 1 ? " bracket" : " brackets") << "; metric "
      << r.metric << " (" << to_string(r.mode) << ")\n";
  out << "  " << r.resource << ": used " << detail::amount_text(r.resource, r.used) << " of "
      << detail::amount_text(r.resource, r.capacity) << " planned (" << detail::amount_text(r.resource, r.plan.cost(r.concurrency, wall))
      << " in the plan; parent " << detail::amount_text(r.resource, r.parent_used) << " of "
      << detail::amount_text(r.resource, r.parent_limit) << ", " << (r.parent_used <= r.parent_limit ? "inside" : "OVER")
      << ")\n";
  out << "  " << r.stop << "\n\n";
  std::vector<std::vector<std::string>> rows{{"bracket", "rung", "planned", "run", "resource", "promoted", "best"}};
  for (const rung_record& rr : r.rungs)
    rows.push_back({std::to_string(rr.bracket) + " (s=" + std::to_string(r.plan.brackets[rr.bracket].s) + ")",
                    std::to_string(rr.rung), std::to_string(rr.planned), std::to_string(rr.run),
                    detail::amount_text(r.resource, rr.resource), std::to_string(rr.promoted), detail::metric_text(rr.best)});
  detail::print_table(out, rows, "  ");
  out << '\n';
  rows = {{"trial", "bracket", "rungs", r.resource, "wall", r.metric, "configuration"}};
  for (const trial_record& t : r.trials) {
    if (t.rungs.empty()) continue;
    rows.push_back({std::to_string(t.id), std::to_string(t.bracket), std::to_string(t.rungs.size()),
                    detail::amount_text(r.resource, t.rungs.back().used), format_duration(t.rungs.back().wall),
                    t.error.empty() ? detail::metric_text(t.metric()) : "error", t.config.to_string()});
  }
  detail::print_table(out, rows, "  ");
  if (const trial_record* b = r.best_trial())
    out << "\n  best: trial " << b->id << " (" << b->config.to_string() << "), " << r.metric << " "
        << detail::metric_text(b->metric()) << '\n';
  else
    out << "\n  best: none (no trial reported " << r.metric << ")\n";
}

}  // namespace frugal
