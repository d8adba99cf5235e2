// Guide 6: resume a stopped run in a new process, inside the same budget.
//
//   guide_resume STATE_DIR [LIMITS]     LIMITS in frugal's syntax, default "wall=2s"
//
// Run it, stop it (Ctrl-C, `kill`, a scheduler's SIGTERM or SIGUSR1), run it again with the same
// STATE_DIR: it continues where it stopped, and the budget counts both processes -- the time in
// between is not charged. At each epoch's end and at the stop it saves the run's state
// (frugal::save_state: the budget's usage, the controller's counters, forecasts and stop) next to
// the model's weights. Exit status 0, or 128 + the signal's number after a stop by a signal.
// Walkthrough: README.md here.
#include "../model.hpp"

#include <frugal/frugal.hpp>
#include <frugal/signals.hpp>
#include <frugal/state_json.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: guide_resume STATE_DIR [LIMITS]\n");
    return 2;
  }
  // First of all: from here a SIGTERM, SIGINT or SIGUSR1 asks for a clean stop (a second one
  // ends the process at once).
  frugal::signal_stop signals;
  const std::filesystem::path dir = argv[1];
  const std::string limits = argc > 2 ? argv[2] : "wall=2s";
  const std::filesystem::path state_file = dir / "state.json", weights_file = dir / "weights.bin";
  std::filesystem::create_directories(dir);

  const guide::data data = guide::load_fashion_mnist(10000, 1000, 0);
  guide::mlp model(64);
  // The same budget tree and controller options in every process: the state fills them in.
  frugal::budget run{"train", frugal::limits::parse(limits)};
  frugal::budget& eval = run.child("eval");
  const frugal::unit_id samples = frugal::unit("samples");
  frugal::controller ctl{run, frugal::controller_options{}.steps_per_epoch(50)};
  signals.bind(ctl);

  if (std::filesystem::exists(state_file)) {
    // Before any scope opens on `run`: the budget now carries what the earlier processes used.
    frugal::resume(state_file, run, ctl);
    model.load(weights_file);
    std::printf("resumed from %s: %.3f s of wall used before, %.3f s between the processes (not charged), "
                "%llu steps done\n",
                state_file.string().c_str(), run.used(frugal::resource::wall), run.downtime().count(),
                static_cast<unsigned long long>(ctl.steps()));
  } else {
    std::printf("new run\n");
  }
  // Weights first, then the state that refers to them: each file is replaced atomically. No
  // scope is open: the saves are not charged, and the one after the stop cannot cross the limit.
  auto save = [&] {
    model.save(weights_file);
    frugal::save_state(state_file, run, ctl);
  };

  std::printf("training\n");
  std::fflush(stdout);
  const frugal::linear_decay lr{0.1, run};  // follows the budget used in all processes
  // Where the data left off: the samples charged so far, in all processes, modulo the set.
  Eigen::Index next = static_cast<Eigen::Index>(run.used("samples")) % data.train.size();
  while (!ctl.should_stop()) {
    bool stopped = false;
    {
      frugal::scope epoch{run, "epoch"};
      // An epoch is 50 steps; one stopped halfway continues where it was (steps_in_epoch()).
      while (ctl.steps_in_epoch() < 50) {
        const Eigen::Index n = std::min<Eigen::Index>(64, data.train.size() - next);
        double loss = 0;
        {
          frugal::scope step{run, "step"};
          loss = model.backward(data.train, next, n);
          model.update(lr());
          frugal::add_units(samples, static_cast<double>(n));
        }
        next = (next + n) % data.train.size();
        const frugal::decision d = ctl.end_step(frugal::step{}.loss(loss).samples(static_cast<std::size_t>(n)));
        stopped = d.stops();  // the budget, or a signal
        if (d.ends_epoch()) break;
      }
      if (!stopped) {
        guide::scores val;
        {
          frugal::scope s{eval, "validation"};
          val = model.evaluate(data.val);
        }
        std::printf("epoch %llu: val_acc %.4f at %.3f s\n", static_cast<unsigned long long>(ctl.epochs()),
                    val.accuracy, run.used(frugal::resource::wall));
        std::fflush(stdout);
        (void)ctl.end_epoch(frugal::epoch{}.metric("val_acc", val.accuracy));
      }
    }
    if (stopped) break;
    save();  // at each epoch's end, with no scope of `run` open: between steps
  }
  (void)ctl.end_run();  // a stop between checkpoints (a signal during the evaluation) lands here
  save();

  std::printf("\nstopped: %s\n", ctl.stop_message().c_str());
  std::printf("wall used: %.3f s in all processes (limit %s); %.3f s between them not charged; %llu steps\n",
              run.used(frugal::resource::wall), run.limits().to_string().c_str(), run.downtime().count(),
              static_cast<unsigned long long>(ctl.steps()));
  std::printf("state saved: %s\n", state_file.string().c_str());
  return signals.received() ? 128 + signals.signal_number() : 0;
}
