// Guide 2: early stopping on the validation loss, and a callback that saves the best weights.
//
//   guide_early_stopping [OUT_DIR] [LIMITS]     default: current directory, "wall=1m,samples=2e6"
//
// Trains a small MLP on a small slice of Fashion-MNIST (it overfits soon), evaluates the
// validation loss after every epoch and lets the controller stop the run once that loss has not
// improved for 3 epochs. A callback writes the weights to OUT_DIR/best.bin at every new best;
// after the stop the program loads them back. Walkthrough: README.md here.
#include "../model.hpp"

#include <frugal/frugal.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

int main(int argc, char** argv) {
  const std::filesystem::path out_dir = argc > 1 ? argv[1] : ".";
  const std::string limits = argc > 2 ? argv[2] : "wall=1m,samples=2e6";
  const std::filesystem::path best_file = out_dir / "best.bin";
  const guide::data data = guide::load_fashion_mnist(1000, 1000, 0);
  guide::mlp model(128);
  const Eigen::Index batch = 50;

  // Whichever ends first: the budget, or early stopping. "samples" is a user unit, counted by
  // frugal::add_units below.
  frugal::budget run{"train", frugal::limits::parse(limits)};
  const frugal::unit_id samples = frugal::unit("samples");

  // Early stopping watches a metric the loop reports at each end_epoch: stop after 3 epochs in a
  // row that do not beat the best val_loss by more than 0.001 (PyTorch Lightning's meaning).
  frugal::controller ctl{
      run, frugal::controller_options{}.early_stop(frugal::early_stopping{"val_loss"}.patience(3).min_delta(1e-3))};

  // Callbacks: an overload per event type it wants. best_metric_event fires inside end_epoch
  // when the watched metric reaches a new best, while `model` still holds the weights that
  // reached it: the moment to save them. stop_event fires once, when the run stops.
  ctl.add_callback("save best", [&](const frugal::best_metric_event& e) {
    model.save(best_file);
    std::printf("  new best %s %.4f at epoch %llu: saved %s\n", std::string(e.metric).c_str(), e.value,
                static_cast<unsigned long long>(e.epoch_index), best_file.string().c_str());
  });
  ctl.add_callback("report stop", [](const frugal::stop_event& e) {
    std::printf("  the controller stopped the run at epoch %llu\n", static_cast<unsigned long long>(e.epoch_index));
  });

  while (!ctl.should_stop()) {
    frugal::scope epoch{run, "epoch"};
    bool stopped = false;
    for (Eigen::Index first = 0; first < data.train.size(); first += batch) {
      const Eigen::Index n = std::min(batch, data.train.size() - first);
      double loss = 0;
      {
        frugal::scope step{run, "step"};
        loss = model.backward(data.train, first, n);
        model.update(0.1);
        frugal::add_units(samples, static_cast<double>(n));
      }
      const frugal::decision d = ctl.end_step(frugal::step{}.loss(loss).samples(static_cast<std::size_t>(n)));
      stopped = d.stops();  // the budget: not even one more step fits
      if (d.ends_epoch()) break;
    }
    if (stopped) break;
    guide::scores val;
    {
      frugal::scope s{run, "validation"};
      val = model.evaluate(data.val);
    }
    std::printf("epoch %llu: val_loss %.4f  val_acc %.4f\n", static_cast<unsigned long long>(ctl.epochs()), val.loss,
                val.accuracy);
    // Early stopping decides here, from the metrics of this epoch.
    (void)ctl.end_epoch(frugal::epoch{}.metric("val_loss", val.loss).metric("val_acc", val.accuracy));
  }
  (void)ctl.end_run();
  std::printf("\nstopped: %s\n", ctl.stop_message().c_str());

  // The last weights are `patience` epochs past the best: load the best ones back.
  const frugal::early_stopping& es = ctl.early_stoppers().front();
  if (!es.best()) return 1;  // no epoch ended: nothing was saved
  model.load(best_file);
  const double reloaded = model.evaluate(data.val).loss;
  std::printf("best val_loss %.4f at epoch %llu; reloaded from %s: val_loss %.4f\n", *es.best(),
              static_cast<unsigned long long>(*es.best_epoch()), best_file.string().c_str(), reloaded);
  return std::abs(reloaded - *es.best()) <= 1e-6 ? 0 : 1;
}
