#include <doctest/doctest.h>

#include <stdexcept>

#include "emulator/model/model.hpp"
#include "helpers.hpp"

using namespace flare::model;

namespace {

std::vector<Datum> batch(int salt) {
  std::vector<Datum> data;
  for (int i = 0; i < 4; ++i) {
    Datum d;
    for (int t = 0; t < 6 + i; ++t) {
      d.tokens.push_back((t * 31 + i * 7 + salt) % 256);
      d.target_tokens.push_back((t * 31 + i * 7 + salt + 31) % 256);
    }
    data.push_back(d);
  }
  return data;
}

void train(Trainer& t, int from, int to) {
  AdamParams p;
  p.learning_rate = 1e-2;
  p.grad_clip_norm = 1.0;
  for (int s = from; s < to; ++s) {
    t.forward_backward(batch(s), LossFn::CrossEntropy, {});
    t.optim_step(p);
  }
}

bool same(const Weights& a, const Weights& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].data != b[i].data) return false;
  return a.size() == b.size();
}

}  // namespace

TEST_CASE("continuing after load_state is bit-identical to never stopping") {
  const Config c = model_test::micro_config();
  Trainer straight(c, init_weights(c), 2);
  train(straight, 0, 3);
  const std::string saved = straight.save_state();
  train(straight, 3, 6);

  Trainer resumed(c, init_weights(c), 1);
  resumed.load_state(saved);
  CHECK(resumed.step() == 3);
  train(resumed, 3, 6);
  CHECK(resumed.step() == 6);
  // Two threads vs one over 3 steps differ only in summation order of the
  // first part; compare against a two-thread run resumed the same way.
  Trainer resumed2(c, init_weights(c), 2);
  resumed2.load_state(saved);
  train(resumed2, 3, 6);
  CHECK(same(resumed2.master(), straight.master()));
  CHECK(resumed2.save_state() == straight.save_state());
}

TEST_CASE("a pending gradient survives save/load") {
  const Config c = model_test::micro_config();
  Trainer a(c, init_weights(c), 1);
  train(a, 0, 1);
  a.forward_backward(batch(9), LossFn::CrossEntropy, {});
  Trainer b(c, init_weights(c), 1);
  b.load_state(a.save_state());
  const OptimResult ra = a.optim_step({}), rb = b.optim_step({});
  CHECK(ra.grad_norm == rb.grad_norm);
  CHECK(ra.grad_norm > 0);
  CHECK(same(a.master(), b.master()));
}

TEST_CASE("load_state refuses bad bytes with a clear error") {
  const Config c = model_test::micro_config();
  Trainer t(c, init_weights(c), 1);
  train(t, 0, 1);
  const std::string good = t.save_state();
  const Weights before = t.master();
  auto refuse = [&](const std::string& bytes, const char* msg) {
    CHECK_THROWS_WITH_AS(t.load_state(bytes), doctest::Contains(msg), std::invalid_argument);
  };
  refuse("", "truncated at byte 0 while reading magic");
  refuse("NOTSTATE" + good.substr(8), "bad magic");
  refuse(good.substr(0, good.size() - 9), "truncated");
  std::string version = good;
  version[8] = 9;
  refuse(version, "unsupported version 9");
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x40;
  refuse(flipped, "checksum mismatch");
  refuse(good + "x", "trailing bytes");

  Config other = c;
  other.name = "other";
  Trainer o(other, init_weights(other), 1);
  refuse(o.save_state(), "saved for model 'other'");
  Config wider = c;
  wider.d_ff = 16;
  Trainer w(wider, init_weights(wider), 1);
  refuse(w.save_state(), "d_ff is 16, this model has 12");
  CHECK(same(t.master(), before));  // nothing changed by the refused loads
  t.load_state(good);
  CHECK(t.step() == 1);
}
