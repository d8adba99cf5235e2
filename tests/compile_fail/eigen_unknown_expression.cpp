// Must NOT compile: an expression frugal has no FLOP rule for (a solve) must stop the build
// with frugal's static_assert, never count as zero. eigen_flops_test.cmake checks the message.
#include <frugal/eigen/flops.hpp>

#include <Eigen/LU>

int main() {
  const Eigen::MatrixXd a = Eigen::MatrixXd::Identity(3, 3);
  const Eigen::VectorXd x = Eigen::VectorXd::Ones(3);
  const Eigen::PartialPivLU<Eigen::MatrixXd> lu(a);
  return static_cast<int>(frugal::flops_of(a * lu.solve(x)));
}
