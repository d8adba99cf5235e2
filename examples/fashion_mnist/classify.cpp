// fashion_mnist_classify: loads a model the main job deployed (fashion_mnist --deploy LIMITS
// writes OUT/model.deployed) and classifies the Fashion-MNIST test set with it, by the code the
// main job measured it with (deploy.hpp: load_deployed, classify_int8, frugal's int8 product with
// int32 accumulation), so the accuracy is the main job's, exactly.
//   fashion_mnist_classify MODEL [--data DIR]
// Exit status: 0 done; 1 a model file that is missing or damaged (the file and what is wrong are
// named) or missing test data; 2 a bad command line.
#include "deploy.hpp"
#include "idx.hpp"
#include "mlp.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  std::string model_file;
  std::string data_dir = fmnist::default_data_dir;
  CLI::App app("Classifies the Fashion-MNIST test set with a model fashion_mnist --deploy saved (model.deployed):\n"
               "prints the images, the accuracy, the model's bytes, the FLOPs per image as frugal counts them\n"
               "(an int8 multiply-add is 2 FLOPs, like a float one) and the time per image (one thread).");
  app.name(argc > 0 ? argv[0] : "fashion_mnist_classify");
  app.add_option("model", model_file, "the deployed model (OUT/model.deployed)")->required()->type_name("MODEL");
  app.add_option("--data", data_dir, "the *-ubyte.gz files (default " + data_dir + ")")->type_name("DIR");
  app.footer("Exit status: 0 done, 1 a missing or damaged model file or missing data, 2 bad command line.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "fashion_mnist_classify: error: %s\n(run with --help for the options)\n", e.what());
    return 2;
  }

  fmnist::int8_mlp model;
  try {
    model = fmnist::load_deployed(model_file);
  } catch (const fmnist::deploy_error& e) {
    std::fprintf(stderr, "fashion_mnist_classify: %s\n", e.what());
    return 1;
  }
  fmnist::dataset data;
  try {
    data = fmnist::load_fashion_mnist(data_dir);
  } catch (const fmnist::data_error& e) {
    std::fprintf(stderr, "fashion_mnist_classify: %s\n", e.what());
    return 1;
  }
  const fmnist::inference_result r = fmnist::classify_int8(model, data.test_images, data.test_labels);
  std::printf("model: %s (%s, int8 per-channel, %llu B)\n", model_file.c_str(), fmnist::shape_text(model.sizes).c_str(),
              static_cast<unsigned long long>(fmnist::deployed_file_bytes(model.sizes)));
  std::printf("images: %zu\n", r.images);
  std::printf("FLOPs/sample: %s\n", frugal::detail::units_impl::shortest(r.flops_per_sample()).c_str());
  std::printf("time/sample: %.2f us (one thread)\n", r.seconds_per_sample() * 1e6);
  std::printf("accuracy: %.4f (%lld correct)\n", r.accuracy, static_cast<long long>(r.correct));
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "fashion_mnist_classify: cannot write to stdout\n");
    return 1;
  }
  return 0;
}
