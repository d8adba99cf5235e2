/// @file
/// The JSON report with the controller's story: the budget tree (report.hpp) and a "controller"
/// section -- the stop, every decision other than continue, batch sizes, compression actions
/// with their measured effect, headroom per resource, the metrics and early stopping's state.
#pragma once

#include <frugal/controller.hpp>
#include <frugal/controller_history.hpp>
#include <frugal/detail/json.hpp>
#include <frugal/report.hpp>

#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>

namespace frugal {
namespace detail {

template <class T>
void json_optional(json_writer& w, const std::optional<T>& v) {
  if (v)
    w.value(*v);
  else
    w.null();
}

inline void json_controller(json_writer& w, const controller& ctl) {
  const controller_history& h = ctl.history();
  w.begin_object().member("steps", ctl.steps()).member("epochs", ctl.epochs());

  w.key("stop").begin_object();
  w.member("stopped", ctl.should_stop()).member("reason", to_string(ctl.stop_reason()));
  w.member("message", std::string_view(ctl.stop_message()));
  w.end_object();

  w.key("batch");
  if (ctl.manages_batch()) {
    w.begin_object().member("size", ctl.batch_size()).member("accumulation", ctl.accumulation_steps());
    w.member("effective", ctl.effective_batch()).member("min", ctl.min_batch_size()).member("max", ctl.max_batch_size());
    w.end_object();
  } else {
    w.null();
  }

  // The headroom each forecast carries now: a fixed margin, or measured per resource.
  w.key("margin");
  json_optional(w, ctl.margin());
  w.key("headroom").begin_object();
  for (const std::string& name : ctl.tracked_resources()) {
    w.key(name).begin_object();
    w.key("next_step");
    json_optional(w, ctl.headroom(name));
    const std::optional<resource> r = resource_from_name(name);
    w.key("epoch_end");
    if (r)
      json_optional(w, ctl.epoch_end_headroom(*r));
    else
      w.null();
    w.end_object();
  }
  w.end_object();

  w.key("fraction_used").value(ctl.fraction_used());
  w.key("crossed_levels").begin_array();
  for (const std::string& name : ctl.crossed_levels()) w.value(std::string_view(name));
  w.end_array();

  w.key("decisions").begin_array();
  for (const decision_record& d : h.decisions) {
    w.begin_object().member("step", d.step_index).member("epoch", d.epoch_index).member("at", std::string_view(d.at));
    w.member("actions", std::string_view(d.actions)).member("cause", to_string(d.cause));
    w.member("reason", std::string_view(d.reason)).end_object();
  }
  w.end_array();
  w.member("decisions_dropped", h.decisions_dropped).member("repeated_stops", h.repeated_stops);

  // The memory models: per level, the step's peak over batch sizes; per sized stage, its
  // chunk's (controller::chunk_size).
  const auto model = [&](const memory_model& m, double resolution) {
    w.begin_object().member("base_bytes", m.base()).member("rise_per_unit_bytes", m.rise_per_unit());
    w.member("sizes_measured", m.sizes()).member("fitted", m.fitted()).member("spread", m.spread());
    w.member("resolution_bytes", resolution).end_object();
  };
  w.key("memory").begin_object();
  w.key("step").begin_object();
  for (const std::string& name : ctl.tracked_resources())
    if (const memory_model* m = ctl.level_model(name); m && !m->empty()) {
      w.key(name);
      model(*m, ctl.level_resolution(name));
    }
  w.end_object();
  w.key("stages").begin_object();
  for (const auto& [stage, last] : ctl.sized_stages()) {
    w.key(stage).begin_object().member("last_size", last);
    for (const std::string& name : ctl.tracked_resources())
      if (const memory_model* m = ctl.stage_model(stage, name); m && !m->empty()) {
        w.key(name);
        model(*m, ctl.level_resolution(name));
      }
    w.end_object();
  }
  w.end_object();
  w.end_object();

  w.key("batch_changes").begin_array();
  for (const batch_change_record& b : h.batch_changes) {
    w.begin_object().member("step", b.step_index).member("from", b.from).member("to", b.to);
    w.member("accumulation", b.accumulation).member("reason", std::string_view(b.reason)).end_object();
  }
  w.end_array();

  // Effects are costs per sample of the watched resources (per step when samples are unknown).
  w.key("compressions").begin_array();
  for (const compression_record& c : h.compressions) {
    w.begin_object().member("step", c.step_index).member("epoch", c.epoch_index).member("action", to_string(c.kind));
    w.member("rule", std::string_view(c.rule));
    if (c.kind == action::prune)
      w.member("fraction", c.fraction);
    else
      w.member("bits", c.bits);
    w.member("reason", std::string_view(c.reason));
    w.key("effects").begin_array();
    for (const compression_record::effect& e : c.effects) {
      w.begin_object().member("resource", std::string_view(e.resource)).member("before_per_sample", e.before);
      w.key("after_per_sample");
      json_optional(w, e.after);
      w.end_object();
    }
    w.end_array();
    w.key("lowered");
    json_optional(w, c.lowered);
    w.end_object();
  }
  w.end_array();

  w.key("metrics").begin_array();
  for (const metric_record& m : h.metrics) {
    w.begin_object().member("epoch", m.epoch_index).key("values").begin_object();
    for (const auto& [name, value] : m.metrics) w.member(name, value);
    w.end_object().end_object();
  }
  w.end_array();

  w.key("early_stopping").begin_array();
  for (const early_stopping& es : ctl.early_stoppers()) {
    w.begin_object().member("metric", std::string_view(es.metric())).member("mode", to_string(es.mode()));
    w.member("patience", es.patience()).member("min_delta", es.min_delta());
    w.key("baseline");
    json_optional(w, es.baseline());
    w.member("start_from_epoch", es.start_from_epoch());
    w.key("best");
    json_optional(w, es.best());
    w.key("best_epoch");
    json_optional(w, es.best_epoch());
    w.member("wait", es.wait()).member("verdict", to_string(es.verdict())).member("stopped", es.stopped());
    w.end_object();
  }
  w.end_array();

  w.member("callback_errors", ctl.callback_error_count());
  w.end_object();
}

}  // namespace detail

/// Writes report.hpp's JSON document with the controller's section. Its shape: report.hpp's, plus:
/// @verbatim
///   "controller": {"steps", "epochs",
///     "stop": {"stopped", "reason", "message"},
///     "batch": {"size", "accumulation", "effective", "min", "max"} or null,
///     "margin": number or null (measured headroom),
///     "headroom": {<resource>: {"next_step", "epoch_end"}}, "fraction_used" (consumables),
///     "crossed_levels": [...],
///     "decisions": [{"step", "epoch", "at", "actions", "cause", "reason"}], "decisions_dropped",
///     "repeated_stops",
///     "memory": {"step": {<level>: model}, "stages": {<stage>: {"last_size", <level>: model}}},
///       model = {"base_bytes", "rise_per_unit_bytes" (per sample or image), "sizes_measured",
///                "fitted" (a line through sizes 2x apart), "spread", "resolution_bytes"},
///     "batch_changes": [{"step", "from", "to", "accumulation", "reason"}],
///     "compressions": [{"step", "epoch", "action", "rule", "fraction" | "bits", "reason",
///                       "effects": [{"resource", "before_per_sample", "after_per_sample"}],
///                       "lowered"}],
///     "metrics": [{"epoch", "values": {<name>: number}}],
///     "early_stopping": [{"metric", "mode", "patience", "min_delta", "baseline",
///                         "start_from_epoch", "best", "best_epoch", "wait", "verdict", "stopped"}],
///     "callback_errors"}
/// @endverbatim
/// Non-finite numbers (a NaN metric) are written as null.
inline void write_json_report(std::ostream& out, const budget& b, const controller& ctl) {
  detail::json_writer w(out);
  w.begin_object();
  detail::json_report_members(w, b);
  w.key("controller");
  detail::json_controller(w, ctl);
  w.end_object();
  out << '\n';
}

/// write_json_report(out, b, ctl) into a string.
[[nodiscard]] inline std::string json_report(const budget& b, const controller& ctl) {
  std::ostringstream s;
  write_json_report(s, b, ctl);
  return s.str();
}

}  // namespace frugal
