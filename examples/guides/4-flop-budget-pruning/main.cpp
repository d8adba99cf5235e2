// Guide 4: a plan that does not fit its FLOP budget, made to fit by pruning hidden units.
//
//   guide_flop_budget_pruning [LIMITS] [noprune]   LIMITS in frugal's syntax, default "flops=6e9"
//                                                  (about half of what the plan costs at full
//                                                  width); noprune: the same run, never pruned
//
// The plan: 6 epochs over 4000 Fashion-MNIST images with a 784-128-10 MLP, a validation (1000
// images) after every epoch and a test evaluation (2000 images) at the end. When the controller
// forecasts that the plan's work left costs more FLOPs than the budget has left, it decides
// `prune`, with the fraction of that cost to remove; frugal's plan turns the fraction into a
// number of hidden units and frugal's structured pruning removes the least important ones, so
// every step after it is cheaper. Walkthrough: README.md here.
#include "../model.hpp"

#include <frugal/eigen/compression_plan.hpp>
#include <frugal/frugal.hpp>
#include <frugal/report.hpp>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  const std::string limits = argc > 1 ? argv[1] : "flops=6e9";
  const bool prune = !(argc > 2 && std::string(argv[2]) == "noprune");
  const guide::data data = guide::load_fashion_mnist(4000, 1000, 2000);
  guide::mlp model(128);
  const Eigen::Index batch = 50;
  const std::size_t planned_epochs = 6;
  const std::uint64_t planned_samples = planned_epochs * static_cast<std::uint64_t>(data.train.size());
  const std::uint64_t min_units = 8;  // never narrower than this
  // A step of model.hpp is frugal's SGD step plus gathering the gradient for the update (2 FLOPs
  // per parameter): 4 FLOPs per parameter in all, which is what frugal counts for SGD with
  // momentum. The plans below use it, so they predict a step's FLOPs exactly.
  const frugal::optimizer_kind optimizer = frugal::optimizer_kind::sgd_momentum;

  frugal::budget run{"train", frugal::limits::parse(limits)};

  // What the plan costs at full width, by frugal's formulas (the FLOPs the ops will charge): its
  // training steps, and the evaluations (a forward pass and the loss: model.hpp's evaluate).
  const frugal::mlp_shape full({784, static_cast<std::uint64_t>(model.hidden_units()), 10});
  const auto evaluation_flops = [&](Eigen::Index images) {
    const auto n = static_cast<std::uint64_t>(images);
    return static_cast<double>(full.forward_flops(n) + frugal::softmax_cross_entropy_flops(10, n));
  };
  const frugal::training_work whole_plan{planned_samples, static_cast<std::uint64_t>(batch), optimizer, true};
  const double plan_steps = static_cast<double>(frugal::planned_flops(full, whole_plan));
  const double plan_evaluations =
      static_cast<double>(planned_epochs) * evaluation_flops(data.val.size()) + evaluation_flops(data.test.size());
  std::printf("plan: %zu epochs of %lld images, 784-%lld-10: %s FLOPs (steps %s, evaluations %s); limit: %s\n",
              planned_epochs, static_cast<long long>(data.train.size()), static_cast<long long>(model.hidden_units()),
              frugal::format_count(plan_steps + plan_evaluations).c_str(), frugal::format_count(plan_steps).c_str(),
              frugal::format_count(plan_evaluations).c_str(), limits.c_str());

  // The plan is what the pruning rule compares with the budget left: planned_epochs epochs of
  // epoch_samples samples, each with its end (the validation), and the run's end work: the final
  // test evaluation, over twice the images a validation sees, so it costs 2 epoch ends. No
  // margin: the controller measures each resource's headroom, none for FLOPs, which do not vary
  // (a pruning's fall in cost is scaled into the costs before it once measured, not noise).
  frugal::controller_options options = frugal::controller_options{}
                                           .epoch_samples(static_cast<std::size_t>(data.train.size()))
                                           .planned_epochs(planned_epochs)
                                           .run_end_work(2);
  // After 10 warm-up steps, at any step where the plan's work left is forecast to cost at least
  // 2 % more than what is left: prune that shortfall (at most 50 % of the cost at once), then
  // wait 16 steps (the cooldown) to see the smaller model's cost before judging again.
  if (prune) options.prune(frugal::prune_rule{});
  frugal::controller ctl{run, options};

  // The last pruning, printed once the step after it has been measured.
  struct pruning {
    bool to_print = false;
    std::uint64_t step = 0;
    Eigen::Index units_before = 0, units_after = 0;
    double step_flops_before = 0;
  } last;

  std::uint64_t samples_done = 0;
  std::size_t validations = 0;
  while (!ctl.should_stop() && ctl.epochs() < planned_epochs) {
    bool stopped = false;
    for (Eigen::Index first = 0; first < data.train.size(); first += batch) {
      const Eigen::Index n = std::min(batch, data.train.size() - first);
      const double flops_before = run.used(frugal::resource::flops);
      double loss = 0;
      {
        frugal::scope step{run, "step"};  // frugal's ops charge their FLOPs to the open scope
        loss = model.backward(data.train, first, n);
        model.update(0.1);
      }
      const double step_flops = run.used(frugal::resource::flops) - flops_before;  // exact: counted by the ops
      samples_done += static_cast<std::uint64_t>(n);
      if (last.to_print) {  // the first step after a pruning: what a step costs now
        const frugal::mlp_shape now({784, static_cast<std::uint64_t>(model.hidden_units()), 10});
        std::printf("step %llu: pruned %lld -> %lld hidden units, a step's FLOPs %.0f -> %.0f"
                    " (frugal's formula: %llu)\n",
                    static_cast<unsigned long long>(last.step), static_cast<long long>(last.units_before),
                    static_cast<long long>(last.units_after), last.step_flops_before, step_flops,
                    static_cast<unsigned long long>(now.training_step_flops(static_cast<std::uint64_t>(n), optimizer)));
        last.to_print = false;
      }

      const frugal::decision d = ctl.end_step(frugal::step{}.loss(loss).samples(static_cast<std::size_t>(n)));
      if (d.has(frugal::action::prune) && samples_done < planned_samples) {
        // d.prune_fraction() is a fraction of the cost of the work left, not of the units: the
        // plan finds the widest layer whose work left costs at most (1 - fraction) of what it
        // costs now, counting every product of every step exactly as the ops charge them.
        const Eigen::Index units = model.hidden_units();
        const frugal::mlp_shape shape({784, static_cast<std::uint64_t>(units), 10});
        const std::uint64_t samples_left = planned_samples - samples_done;
        const frugal::training_work work{samples_left, static_cast<std::uint64_t>(batch), optimizer, true};
        const frugal::prune_plan plan =
            frugal::plan_prune_for_cost_fraction(shape, 1, d.prune_fraction(), work, min_units);
        if (plan.units_to_remove > 0) {
          model.remove_hidden_units(static_cast<Eigen::Index>(plan.units_to_remove));
          last = pruning{true, ctl.steps(), units, model.hidden_units(), step_flops};
          std::printf("step %llu: %s\n", static_cast<unsigned long long>(ctl.steps()), d.reason().c_str());
        }
      }
      stopped = d.stops();  // not even one more step fits: the test evaluation still does
      if (d.ends_epoch()) break;
    }
    if (stopped) break;
    guide::scores val;
    {
      frugal::scope s{run, "validation"};
      val = model.evaluate(data.val);
    }
    ++validations;
    std::printf("epoch %llu: val_acc %.4f, 784-%lld-10, %s FLOPs used\n", static_cast<unsigned long long>(ctl.epochs()),
                val.accuracy, static_cast<long long>(model.hidden_units()),
                frugal::format_count(run.used(frugal::resource::flops)).c_str());
    (void)ctl.end_epoch(frugal::epoch{}.metric("val_acc", val.accuracy));
  }
  (void)ctl.end_run();

  // The run's end work: the controller kept room for it, whether the plan ran or the budget ended it.
  guide::scores test;
  {
    frugal::scope s{run, "test"};
    test = model.evaluate(data.test);
  }

  const auto flops_limit = run.limits().get(frugal::resource::flops);
  const std::string stop = ctl.stop_message();
  std::printf("\nstopped: %s\n", stop.empty() ? "no: the whole plan ran" : stop.c_str());
  std::printf("plan: %llu of %llu samples trained (%.1f %%), %zu of %zu validations\n",
              static_cast<unsigned long long>(samples_done), static_cast<unsigned long long>(planned_samples),
              100.0 * static_cast<double>(samples_done) / static_cast<double>(planned_samples), validations,
              planned_epochs);
  std::printf("FLOPs used: %.0f", run.used(frugal::resource::flops));
  if (flops_limit) std::printf(" of %.0f", *flops_limit);
  std::printf("\nfinal test accuracy: %.4f (784-%lld-10)\n\n", test.accuracy,
              static_cast<long long>(model.hidden_units()));
  frugal::print_report(std::cout, run);
}
