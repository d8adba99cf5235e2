// A job of 4 ranks in which one rank fails, for mpi_failure_check.cmake: the job must end --
// no rank may wait for ever -- and say why. argv[1] is the failure:
//   throw     rank 2 throws at step 5 and nothing catches it (the job's terminate handler)
//   kill      rank 1 dies of SIGKILL at step 5 (mpirun ends the others)
//   stuck     rank 3 stops taking part at step 5 and sleeps; the others' collective_timeout (2 s)
//   deadline  rank 3 likewise; the others' hard deadline has fired, so deadline_grace (1 s) ends it
#include <frugal/mpi.hpp>
#include <frugal/scope.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  using namespace std::chrono_literals;
  frugal::mpi::environment env(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  const int rank = frugal::mpi::environment::world_rank();
  frugal::budget run("run");
  // Under "deadline" the timeout is long: the grace after the deadline must be what ends it.
  frugal::mpi::job job(MPI_COMM_WORLD, run,
                       frugal::mpi::job_options{}.collective_timeout(mode == "deadline" ? 600s : 2s).deadline_grace(1s));
  frugal::controller ctl(run);
  job.attach(ctl);
  std::atomic<bool> deadline_fired{mode == "deadline"};  // as if the watchdog had fired
  job.watch_deadline(deadline_fired);
  job.on_abort([rank](const std::string& why) { std::fprintf(stderr, "on_abort on rank %d: %s\n", rank, why.c_str()); });
  for (int step = 1; step <= 1000; ++step) {
    {
      frugal::scope s(run, "step");
      frugal::add_flops(100);
      std::this_thread::sleep_for(1ms);
    }
    if (step == 5) {
      if (mode == "throw" && rank == 2) throw std::runtime_error("rank two failed on purpose");
      if (mode == "kill" && rank == 1) std::raise(SIGKILL);
      if ((mode == "stuck" || mode == "deadline") && rank == 3) std::this_thread::sleep_for(100s);
    }
    if (job.end_step(ctl).stops()) break;
  }
  (void)job.end_run(ctl);
  std::printf("rank %d: the job ran to its end, which this test must never see\n", rank);
  return 0;
}
