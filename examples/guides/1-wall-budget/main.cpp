// Guide 1: train inside a wall-clock budget and stop in time for a final evaluation.
//
//   guide_wall_budget [LIMITS] [STEPS]   LIMITS in frugal's syntax, default "wall=2s";
//                                        STEPS between evaluations, default 100
//
// Trains a small MLP on Fashion-MNIST and evaluates it on the test images every STEPS steps. The
// controller stops the run *before* a step or an evaluation would cross the limit, so the run
// ends inside its budget with an evaluation of the last weights. Walkthrough: README.md here.
#include "../model.hpp"

#include <frugal/frugal.hpp>
#include <frugal/report.hpp>

#include <cstdio>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  const std::string limits = argc > 1 ? argv[1] : "wall=2s";
  const guide::data data = guide::load_fashion_mnist(10000, 0, 2000);  // no budget yet: not charged
  guide::mlp model(64);
  const Eigen::Index batch = 64;
  const int eval_every = argc > 2 ? std::stoi(argv[2]) : 100;  // steps between evaluations

  // The budget, and a child budget for the evaluations: what a child uses is charged to its
  // parent too, so the run's wall limit covers training and evaluation together.
  frugal::budget run{"train", frugal::limits::parse(limits)};
  frugal::budget& eval = run.child("eval");

  // The controller watches `run`. To it an "epoch" is the work between two end_epoch() calls,
  // here eval_every steps and the evaluation after them. It measures what a step and what an epoch's
  // end cost, and decides at every checkpoint whether the next one still fits.
  frugal::controller ctl{run, frugal::controller_options{}.steps_per_epoch(eval_every)};
  const frugal::linear_decay lr{0.1, run};  // decays to 0 exactly as the budget runs out

  guide::scores last;  // the last evaluation: the result of the run
  int evaluations = 0;
  Eigen::Index next = 0;  // the next training sample
  {
    frugal::scope whole{run, "training"};  // wall time is charged while a scope of run is open
    while (!ctl.should_stop()) {
      bool evaluate = true;
      for (int s = 0; s < eval_every; ++s) {
        const Eigen::Index n = std::min(batch, data.train.size() - next);
        double loss = 0;
        {
          frugal::scope step{run, "step"};
          loss = model.backward(data.train, next, n);
          model.update(lr());
        }
        next = (next + n) % data.train.size();
        const frugal::decision d = ctl.end_step(frugal::step{}.loss(loss).samples(static_cast<std::size_t>(n)));
        if (d.stops()) {  // even the evaluation would not fit now: the last one stands
          evaluate = false;
          break;
        }
        if (d.ends_epoch()) break;  // only the evaluation still fits: do it now
      }
      if (!evaluate) break;
      {
        frugal::scope s{eval, "evaluate"};
        last = model.evaluate(data.test);
      }
      ++evaluations;
      std::printf("evaluation %d at %.3f s: test accuracy %.4f\n", evaluations, run.used(frugal::resource::wall),
                  last.accuracy);
      (void)ctl.end_epoch();  // decides whether one more step and evaluation fit
    }
  }
  (void)ctl.end_run();

  const auto wall_limit = run.limits().get(frugal::resource::wall);
  std::printf("\nstopped: %s\n", ctl.stop_message().c_str());
  std::printf("wall used: %.3f s", run.used(frugal::resource::wall));
  if (wall_limit) std::printf(" of %.3f s", *wall_limit);
  std::printf(" (%d evaluations, %llu steps)\n", evaluations, static_cast<unsigned long long>(ctl.steps()));
  std::printf("final test accuracy: %.4f\n\n", last.accuracy);
  frugal::print_report(std::cout, run);
  return evaluations > 0 ? 0 : 1;
}
