// quickstart: a small real Eigen training loop (least-squares regression by mini-batch
// gradient descent) run inside a frugal budget, ending with the per-stage report.
#include <frugal/frugal.hpp>
#include <frugal/report.hpp>
#include <frugal/tbb.hpp>

#include <Eigen/Dense>

#include <cstdio>
#include <iostream>

using namespace std::chrono_literals;

int main() {
  const Eigen::Index n = 20'000, d = 64, batch = 256;
  std::srand(7);  // Eigen's Random() draws from std::rand
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(n, d);
  const Eigen::VectorXf w_true = Eigen::VectorXf::Random(d);
  const Eigen::VectorXf y = x * w_true + 0.01f * Eigen::VectorXf::Random(n);
  Eigen::VectorXf w = Eigen::VectorXf::Zero(d);

  // The whole run may take 2 s of wall time and 2e9 FLOPs; evaluation has its own share.
  frugal::budget run{"train", frugal::limits{}.wall(2s).flops(2e9)};
  frugal::budget& eval = run.child("eval", frugal::limits{}.wall(500ms));
  const frugal::unit_id samples = frugal::unit("samples");

  int epoch = 0;
  for (; epoch < 1000 && !run.exhausted(); ++epoch) {
    frugal::scope e{run, "epoch"};
    for (Eigen::Index start = 0; start + batch <= n && !run.exhausted(); start += batch) {
      frugal::scope step{run, "step"};
      const auto xb = x.middleRows(start, batch);
      const auto yb = y.segment(start, batch);
      Eigen::VectorXf residual(batch);
      {
        frugal::scope s{run, "forward"};
        residual.noalias() = xb * w - yb;
        frugal::add_flops(2 * batch * d + batch);  // GEMV + subtraction
      }
      Eigen::VectorXf grad(d);
      {
        frugal::scope s{run, "backward"};
        grad.noalias() = (2.0f / batch) * (xb.transpose() * residual);
        frugal::add_flops(2 * batch * d + d);  // GEMV + scaling
      }
      {
        frugal::scope s{run, "update"};
        w -= 0.05f * grad;
        frugal::add_flops(2 * d);
      }
      frugal::add_units(samples, static_cast<double>(batch));
    }
    // Mean squared error over the whole set, on oneTBB workers, charged to the eval budget.
    frugal::scope s{eval, "evaluate"};
    const double sse = frugal::parallel_reduce(
        tbb::blocked_range<Eigen::Index>(0, n, 2048), 0.0,
        [&](const tbb::blocked_range<Eigen::Index>& r, double acc) {
          const Eigen::Index rows = r.end() - r.begin();
          frugal::add_flops(2 * rows * d + 2 * rows);  // GEMV + residual + square/sum
          return acc + (x.middleRows(r.begin(), rows) * w - y.segment(r.begin(), rows)).squaredNorm();
        },
        [](double a, double b) { return a + b; });
    if (epoch % 25 == 0)
      std::printf("epoch %3d  mse %.6f  budget used %5.1f %%\n", epoch, sse / n, 100 * run.fraction_used());
  }
  const auto why = run.exhausted_resources();
  std::printf("\nstopped after %d epochs: %s\n\n", epoch,
              why.empty() ? "epoch limit reached" : ("budget exhausted (" + why.front() + ")").c_str());
  frugal::print_report(std::cout, run);
}
