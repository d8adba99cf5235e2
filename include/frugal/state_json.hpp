/// @file
/// The state document: a run's state (state.hpp) as versioned, human-readable JSON, saved
/// atomically and read back with every field checked. Needs nlohmann_json (CMake: frugal::state_json).
///
///   frugal::save_state(dir / "state.json", run, ctl);     // at each epoch's end and at the stop
///   ...                                                   // a new process, same budget and options:
///   if (std::filesystem::exists(dir / "state.json")) frugal::resume(dir / "state.json", run, ctl);
///
/// The document: {"format": "frugal-state", "version": 1, "frugal_version", "saved_at" (UTC, for
/// people), "saved_at_unix_ns" (what is read), "downtime" (seconds), "budget": {...},
/// "controller": {...}} -- the keys are state.hpp's field names. Numbers are written so they read
/// back exactly (nlohmann_json writes the shortest text that round-trips a double); a non-finite
/// metric is written as the string "nan", "inf" or "-inf". A document that is not JSON, cut short,
/// not a frugal state ("format"), of a newer version, or with a field missing, of the wrong type or
/// out of range is refused with a frugal::state_error naming the file and the field's path:
///   frugal: state file 'run/state.json': controller.steps: expected a non-negative integer, got "abc"
/// and nothing is changed: the whole document is read and checked before anything is applied.
#pragma once

#include <frugal/budget.hpp>
#include <frugal/controller.hpp>
#include <frugal/durable_file.hpp>
#include <frugal/state.hpp>
#include <frugal/units.hpp>
#include <frugal/version.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace frugal {
namespace detail::state_json {

using json = nlohmann::ordered_json;  // keys in the order written: "format" and "version" first

inline constexpr std::string_view format_name = "frugal-state";

inline constexpr std::array<stop_reason, 9> all_stop_reasons = {
    stop_reason::none,       stop_reason::budget_exhausted, stop_reason::forecast,
    stop_reason::early_stopping, stop_reason::diverged,     stop_reason::non_finite,
    stop_reason::deadline,   stop_reason::user,             stop_reason::signal};
inline constexpr std::array<early_stop_verdict, 7> all_verdicts = {
    early_stop_verdict::improved,      early_stop_verdict::no_improvement, early_stop_verdict::stop_patience,
    early_stop_verdict::stop_threshold, early_stop_verdict::stop_diverged, early_stop_verdict::stop_non_finite,
    early_stop_verdict::warming_up};
inline constexpr std::array<forecast_horizon, 3> all_horizons = {forecast_horizon::next_step, forecast_horizon::epoch_end,
                                                                 forecast_horizon::planned_work};

// --- writing ---

// A number; a non-finite one (a NaN metric) as a string, which JSON has no number for.
inline json number(double v) {
  if (std::isfinite(v)) return v;
  if (std::isnan(v)) return "nan";
  return v > 0 ? "inf" : "-inf";
}
template <class T>
json optional(const std::optional<T>& v) {
  if (!v) return nullptr;
  if constexpr (std::is_floating_point_v<T>)
    return number(*v);
  else
    return *v;
}
inline json numbers(const std::vector<double>& v) {
  json out = json::array();
  for (double x : v) out.push_back(number(x));
  return out;
}
inline json units(const std::vector<std::pair<std::string, double>>& v) {
  json out = json::object();
  for (const auto& [name, value] : v) out[name] = number(value);
  return out;
}

inline json write(const cost_stats_state& s) {
  return json{{"count", s.count}, {"last", number(s.last)}, {"outliers", s.outliers},
              {"outlier_counted", optional(s.outlier_counted)}, {"recent", numbers(s.recent)}};
}
inline json write(const cost_model_state& s) {
  json sizes = json::array();
  for (const auto& e : s.sizes) sizes.push_back(json{{"batch", e.batch}, {"last_used", e.last_used}, {"stats", write(e.stats)}});
  return json{{"tick", s.tick}, {"sizes", std::move(sizes)}};
}
inline json write(const memory_model_state& s) {
  json sizes = json::array();
  for (const auto& e : s.sizes) sizes.push_back(json{{"size", e.size}, {"last_used", e.last_used}, {"peaks", numbers(e.peaks)}});
  return json{{"tick", s.tick}, {"last_run", s.last_run}, {"base_hint", optional(s.base_hint)}, {"sizes", std::move(sizes)}};
}
inline json write(const resource_state& r) {
  json overrun = json::object();
  for (forecast_horizon h : all_horizons) overrun[std::string(to_string(h))] = r.overrun[static_cast<std::size_t>(h)];
  return json{{"name", r.name},
              {"limit", optional(r.limit)},
              {"last_cost", number(r.last_cost)},
              {"height", number(r.height)},
              {"seen", number(r.seen)},
              {"crossed", r.crossed},
              {"next_threshold", r.next_threshold},
              {"exhausted_fired", r.exhausted_fired},
              {"overrun", std::move(overrun)},
              {"step", write(r.step)},
              {"memory", write(r.memory)},
              {"epoch_end", write(r.epoch_end)},
              {"end_in_step_rate", write(r.end_in_step_rate)}};
}
inline json write(const compression_rule_state& r, bool quantize) {
  json per_sample = json::array();
  for (const auto& v : r.per_sample) per_sample.push_back(numbers(v));
  json out{{"rule", r.rule},          {"fired", optional(r.fired)},   {"disabled", r.disabled},
           {"measuring", r.measuring}, {"measure_until", r.measure_until}, {"record", r.record},
           {"resources", r.resources}, {"per_sample", std::move(per_sample)}};
  if (quantize) out["bits"] = r.bits;
  return out;
}
inline json write(const controller_history& h) {
  json decisions = json::array();
  for (const decision_record& d : h.decisions)
    decisions.push_back(json{{"step", d.step_index}, {"epoch", d.epoch_index}, {"at", d.at}, {"actions", d.actions},
                             {"cause", std::string(to_string(d.cause))}, {"reason", d.reason}});
  json batch_changes = json::array();
  for (const batch_change_record& b : h.batch_changes)
    batch_changes.push_back(json{{"step", b.step_index}, {"from", b.from}, {"to", b.to},
                                 {"accumulation", b.accumulation}, {"reason", b.reason}});
  json compressions = json::array();
  for (const compression_record& c : h.compressions) {
    json effects = json::array();
    for (const auto& e : c.effects)
      effects.push_back(json{{"resource", e.resource}, {"before", number(e.before)}, {"after", optional(e.after)}});
    compressions.push_back(json{{"step", c.step_index},
                                {"epoch", c.epoch_index},
                                {"action", std::string(to_string(c.kind))},
                                {"rule", c.rule},
                                {"fraction", number(c.fraction)},
                                {"bits", c.bits},
                                {"reason", c.reason},
                                {"effects", std::move(effects)},
                                {"lowered", c.lowered ? json(*c.lowered) : json(nullptr)}});
  }
  json metrics = json::array();
  for (const metric_record& m : h.metrics) metrics.push_back(json{{"epoch", m.epoch_index}, {"values", units(m.metrics)}});
  return json{{"decisions", std::move(decisions)},         {"decisions_dropped", h.decisions_dropped},
              {"repeated_stops", h.repeated_stops},        {"batch_changes", std::move(batch_changes)},
              {"compressions", std::move(compressions)},   {"metrics", std::move(metrics)}};
}
inline json write(const controller_state& c) {
  json resources = json::array();
  for (const auto& r : c.resources) resources.push_back(write(r));
  json stages = json::array();
  for (const auto& st : c.stages) {
    json models = json::array();
    for (const auto& [level, m] : st.models) {
      json model{{"level", level}};
      const json fields = write(m);
      for (const auto& item : fields.items()) model[item.key()] = item.value();
      models.push_back(std::move(model));
    }
    stages.push_back(json{{"name", st.name}, {"last", st.last}, {"chunks", st.chunks}, {"models", std::move(models)}});
  }
  json prune = json::array();
  for (const auto& r : c.prune_rules) prune.push_back(write(r, false));
  json quantize = json::array();
  for (const auto& r : c.quantize_rules) quantize.push_back(write(r, true));
  json stoppers = json::array();
  for (const auto& e : c.early_stopping)
    stoppers.push_back(json{{"metric", e.metric}, {"best", optional(e.best)}, {"best_epoch", optional(e.best_epoch)},
                            {"wait", e.wait}, {"updates", e.updates}, {"last", optional(e.last)},
                            {"stopped", e.stopped}, {"verdict", std::string(to_string(e.verdict))}});
  return json{{"steps", c.steps},
              {"epochs", c.epochs},
              {"steps_in_epoch", c.steps_in_epoch},
              {"samples", c.samples},
              {"samples_in_epoch", c.samples_in_epoch},
              {"samples_known", c.samples_known},
              {"learned_steps_per_epoch", c.learned_steps_per_epoch},
              {"learned_epoch_samples", c.learned_epoch_samples},
              {"last_checkpoint", c.last_checkpoint == checkpoint::step ? "step" : "epoch"},
              {"epoch_ending", c.epoch_ending},
              {"batch",
               json{{"size", c.batch.size},
                    {"accumulation", c.batch.accumulation},
                    {"steps_since_change", c.batch.steps_since_change},
                    {"changes", c.batch.changes},
                    {"last", c.batch.last},
                    {"previous", c.batch.previous},
                    {"probing_memory", c.batch.probing_memory}}},
              {"stop", json{{"stopped", c.stop.stopped},
                            {"reason", std::string(to_string(c.stop.reason))},
                            {"message", c.stop.message}}},
              {"resources", std::move(resources)},
              {"stages", std::move(stages)},
              {"prune_rules", std::move(prune)},
              {"quantize_rules", std::move(quantize)},
              {"early_stopping", std::move(stoppers)},
              {"history", write(c.history)}};
}
inline json write(const budget_state& b) {
  json limits = json::object();
  for (resource r : all_resources) limits[std::string(to_string(r))] = optional(b.limits.get(r));
  limits["units"] = units(b.limits.unit_limits());
  limits["currency"] = b.limits.currency().empty() ? json(nullptr) : json(b.limits.currency());
  json used = json::object();
  for (resource r : all_resources) used[std::string(to_string(r))] = number(b.used[r]);
  used["units"] = units(b.used.units);
  json stages = json::array();
  for (const stage_stats& s : b.stages)
    stages.push_back(json{{"name", s.name},
                          {"calls", s.calls},
                          {"wall", number(s.wall_seconds)},
                          {"flops", s.flops},
                          {"allocations", s.allocations},
                          {"alloc_bytes", s.alloc_bytes},
                          {"peak_rise_bytes", s.peak_rise_bytes},
                          {"units", units(s.units)}});
  json children = json::array();
  for (const budget_state& c : b.children) children.push_back(write(c));
  return json{{"name", b.name}, {"limits", std::move(limits)}, {"used", std::move(used)},
              {"stages", std::move(stages)}, {"children", std::move(children)}};
}

// "2024-05-01T12:00:00.123456789Z": the saved_at for people.
inline std::string utc_text(std::int64_t unix_ns) {
  const std::int64_t seconds = unix_ns >= 0 ? unix_ns / 1'000'000'000 : (unix_ns - 999'999'999) / 1'000'000'000;
  const std::int64_t ns = unix_ns - seconds * 1'000'000'000;
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (!gmtime_r(&t, &tm)) return "";
  char date[32];
  if (std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm) == 0) return "";
  std::string fraction = std::to_string(ns);
  fraction.insert(0, 9 - fraction.size(), '0');
  return std::string(date) + "." + fraction + "Z";
}

// --- reading ---

// A value of the document and its path ("controller.resources[0].step"); null when missing.
struct field {
  const json* v;
  std::string path;
};

class reader {
 public:
  explicit reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& problem) const {
    throw state_error(source_, path, problem);
  }
  [[noreturn]] void expected(const field& f, const std::string& what) const {
    fail(f.path, "expected " + what + ", got " + got(f.v));
  }
  static std::string got(const json* v) {
    if (!v) return "nothing (the field is missing)";
    std::string text = v->dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    return text;
  }

  // The member `key` of an object (its value null when missing).
  [[nodiscard]] field at(const field& object, std::string_view key) const {
    const std::string path = object.path.empty() ? std::string(key) : object.path + "." + std::string(key);
    const auto it = object.v->find(std::string(key));
    return field{it == object.v->end() ? nullptr : &*it, path};
  }
  [[nodiscard]] static field at(const field& array, std::size_t i) {
    return field{&(*array.v)[i], array.path + "[" + std::to_string(i) + "]"};
  }

  const field& object(const field& f) const {
    if (!f.v || !f.v->is_object()) expected(f, "an object");
    return f;
  }
  const field& array(const field& f) const {
    if (!f.v || !f.v->is_array()) expected(f, "an array");
    return f;
  }
  [[nodiscard]] std::uint64_t u64(const field& f) const {
    if (!f.v || !f.v->is_number_integer() || (!f.v->is_number_unsigned() && f.v->get<std::int64_t>() < 0))
      expected(f, "a non-negative integer");
    return f.v->get<std::uint64_t>();
  }
  [[nodiscard]] std::size_t size(const field& f) const {
    const std::uint64_t v = u64(f);
    if (v > std::numeric_limits<std::size_t>::max()) expected(f, "an integer that fits a size_t");
    return static_cast<std::size_t>(v);
  }
  [[nodiscard]] std::int64_t i64(const field& f) const {
    if (!f.v || !f.v->is_number_integer() ||
        (f.v->is_number_unsigned() && f.v->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())))
      expected(f, "an integer");
    return f.v->get<std::int64_t>();
  }
  // A number, or "nan", "inf", "-inf".
  [[nodiscard]] double number(const field& f) const {
    if (f.v && f.v->is_number()) return f.v->get<double>();
    if (f.v && f.v->is_string()) {
      const auto& s = f.v->get_ref<const std::string&>();
      if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
      if (s == "inf") return std::numeric_limits<double>::infinity();
      if (s == "-inf") return -std::numeric_limits<double>::infinity();
    }
    expected(f, "a number");
  }
  // What was used, a cost, a size in bytes: finite and >= 0.
  [[nodiscard]] double amount(const field& f) const {
    if (!f.v || !f.v->is_number() || !(f.v->get<double>() >= 0) || !std::isfinite(f.v->get<double>()))
      expected(f, "a finite number >= 0");
    return f.v->get<double>();
  }
  [[nodiscard]] bool boolean(const field& f) const {
    if (!f.v || !f.v->is_boolean()) expected(f, "true or false");
    return f.v->get<bool>();
  }
  [[nodiscard]] std::string string(const field& f) const {
    if (!f.v || !f.v->is_string()) expected(f, "a string");
    return f.v->get<std::string>();
  }
  [[nodiscard]] bool null(const field& f) const {
    if (!f.v) expected(f, "a value or null");
    return f.v->is_null();
  }
  [[nodiscard]] std::vector<double> amounts(const field& f) const {
    array(f);
    std::vector<double> out;
    for (std::size_t i = 0; i < f.v->size(); ++i) out.push_back(amount(at(f, i)));
    return out;
  }
  [[nodiscard]] std::vector<std::pair<std::string, double>> named_numbers(const field& f, bool amounts_only) const {
    object(f);
    std::vector<std::pair<std::string, double>> out;
    for (const auto& member : f.v->items()) {
      const field item{&member.value(), f.path + "." + member.key()};
      out.emplace_back(member.key(), amounts_only ? amount(item) : number(item));
    }
    return out;
  }

  template <class E, std::size_t N>
  E choice(const field& f, const std::array<E, N>& values) const {
    std::string names;
    if (f.v && f.v->is_string())
      for (E e : values)
        if (to_string(e) == f.v->get_ref<const std::string&>()) return e;
    for (E e : values) names += (names.empty() ? "" : ", ") + std::string(to_string(e));
    expected(f, "one of " + names);
  }

  // --- the parts ---

  cost_stats_state read_stats(const field& f) const {
    object(f);
    cost_stats_state s;
    s.count = u64(at(f, "count"));
    s.last = amount(at(f, "last"));
    s.outliers = u64(at(f, "outliers"));
    if (const field c = at(f, "outlier_counted"); !null(c)) s.outlier_counted = u64(c);
    s.recent = amounts(at(f, "recent"));
    return s;
  }
  cost_model_state read_cost_model(const field& f) const {
    object(f);
    cost_model_state s;
    s.tick = u64(at(f, "tick"));
    const field sizes = array(at(f, "sizes"));
    for (std::size_t i = 0; i < sizes.v->size(); ++i) {
      const field e = object(at(sizes, i));
      s.sizes.push_back(cost_model_state::size_entry{size(at(e, "batch")), u64(at(e, "last_used")), read_stats(at(e, "stats"))});
    }
    return s;
  }
  memory_model_state read_memory_model(const field& f) const {
    object(f);
    memory_model_state s;
    s.tick = u64(at(f, "tick"));
    s.last_run = size(at(f, "last_run"));
    if (const field h = at(f, "base_hint"); !null(h)) s.base_hint = amount(h);
    const field sizes = array(at(f, "sizes"));
    for (std::size_t i = 0; i < sizes.v->size(); ++i) {
      const field e = object(at(sizes, i));
      s.sizes.push_back(memory_model_state::size_entry{size(at(e, "size")), u64(at(e, "last_used")), amounts(at(e, "peaks"))});
    }
    return s;
  }
  resource_state read_resource(const field& f) const {
    object(f);
    resource_state r;
    r.name = string(at(f, "name"));
    if (const field l = at(f, "limit"); !null(l)) r.limit = amount(l);
    r.last_cost = amount(at(f, "last_cost"));
    r.height = amount(at(f, "height"));
    r.seen = amount(at(f, "seen"));
    r.crossed = boolean(at(f, "crossed"));
    r.next_threshold = size(at(f, "next_threshold"));
    r.exhausted_fired = boolean(at(f, "exhausted_fired"));
    const field overrun = object(at(f, "overrun"));
    for (forecast_horizon h : all_horizons) r.overrun[static_cast<std::size_t>(h)] = boolean(at(overrun, to_string(h)));
    r.step = read_cost_model(at(f, "step"));
    r.memory = read_memory_model(at(f, "memory"));
    r.epoch_end = read_stats(at(f, "epoch_end"));
    r.end_in_step_rate = read_stats(at(f, "end_in_step_rate"));
    return r;
  }
  compression_rule_state read_rule(const field& f, bool quantize) const {
    object(f);
    compression_rule_state r;
    r.rule = string(at(f, "rule"));
    if (const field fired = at(f, "fired"); !null(fired)) r.fired = u64(fired);
    r.disabled = boolean(at(f, "disabled"));
    r.measuring = boolean(at(f, "measuring"));
    r.measure_until = u64(at(f, "measure_until"));
    r.record = size(at(f, "record"));
    const field resources = array(at(f, "resources"));
    for (std::size_t i = 0; i < resources.v->size(); ++i) r.resources.push_back(string(at(resources, i)));
    const field per_sample = array(at(f, "per_sample"));
    for (std::size_t i = 0; i < per_sample.v->size(); ++i) r.per_sample.push_back(amounts(at(per_sample, i)));
    if (quantize) {
      const std::uint64_t bits = u64(at(f, "bits"));
      if (bits < 1 || bits > 64) expected(at(f, "bits"), "a width in [1, 64]");
      r.bits = static_cast<int>(bits);
    }
    return r;
  }
  controller_history read_history(const field& f) const {
    object(f);
    controller_history h;
    const field decisions = array(at(f, "decisions"));
    for (std::size_t i = 0; i < decisions.v->size(); ++i) {
      const field d = object(at(decisions, i));
      h.decisions.push_back(decision_record{u64(at(d, "step")), u64(at(d, "epoch")), string(at(d, "at")),
                                            string(at(d, "actions")), choice(at(d, "cause"), all_stop_reasons),
                                            string(at(d, "reason"))});
    }
    h.decisions_dropped = u64(at(f, "decisions_dropped"));
    h.repeated_stops = u64(at(f, "repeated_stops"));
    const field changes = array(at(f, "batch_changes"));
    for (std::size_t i = 0; i < changes.v->size(); ++i) {
      const field b = object(at(changes, i));
      h.batch_changes.push_back(batch_change_record{u64(at(b, "step")), size(at(b, "from")), size(at(b, "to")),
                                                    size(at(b, "accumulation")), string(at(b, "reason"))});
    }
    const field compressions = array(at(f, "compressions"));
    for (std::size_t i = 0; i < compressions.v->size(); ++i) {
      const field c = object(at(compressions, i));
      compression_record r;
      r.step_index = u64(at(c, "step"));
      r.epoch_index = u64(at(c, "epoch"));
      r.kind = choice(at(c, "action"), std::array<action, 2>{action::prune, action::quantize});
      r.rule = string(at(c, "rule"));
      r.fraction = amount(at(c, "fraction"));
      r.bits = static_cast<int>(std::min<std::uint64_t>(u64(at(c, "bits")), 64));
      r.reason = string(at(c, "reason"));
      const field effects = array(at(c, "effects"));
      for (std::size_t k = 0; k < effects.v->size(); ++k) {
        const field e = object(at(effects, k));
        compression_record::effect out{string(at(e, "resource")), amount(at(e, "before")), std::nullopt};
        if (const field after = at(e, "after"); !null(after)) out.after = amount(after);
        r.effects.push_back(std::move(out));
      }
      if (const field lowered = at(c, "lowered"); !null(lowered)) r.lowered = boolean(lowered);
      h.compressions.push_back(std::move(r));
    }
    const field metrics = array(at(f, "metrics"));
    for (std::size_t i = 0; i < metrics.v->size(); ++i) {
      const field m = object(at(metrics, i));
      h.metrics.push_back(metric_record{u64(at(m, "epoch")), named_numbers(at(m, "values"), false)});
    }
    return h;
  }
  controller_state read_controller(const field& f) const {
    object(f);
    controller_state c;
    c.steps = u64(at(f, "steps"));
    c.epochs = u64(at(f, "epochs"));
    c.steps_in_epoch = u64(at(f, "steps_in_epoch"));
    c.samples = u64(at(f, "samples"));
    c.samples_in_epoch = u64(at(f, "samples_in_epoch"));
    c.samples_known = boolean(at(f, "samples_known"));
    c.learned_steps_per_epoch = u64(at(f, "learned_steps_per_epoch"));
    c.learned_epoch_samples = u64(at(f, "learned_epoch_samples"));
    const field lc = at(f, "last_checkpoint");
    const std::string last = lc.v && lc.v->is_string() ? lc.v->get<std::string>() : std::string();
    if (last != "step" && last != "epoch") expected(lc, "\"step\" or \"epoch\"");
    c.last_checkpoint = last == "step" ? checkpoint::step : checkpoint::epoch;
    c.epoch_ending = boolean(at(f, "epoch_ending"));
    const field b = object(at(f, "batch"));
    c.batch.size = size(at(b, "size"));
    c.batch.accumulation = size(at(b, "accumulation"));
    c.batch.steps_since_change = u64(at(b, "steps_since_change"));
    c.batch.changes = u64(at(b, "changes"));
    c.batch.last = size(at(b, "last"));
    c.batch.previous = size(at(b, "previous"));
    c.batch.probing_memory = boolean(at(b, "probing_memory"));
    const field stop = object(at(f, "stop"));
    c.stop.stopped = boolean(at(stop, "stopped"));
    c.stop.reason = choice(at(stop, "reason"), all_stop_reasons);
    c.stop.message = string(at(stop, "message"));
    const field resources = array(at(f, "resources"));
    for (std::size_t i = 0; i < resources.v->size(); ++i) c.resources.push_back(read_resource(at(resources, i)));
    const field stages = array(at(f, "stages"));
    for (std::size_t i = 0; i < stages.v->size(); ++i) {
      const field st = object(at(stages, i));
      sized_stage_state s{string(at(st, "name")), size(at(st, "last")), u64(at(st, "chunks")), {}};
      const field models = array(at(st, "models"));
      for (std::size_t k = 0; k < models.v->size(); ++k)
        s.models.emplace_back(string(at(object(at(models, k)), "level")), read_memory_model(at(models, k)));
      c.stages.push_back(std::move(s));
    }
    const field prune = array(at(f, "prune_rules"));
    for (std::size_t i = 0; i < prune.v->size(); ++i) c.prune_rules.push_back(read_rule(at(prune, i), false));
    const field quantize = array(at(f, "quantize_rules"));
    for (std::size_t i = 0; i < quantize.v->size(); ++i) c.quantize_rules.push_back(read_rule(at(quantize, i), true));
    const field stoppers = array(at(f, "early_stopping"));
    for (std::size_t i = 0; i < stoppers.v->size(); ++i) {
      const field e = object(at(stoppers, i));
      early_stopping_state s;
      s.metric = string(at(e, "metric"));
      if (const field best = at(e, "best"); !null(best)) s.best = number(best);
      if (const field epoch = at(e, "best_epoch"); !null(epoch)) s.best_epoch = u64(epoch);
      s.wait = size(at(e, "wait"));
      s.updates = u64(at(e, "updates"));
      if (const field l = at(e, "last"); !null(l)) s.last = number(l);
      s.stopped = boolean(at(e, "stopped"));
      s.verdict = choice(at(e, "verdict"), all_verdicts);
      c.early_stopping.push_back(std::move(s));
    }
    c.history = read_history(at(f, "history"));
    return c;
  }
  // cost and energy came after version 1's first documents: missing there means none.
  [[nodiscard]] static bool added_later(resource r) noexcept { return r == resource::cost || r == resource::energy; }

  budget_state read_budget(const field& f) const {
    object(f);
    budget_state b;
    b.name = string(at(f, "name"));
    const field limits = object(at(f, "limits"));
    for (resource r : all_resources) {
      const field l = at(limits, to_string(r));
      if (!l.v && added_later(r)) continue;
      if (null(l)) continue;
      const double v = amount(l);
      try {
        b.limits.set(r, v);
      } catch (const std::invalid_argument& e) {
        fail(l.path, e.what());
      }
    }
    if (const field c = at(limits, "currency"); c.v && !c.v->is_null()) {
      if (!b.limits.get(resource::cost)) fail(c.path, "names a currency but there is no cost limit");
      try {
        b.limits.cost(*b.limits.get(resource::cost), string(c));
      } catch (const std::invalid_argument& e) {
        fail(c.path, e.what());
      }
    }
    for (const auto& [unit, v] : named_numbers(at(limits, "units"), true)) {
      try {
        b.limits.units(unit, v);
      } catch (const std::invalid_argument& e) {
        fail(limits.path + ".units." + unit, e.what());
      }
    }
    const field used = object(at(f, "used"));
    for (resource r : all_resources) {
      const field u = at(used, to_string(r));
      b.used.by_resource[static_cast<std::size_t>(r)] = !u.v && added_later(r) ? 0 : amount(u);
    }
    b.used.units = named_numbers(at(used, "units"), true);
    const field stages = array(at(f, "stages"));
    for (std::size_t i = 0; i < stages.v->size(); ++i) {
      const field s = object(at(stages, i));
      stage_stats st;
      st.name = string(at(s, "name"));
      st.calls = u64(at(s, "calls"));
      st.wall_seconds = amount(at(s, "wall"));
      st.flops = u64(at(s, "flops"));
      st.allocations = u64(at(s, "allocations"));
      st.alloc_bytes = u64(at(s, "alloc_bytes"));
      st.peak_rise_bytes = i64(at(s, "peak_rise_bytes"));
      st.units = named_numbers(at(s, "units"), true);
      b.stages.push_back(std::move(st));
    }
    const field children = array(at(f, "children"));
    for (std::size_t i = 0; i < children.v->size(); ++i) b.children.push_back(read_budget(at(children, i)));
    return b;
  }

  run_state document(std::string_view text) const {
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) fail("", "the file is empty");
    json doc;
    try {
      doc = json::parse(text.begin(), text.end());
    } catch (const json::parse_error& e) {
      fail("", std::string("not valid JSON, or cut short (") + e.what() + ")");
    }
    const field root{&doc, ""};
    if (!doc.is_object()) fail("", "expected a JSON object (a frugal state document), got " + got(&doc));
    const field format = at(root, "format");
    if (!format.v || !format.v->is_string() || format.v->get_ref<const std::string&>() != format_name)
      fail("format", "expected \"" + std::string(format_name) + "\", got " + got(format.v) + ": not a frugal state document");
    const field version = at(root, "version");
    const std::uint64_t v = u64(version);
    if (v > static_cast<std::uint64_t>(state_version))
      fail("version", "the document is version " + std::to_string(v) + ", newer than this frugal (" + version_string +
                          ") reads (" + std::to_string(state_version) + "): resume it with a newer frugal");
    if (v < 1) expected(version, "a version from 1 to " + std::to_string(state_version));
    run_state s;
    s.version = static_cast<int>(v);
    if (const field fv = at(root, "frugal_version"); fv.v) s.frugal_version = string(fv);
    const std::int64_t ns = i64(at(root, "saved_at_unix_ns"));
    s.saved_at = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(ns)));
    s.downtime = std::chrono::duration<double>(amount(at(root, "downtime")));
    s.budget = read_budget(at(root, "budget"));
    s.controller = read_controller(at(root, "controller"));
    state_checker(source_).check(s);
    return s;
  }

 private:
  std::string source_;
};

}  // namespace detail::state_json

/// The state as the document described at the top of this header (indented, keys in a fixed order).
[[nodiscard]] inline std::string to_json(const run_state& s) {
  using detail::state_json::json;
  const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(s.saved_at.time_since_epoch()).count();
  json doc{{"format", std::string(detail::state_json::format_name)},
           {"version", s.version},
           {"frugal_version", s.frugal_version},
           {"saved_at", detail::state_json::utc_text(ns)},
           {"saved_at_unix_ns", ns},
           {"downtime", detail::state_json::number(s.downtime.count())},
           {"budget", detail::state_json::write(s.budget)},
           {"controller", detail::state_json::write(s.controller)}};
  // Invalid UTF-8 in a name or message is replaced, never a reason to lose the state.
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

/// Reads a document (see the top of this header); `source_name` (the file) is named in errors.
/// Refuses, with a state_error naming the source and the field, anything but a whole, valid
/// document of a version this frugal reads.
[[nodiscard]] inline run_state from_json(std::string_view text, std::string_view source_name) {
  return detail::state_json::reader(std::string(source_name)).document(text);
}

/// Writes the run's state (capture()) to `path` atomically (durable_file.hpp): a crash or a kill
/// leaves the old document or the new, never part of one. Failures are io_error.
inline void save_state(const std::filesystem::path& path, const budget& run, const controller& ctl) {
  write_file_atomically(path, to_json(capture(run, ctl)));
}

/// Reads a state document. A file that cannot be read is an io_error ("frugal: cannot read state
/// file '<path>': <the system's words>"); one that is not a valid document a state_error.
[[nodiscard]] inline run_state load_state(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const auto failed = [&](int err) {
    return io_error(path, err, "frugal: cannot read state file '" + path.string() + "': " + detail::durable_file_impl::error_text(err));
  };
  if (fd < 0) throw failed(errno);
  std::string text;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw failed(err);
    }
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return from_json(text, path.string());
}

/// load_state + restore: continues the saved run in this process (see restore() in state.hpp for
/// what carries over and what must hold). Nothing changes when it throws.
inline void resume(const std::filesystem::path& path, budget& run, controller& ctl) { restore(run, ctl, load_state(path)); }

}  // namespace frugal
