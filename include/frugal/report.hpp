/// @file
/// Reports of a budget tree — used against limit per resource (levels marked apart from
/// consumables), the per-stage table (calls, wall time, share, FLOPs, allocations, units),
/// children — as aligned text, JSON, and CSV.
#pragma once

#include <frugal/budget.hpp>
#include <frugal/detail/json.hpp>
#include <frugal/units.hpp>
#include <frugal/version.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace frugal {

/// An amount of resource r of budget b in words, as format_quantity() writes it; money carries
/// its currency: the budget's price's, else its cost limit's ("0.0290 USD"). For messages and
/// reports that name what a budget used or may use.
[[nodiscard]] inline std::string format_amount(const budget& b, resource r, double v) {
  if (r != resource::cost) return format_quantity(r, v);
  const std::string currency = b.price().currency();
  return format_money(v, currency.empty() ? b.limits().currency() : currency);
}

namespace detail {

// Left-aligned first column, right-aligned numbers: the shape of every table frugal prints.
inline void print_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                        const std::string& indent) {
  if (rows.empty()) return;
  std::vector<std::size_t> width(rows.front().size(), 0);
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  for (const auto& row : rows) {
    out << indent;
    for (std::size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      if (c == 0)
        out << row[c] << pad;
      else
        out << "  " << pad << row[c];
    }
    out << '\n';
  }
}

inline std::string percent(double fraction) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(1);
  s << fraction * 100 << " %";
  return s.str();
}

// A level's row says so, and says when it stands above its ceiling: its "used %" is a height,
// not a share of the budget spent, and over 100 % it is crossed rather than exhausted.
inline std::string resource_label(resource r, const std::vector<std::string>& crossed) {
  std::string label(to_string(r));
  if (!is_level(r)) return label;
  const bool over = std::find(crossed.begin(), crossed.end(), label) != crossed.end();
  return label + (over ? " (level, crossed)" : " (level)");
}

// Whether the budget measures `r` at all: not measured is not zero (no allocation hooks, no
// /proc, no price, no RAPL counter), and reports say so rather than print "0 B".
[[nodiscard]] inline bool measures(const budget& b, resource r) {
  switch (r) {
    case resource::cpu: return b.measures_cpu();
    case resource::peak_bytes: return b.measures_peak();
    case resource::rss_bytes: return b.measures_rss();
    case resource::cost: return b.measures_cost();
    case resource::energy: return b.measures_energy();
    case resource::wall:
    case resource::flops:
    case resource::allocations:
    case resource::alloc_bytes: break;
  }
  return true;
}

inline void print_budget(std::ostream& out, const budget& b, const std::string& indent) {
  out << indent << "budget " << b.path() << '\n';
  const usage u = b.snapshot();
  const frugal::limits l = b.limits();
  const std::vector<std::string> crossed = crossed_levels(u, l);
  std::vector<std::vector<std::string>> rows{{"resource", "used", "limit", "used %"}};
  for (resource r : all_resources) {
    const auto lim = l.get(r);
    const bool measured = measures(b, r);
    if (r == resource::cpu && !measured) continue;
    // The resident set is the process's, the same in every budget of the tree: a row only
    // where a budget limits it (the JSON report always has it).
    if (r == resource::rss_bytes && !lim) continue;
    // Cost and energy: a row where limited or measured (a price, a RAPL counter).
    if ((r == resource::cost || r == resource::energy) && !lim && !measured) continue;
    if (!lim && u[r] == 0 && r != resource::wall && !(r == resource::cost && measured)) continue;
    rows.push_back({resource_label(r, crossed), measured ? format_amount(b, r, u[r]) : "not measured",
                    lim ? format_amount(b, r, *lim) : "-", lim && measured ? percent(fraction_of(u[r], *lim)) : "-"});
  }
  for (const auto& [unit, value] : u.units) {
    const auto lim = l.get(unit);
    rows.push_back({unit, format_count(value), lim ? format_count(*lim) : "-",
                    lim ? percent(fraction_of(value, *lim)) : "-"});
  }
  for (const auto& [unit, lim] : l.unit_limits())
    if (u.of(unit) == 0) rows.push_back({unit, "0", format_count(lim), percent(fraction_of(0, lim))});
  print_table(out, rows, indent + "  ");
  // A root says once why there is no energy figure: the counter is the machine's.
  if (!b.parent() && !b.measures_energy()) out << indent << "  energy: not measured: " << b.energy_unavailable() << '\n';
  if (b.resumed()) {
    out << indent << "  resumed: " << format_duration(b.carried()[resource::wall]) << " of the wall used in earlier processes";
    if (!b.parent()) out << "; " << format_duration(b.downtime().count()) << " between them (downtime, not charged)";
    out << '\n';
  }

  const std::vector<stage_stats> stages = b.stages();
  if (!stages.empty()) {
    const double wall = u[resource::wall];
    // Allocation columns only where something counted them (the allocation hooks).
    bool allocations = false;
    bool peaks = false;
    for (const stage_stats& s : stages) {
      allocations = allocations || s.allocations > 0;
      peaks = peaks || s.peak_rise_bytes > 0;
    }
    std::vector<std::vector<std::string>> st{{"stage", "calls", "wall", "share", "flops"}};
    if (allocations) {
      st.front().push_back(std::string("allocations"));
      st.front().push_back(std::string("alloc bytes"));
    }
    if (peaks) st.front().push_back(std::string("peak rise"));  // above the heap when the scope opened
    for (const auto& s : stages) {
      st.push_back({s.name, std::to_string(s.calls), format_duration(s.wall_seconds),
                    wall > 0 ? percent(s.wall_seconds / wall) : "-", format_count(static_cast<double>(s.flops))});
      if (allocations) {
        st.back().push_back(format_count(static_cast<double>(s.allocations)));
        st.back().push_back(format_bytes(static_cast<double>(s.alloc_bytes)));
      }
      if (peaks) st.back().push_back(format_bytes(static_cast<double>(s.peak_rise_bytes)));
    }
    out << '\n';
    print_table(out, st, indent + "  ");
  }
  for (const budget* c : b.children()) {
    out << '\n';
    print_budget(out, *c, indent + "  ");
  }
}
}  // namespace detail

/// The budget, its stages and (indented) its children, as aligned text tables.
inline void print_report(std::ostream& out, const budget& b) { detail::print_budget(out, b, ""); }

/// print_report() into a string.
[[nodiscard]] inline std::string text_report(const budget& b) {
  std::ostringstream s;
  print_report(s, b);
  return s.str();
}

namespace detail {

[[nodiscard]] constexpr std::string_view unit_of_measure(resource r) noexcept {
  switch (kind_of(r)) {
    case quantity_kind::duration: return "seconds";
    case quantity_kind::bytes: return "bytes";
    case quantity_kind::money: return "money";
    case quantity_kind::energy: return "joules";
    case quantity_kind::count: break;
  }
  return "count";
}

// Whole amounts are written as integers, so FLOP and byte counts read back exactly in tools
// that parse JSON numbers as 64-bit integers (CMake's string(JSON), jq); the rest as doubles.
inline void json_amount(json_writer& w, double v) {
  if (std::isfinite(v) && v >= 0 && v == std::floor(v) && v < 9007199254740992.0)
    w.value(static_cast<std::uint64_t>(v));
  else
    w.value(v);
}

inline void json_names(json_writer& w, const std::vector<std::string>& names) {
  w.begin_array();
  for (const std::string& name : names) w.value(std::string_view(name));
  w.end_array();
}

inline void json_units(json_writer& w, const std::vector<std::pair<std::string, double>>& units) {
  w.begin_object();
  for (const auto& [name, value] : units) {
    w.key(name);
    json_amount(w, value);
  }
  w.end_object();
}

inline void json_budget(json_writer& w, const budget& b) {
  const usage u = b.snapshot();
  const frugal::limits l = b.limits();
  w.begin_object().member("name", std::string_view(b.name())).member("path", std::string_view(b.path()));

  w.key("limits").begin_object();
  for (resource r : all_resources) {
    w.key(to_string(r));
    if (const auto lim = l.get(r))
      json_amount(w, *lim);
    else
      w.null();
  }
  w.key("units");
  json_units(w, l.unit_limits());
  w.key("currency");
  if (l.currency().empty())
    w.null();
  else
    w.value(std::string_view(l.currency()));
  w.end_object();

  // The price cost is derived from (null: none, and cost is not measured).
  w.key("price");
  if (const frugal::price p = b.price(); !p.empty()) {
    w.begin_object().member("instance_hour", p.instance_hour()).member("core_hour", p.core_hour());
    w.member("flop", p.per_flop()).key("currency");
    if (p.currency().empty())
      w.null();
    else
      w.value(std::string_view(p.currency()));
    w.end_object();
  } else {
    w.null();
  }

  // Every charged unit, and every limited one (at 0 if nothing was charged yet).
  std::vector<std::pair<std::string, double>> units = u.units;
  for (const auto& limited : l.unit_limits()) {
    const std::string& name = limited.first;
    bool charged = false;
    for (const auto& e : units)
      if (e.first == name) {
        charged = true;
        break;
      }
    if (!charged) units.emplace_back(name, 0.0);
  }
  w.key("used").begin_object();
  for (resource r : all_resources) {
    w.key(to_string(r));
    if (!measures(b, r))
      w.null();  // not measured, which is not the same as zero
    else
      json_amount(w, u[r]);
  }
  w.key("units");
  json_units(w, units);
  w.end_object();
  // Why used.energy is null: the counter's reason (no RAPL, permission denied); null when measured.
  w.key("energy_unavailable");
  if (const std::string why = b.energy_unavailable(); !why.empty())
    w.value(std::string_view(why));
  else
    w.null();

  // The budget's own aggregates (budget.hpp), applied to the reading written under "used", so
  // the figures agree with it and with exhausted_resources(), crossed_levels(), fraction_used().
  w.key("exhausted");
  json_names(w, exhausted_consumables(u, l));
  w.key("levels_crossed");
  json_names(w, crossed_levels(u, l));
  w.key("fraction_used");
  w.value(consumed_fraction(u, l));

  const double wall = u[resource::wall];
  w.key("stages").begin_array();
  for (const stage_stats& s : b.stages()) {
    w.begin_object().member("name", std::string_view(s.name)).member("calls", s.calls);
    w.member("wall", s.wall_seconds);
    w.key("share");
    if (wall > 0)
      w.value(s.wall_seconds / wall);
    else
      w.null();
    w.member("flops", s.flops).member("allocations", s.allocations).member("alloc_bytes", s.alloc_bytes);
    w.member("peak_rise_bytes", s.peak_rise_bytes);
    w.key("units");
    json_units(w, s.units);
    w.end_object();
  }
  w.end_array();

  // A run resumed from an earlier process (state.hpp): what "used" includes from before, and
  // the time between the processes (the whole tree's, kept by its root), charged to nothing;
  // null for a run of one process.
  w.key("resumed");
  if (b.resumed()) {
    const budget* root = &b;
    while (root->parent()) root = root->parent();
    const usage c = b.carried();
    w.begin_object().member("downtime", root->downtime().count());
    w.key("carried").begin_object();
    for (resource r : all_resources) {
      w.key(to_string(r));
      json_amount(w, c[r]);
    }
    w.key("units");
    json_units(w, c.units);
    w.end_object().end_object();
  } else {
    w.null();
  }

  w.key("children").begin_array();
  for (const budget* c : b.children()) json_budget(w, *c);
  w.end_array();
  w.end_object();
}

// RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled.
inline std::string csv_field(std::string_view text) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

inline std::string csv_number(double v) {
  std::ostringstream s;
  json_writer w(s);  // the same locale-independent, round-trip numbers as the JSON report
  json_amount(w, v);
  return s.str();
}

inline void collect_stage_units(const budget& b, std::vector<std::string>& names) {
  for (const stage_stats& s : b.stages())
    for (const auto& [name, value] : s.units)
      if (std::find(names.cbegin(), names.cend(), name) == names.cend()) names.push_back(name);
  for (const budget* c : b.children()) collect_stage_units(*c, names);
}

inline void csv_stages(std::ostream& out, const budget& b, const std::vector<std::string>& units) {
  const double wall = b.used(resource::wall);
  for (const stage_stats& s : b.stages()) {
    out << csv_field(b.path()) << ',' << csv_field(s.name) << ',' << s.calls << ',' << csv_number(s.wall_seconds)
        << ',' << (wall > 0 ? csv_number(s.wall_seconds / wall) : std::string()) << ',' << s.flops << ','
        << s.allocations << ',' << s.alloc_bytes << ',' << s.peak_rise_bytes;
    for (const std::string& u : units) out << ',' << csv_number(s.units_of(u));
    out << '\n';
  }
  for (const budget* c : b.children()) csv_stages(out, *c, units);
}

}  // namespace detail

namespace detail {
// The report's members: version, units of measure, resource kinds, the budget tree. A report
// with more sections (controller_report.hpp) writes these first, then its own.
inline void json_report_members(json_writer& w, const budget& b) {
  w.member("frugal_version", version_string);
  w.key("units_of_measure").begin_object();
  for (resource r : all_resources) w.member(to_string(r), unit_of_measure(r));
  w.end_object();
  w.key("resource_kinds").begin_object();
  for (resource r : all_resources) w.member(to_string(r), to_string(kind_of_resource(r)));
  w.end_object();
  w.key("budget");
  json_budget(w, b);
}
}  // namespace detail

/// Writes the budget tree as one JSON document. Its shape:
/// @verbatim
///   {"frugal_version": "0.1.0",
///    "units_of_measure": {"wall": "seconds", "flops": "count", "peak_bytes": "bytes", ...},
///    "resource_kinds": {"wall": "consumable", ..., "peak_bytes": "level", "rss_bytes": "level"},
///                      (user units: consumable)
///    "budget": {"name", "path",
///               "limits": {<resource>: number or null (unlimited), ..., "units": {<unit>: number},
///                          "currency": the cost limit's ISO 4217 code or null},
///               "price":  {"instance_hour", "core_hour", "flop", "currency"} or null (no price),
///               "used":   {<resource>: number (cpu, peak_bytes, rss_bytes, cost, energy: null when
///                          not measured), ..., "units": {...}},   (a level's "used" is the height
///                          it reached; rss_bytes: the highest resident set read, this one included;
///                          cost: the price applied to this reading's wall, cpu and flops)
///               "energy_unavailable": why energy is not measured, or null,
///               "exhausted": [<consumable resource or unit at its limit>, ...],
///               "levels_crossed": [<level above its limit>, ...],
///               "fraction_used": number (the largest over the limited consumables, as
///                                budget::fraction_used(); levels never count),
///               "stages": [{"name", "calls", "wall", "share" (of the budget's wall, or null),
///                           "flops", "allocations", "alloc_bytes",
///                           "peak_rise_bytes" (the largest rise of the live heap within one
///                             scope of the stage: not the peak_bytes level),
///                           "units": {...}}, ...],
///               "children": [<budget>, ...]}}
/// @endverbatim
/// Stage charges are inclusive (a stage includes the scopes opened inside it), so a budget's
/// totals equal the sum of its outermost stages' (plus work charged outside any stage's scope).
/// A key means one thing wherever it appears: "peak_bytes" is always the level (the live heap),
/// "rss_bytes" always the resident set. Written with a newline after it.
inline void write_json_report(std::ostream& out, const budget& b) {
  detail::json_writer w(out);
  w.begin_object();
  detail::json_report_members(w, b);
  w.end_object();
  out << '\n';
}

/// write_json_report() into a string.
[[nodiscard]] inline std::string json_report(const budget& b) {
  std::ostringstream s;
  write_json_report(s, b);
  return s.str();
}

/// Writes every stage of the budget and of its descendants as CSV, one row each. Columns:
/// @verbatim
///   budget,stage,calls,wall_s,share,flops,allocations,alloc_bytes,peak_rise_bytes[,<unit>...]
/// @endverbatim
/// budget is the path ("train/eval"); share is of that budget's wall time (empty when it has
/// none); peak_rise_bytes is the largest rise of the live heap within one scope of the stage
/// (stage_stats::peak_rise_bytes); one column per user unit charged to any stage of the tree.
inline void write_stages_csv(std::ostream& out, const budget& b) {
  std::vector<std::string> units;
  detail::collect_stage_units(b, units);
  out << "budget,stage,calls,wall_s,share,flops,allocations,alloc_bytes,peak_rise_bytes";
  for (const std::string& u : units) out << ',' << detail::csv_field(u);
  out << '\n';
  detail::csv_stages(out, b, units);
}

/// write_stages_csv() into a string.
[[nodiscard]] inline std::string stages_csv(const budget& b) {
  std::ostringstream s;
  write_stages_csv(s, b);
  return s.str();
}

}  // namespace frugal
