// Writes the committed seed corpus: tests/fuzz/make_seeds OUT_DIR
// (deltas from fuzz_base() to each of fuzz_nexts(), and safetensors files).
#include <cstdio>
#include <string>

#include "delta/codec.hpp"
#include "fuzz_fixture.hpp"

using namespace flare::delta;

static void write(const std::string& path, const std::vector<std::byte>& b) {
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fwrite(b.data(), 1, b.size(), f);
  std::fclose(f);
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  std::string dir = argv[1];
  auto base = fuzz::fuzz_base();
  auto nexts = fuzz::fuzz_nexts();
  EncodeOptions o;
  o.chunk_elements = 1024;
  for (size_t i = 0; i < nexts.size(); ++i)
    write(dir + "/delta/seed" + std::to_string(i) + ".delta",
          encode(fuzz::views_of(base), fuzz::views_of(nexts[i]), {{"step", std::to_string(i)}}, o));
  write(dir + "/safetensors/base.safetensors",
        serialize_safetensors(fuzz::views_of(base), {{"k", "v"}}));
  write(dir + "/safetensors/next.safetensors", serialize_safetensors(fuzz::views_of(nexts[2])));
  write(dir + "/safetensors/empty.safetensors", serialize_safetensors({}));
  return 0;
}
