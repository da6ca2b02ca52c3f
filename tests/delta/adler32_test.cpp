#include "delta/adler32.hpp"

#include <doctest/doctest.h>
#include <zlib.h>

#include "helpers.hpp"

using namespace flare::delta;

namespace {
uint32_t zlib_adler(std::span<const std::byte> d) {
  uLong s = ::adler32(0, nullptr, 0);
  size_t done = 0;
  while (done < d.size()) {
    uInt n = static_cast<uInt>(std::min<size_t>(d.size() - done, 1u << 30));
    s = ::adler32(s, reinterpret_cast<const Bytef*>(d.data() + done), n);
    done += n;
  }
  return static_cast<uint32_t>(s);
}
}  // namespace

TEST_CASE("adler32 equals zlib's for every length from 0 to 4096") {
  auto data = testing::random_bytes(4096, 11);
  for (size_t n = 0; n <= data.size(); ++n) {
    auto s = std::span(data).first(n);
    REQUIRE(adler32(s) == zlib_adler(s));
  }
}

TEST_CASE("adler32 of all-0xff bytes equals zlib's (largest per-byte sums)") {
  std::vector<std::byte> ones(100'000, std::byte{0xff});
  CHECK(adler32(ones) == zlib_adler(ones));
}

TEST_CASE("adler32 continues from a seed like zlib") {
  auto data = testing::random_bytes(10'000, 12);
  auto a = std::span(data).first(3333), b = std::span(data).subspan(3333);
  CHECK(adler32(b, adler32(a)) == zlib_adler(data));
}

TEST_CASE("adler32_combine joins the sums of two pieces") {
  auto data = testing::random_bytes(70'000, 13);
  for (size_t cut :
       {size_t{0}, size_t{1}, size_t{5552}, size_t{65521}, size_t{69'999}, size_t{70'000}}) {
    auto a = std::span(data).first(cut), b = std::span(data).subspan(cut);
    CHECK(adler32_combine(adler32(a), adler32(b), b.size()) == zlib_adler(data));
  }
}

TEST_CASE("adler32_parallel of large buffers equals zlib's") {
  for (size_t n : {size_t{16} << 20, (size_t{40} << 20) + 12345}) {
    auto data = testing::random_bytes(n, n);
    CHECK(adler32_parallel(data) == zlib_adler(data));
    CHECK(adler32_parallel(data, 1) == zlib_adler(data));
  }
}
