# An expression frugal has no FLOP rule for must stop the build, never count as zero.
frugal_add_compile_fail_test(eigen_flops_unknown_expression_does_not_compile
  SOURCE "${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/eigen_unknown_expression.cpp"
  EXPECT "no FLOP rule for this Eigen expression type")
