// Human-readable reports of a budget tree: used against limit per resource, and the per-stage
// table (calls, wall time, share of the budget's wall time, FLOPs, allocations, units).
#pragma once

#include <frugal/budget.hpp>
#include <frugal/units.hpp>

#include <algorithm>
#include <cstddef>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace frugal {
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

inline void print_budget(std::ostream& out, const budget& b, const std::string& indent) {
  out << indent << "budget " << b.path() << '\n';
  const usage u = b.snapshot();
  const frugal::limits l = b.limits();
  std::vector<std::vector<std::string>> rows{{"resource", "used", "limit", "used %"}};
  for (resource r : all_resources) {
    const auto lim = l.get(r);
    if (r == resource::cpu && !b.measures_cpu()) continue;
    if (!lim && u[r] == 0 && r != resource::wall) continue;
    rows.push_back({std::string(to_string(r)), format_quantity(r, u[r]), lim ? format_quantity(r, *lim) : "-",
                    lim ? percent(*lim > 0 ? u[r] / *lim : 1.0) : "-"});
  }
  for (const auto& [unit, value] : u.units) {
    const auto lim = l.get(unit);
    rows.push_back({unit, format_count(value), lim ? format_count(*lim) : "-",
                    lim ? percent(*lim > 0 ? value / *lim : 1.0) : "-"});
  }
  for (const auto& [unit, lim] : l.unit_limits())
    if (u.of(unit) == 0) rows.push_back({unit, "0", format_count(lim), percent(lim > 0 ? 0.0 : 1.0)});
  print_table(out, rows, indent + "  ");

  const std::vector<stage_stats> stages = b.stages();
  if (!stages.empty()) {
    const double wall = u[resource::wall];
    // Allocation columns only where something counted them (the allocation hooks).
    const bool allocations = std::any_of(stages.begin(), stages.end(), [](const stage_stats& s) { return s.allocations > 0; });
    std::vector<std::vector<std::string>> st{{"stage", "calls", "wall", "share", "flops"}};
    if (allocations) {
      st.front().emplace_back("allocations");
      st.front().emplace_back("alloc bytes");
    }
    for (const auto& s : stages) {
      st.push_back({s.name, std::to_string(s.calls), format_duration(s.wall_seconds),
                    wall > 0 ? percent(s.wall_seconds / wall) : "-", format_count(static_cast<double>(s.flops))});
      if (allocations) {
        st.back().push_back(format_count(static_cast<double>(s.allocations)));
        st.back().push_back(format_bytes(static_cast<double>(s.alloc_bytes)));
      }
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

// The budget, its stages and (indented) its children, as aligned text tables.
inline void print_report(std::ostream& out, const budget& b) { detail::print_budget(out, b, ""); }

[[nodiscard]] inline std::string text_report(const budget& b) {
  std::ostringstream s;
  print_report(s, b);
  return s.str();
}

}  // namespace frugal
