// Downstream consumer used by the packaging.* tests: builds against frugal::frugal (with the
// Eigen, oneTBB and Threads dependencies it carries) and frugal::allocation_hooks, and prints "frugal <version>", which
// cmake/run_packaging_test.cmake checks for.
#include <frugal/frugal.hpp>
#include <frugal/tbb.hpp>

#include <Eigen/Dense>

#include <iostream>

int main() {
  frugal::budget run{"consumer", frugal::limits::parse("flops=1e6")};
  {
    frugal::scope s{run, "product"};
    const Eigen::MatrixXf a = Eigen::MatrixXf::Ones(8, 8);
    const Eigen::MatrixXf c = a * a;
    frugal::add_flops(2 * 8 * 8 * 8);
    frugal::parallel_for(0, 4, [](int) { frugal::add_flops(1); });
    if (c(0, 0) != 8.0f) return 1;
  }
  if (run.used(frugal::resource::flops) != 2 * 8 * 8 * 8 + 4) return 1;
  // frugal::allocation_hooks compiled its one source file into this program.
  const frugal::allocation_tracking_status tracking = frugal::allocation_tracking();
  if (!tracking) {
    std::cerr << "allocation tracking unavailable: " << tracking.reason << '\n';
    return 1;
  }
  if (run.stage("product").allocations == 0) return 1;
  std::cout << "frugal " << frugal::version_string << '\n';
  return 0;
}
