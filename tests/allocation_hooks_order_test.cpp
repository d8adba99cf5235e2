// <frugal/allocation_hooks.hpp> first, then Eigen and oneTBB: any include order compiles. This
// file is its program's hook translation unit (it links no frugal::allocation_hooks). Before the
// fix GCC 12 rejected it: <mm_malloc.h>, pulled in by Eigen's SSE code, redeclared
// posix_memalign with a different exception specification.
#include <frugal/allocation_hooks.hpp>

#include <Eigen/Dense>
#include <frugal/tbb.hpp>

#include <frugal/allocation.hpp>
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <cstdlib>

namespace {

TEST(AllocationHooksIncludeOrder, TheHooksDefinedFirstCountEigensMemory) {
  const frugal::allocation_tracking_status status = frugal::allocation_tracking();
  if (!status) GTEST_SKIP() << status.reason;
  const Eigen::MatrixXf b = Eigen::MatrixXf::Random(32, 32);
  const Eigen::MatrixXf c = Eigen::MatrixXf::Random(32, 32);
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "product"};
    const Eigen::MatrixXf a = b * c;
    EXPECT_NEAR(a(1, 2), b.row(1).dot(c.col(2)), 1e-4);
  }
  EXPECT_EQ(run.stage("product").allocations, 1u);
  EXPECT_EQ(run.stage("product").alloc_bytes, 32u * 32u * sizeof(float));
  void* p = nullptr;
  void* (*volatile allocate)(std::size_t) = std::malloc;  // a real call into the hooks
  ASSERT_EQ(posix_memalign(&p, 64, 100), 0);
  std::free(p);
  std::free(allocate(1));
}

}  // namespace
