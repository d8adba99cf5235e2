# An expression frugal has no FLOP rule for must stop the build with frugal's static_assert,
# never count as zero: compile one and expect the message.
if(NOT MSVC)
  set(frugal_unknown_src "${CMAKE_CURRENT_BINARY_DIR}/eigen_flops_unknown_expression.cpp")
  file(CONFIGURE OUTPUT "${frugal_unknown_src}" CONTENT [[
#include <frugal/eigen/flops.hpp>
#include <Eigen/LU>
int main() {
  const Eigen::MatrixXd a = Eigen::MatrixXd::Identity(3, 3);
  const Eigen::VectorXd x = Eigen::VectorXd::Ones(3);
  const Eigen::PartialPivLU<Eigen::MatrixXd> lu(a);
  return static_cast<int>(frugal::flops_of(a * lu.solve(x)));
}
]])
  add_test(NAME eigen_flops_unknown_expression_does_not_compile
    COMMAND ${CMAKE_CXX_COMPILER} -std=c++17 -fsyntax-only
            "-I${PROJECT_SOURCE_DIR}/include"
            "-I$<JOIN:$<TARGET_PROPERTY:Eigen3::Eigen,INTERFACE_INCLUDE_DIRECTORIES>,;-I>"
            "${frugal_unknown_src}"
    COMMAND_EXPAND_LISTS)
  set_tests_properties(eigen_flops_unknown_expression_does_not_compile PROPERTIES
    LABELS unit PASS_REGULAR_EXPRESSION "no FLOP rule for this Eigen expression type")
endif()
