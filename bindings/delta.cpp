// flare.delta: lossless deltas between weight checkpoints (host/delta/codec.hpp).
//   compress_files(prev, new, out [, {level=, threads=, chunk_elements=, base_identity=}]) -> info
//   apply_files(prev, diff, out [, {threads=, expect_base_identity=}]) -> info
//   verify_files(prev, diff, new) -> info
//   inspect(diff_path) -> info ; inspect_bytes(diff) -> info
//   compress(tensors_a, tensors_b [, opts + metadata=]) -> diff (string)
//   apply(tensors_a, diff) -> tensors, metadata
//   adler32(s [, seed]) -> integer
// A tensors table maps names to {dtype = "BF16", shape = {..}, data = "<bytes>"}.
// info = {format, version, base_identity, base_digest, base_bytes, new_bytes,
//         delta_bytes, ratio, metadata = {}, tensors = {{name, change, encoding,
//         dtype, shape, base_dtype?, base_shape?, elements, bytes, stored_bytes,
//         changed, density, adler32, base_adler32, chunks = {same=, ...}}, ...}}
#include <string>

#include "delta/adler32.hpp"
#include "delta/codec.hpp"
#include "lua_support.hpp"
#include "module.hpp"

namespace flare::lua {
namespace {

using namespace flare::delta;

EncodeOptions encode_options(lua_State* L, int idx, const char* who, Metadata* metadata) {
  Options opts(L, idx, who, false);
  EncodeOptions o;
  o.zstd_level = static_cast<int>(opts.integer("level", o.zstd_level, 0, 19));
  o.threads = static_cast<unsigned>(opts.integer("threads", o.threads, 0, 256));
  o.chunk_elements = static_cast<uint64_t>(
      opts.integer("chunk_elements", static_cast<long long>(o.chunk_elements), 0, 1 << 24));
  o.base_identity = opts.string("base_identity", o.base_identity);
  if (metadata) {
    if (auto m = opts.string_map("metadata"))
      for (auto& [k, v] : *m) (*metadata)[k] = std::move(v);
  }
  opts.finish();
  return o;
}

ApplyOptions apply_options(lua_State* L, int idx, const char* who) {
  Options opts(L, idx, who, false);
  ApplyOptions o;
  o.threads = static_cast<unsigned>(opts.integer("threads", o.threads, 0, 256));
  o.expect_base_identity = opts.opt_string("expect_base_identity");
  opts.finish();
  return o;
}

void push_shape(lua_State* L, const Shape& s) {
  lua_createtable(L, static_cast<int>(s.size()), 0);
  for (size_t i = 0; i < s.size(); ++i) {
    lua_pushnumber(L, static_cast<double>(s[i]));
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

void set_string(lua_State* L, const char* k, std::string_view v) {
  lua_pushlstring(L, v.data(), v.size());
  lua_setfield(L, -2, k);
}
void set_number(lua_State* L, const char* k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

void push_metadata(lua_State* L, const Metadata& m) {
  lua_createtable(L, 0, static_cast<int>(m.size()));
  for (const auto& [k, v] : m) set_string(L, k.c_str(), v);
}

void push_info(lua_State* L, const DeltaInfo& info) {
  lua_createtable(L, 0, 10);
  set_string(L, "format", info.format);
  set_number(L, "version", info.version);
  set_string(L, "base_identity", info.base_identity);
  set_number(L, "base_digest", info.base_digest);
  set_number(L, "base_bytes", static_cast<double>(info.base_tensor_bytes));
  set_number(L, "new_bytes", static_cast<double>(info.next_tensor_bytes));
  set_number(L, "delta_bytes", static_cast<double>(info.delta_bytes));
  set_number(L, "ratio", info.ratio());
  push_metadata(L, info.metadata);
  lua_setfield(L, -2, "metadata");
  lua_createtable(L, static_cast<int>(info.tensors.size()), 0);
  for (size_t i = 0; i < info.tensors.size(); ++i) {
    const TensorDeltaInfo& t = info.tensors[i];
    lua_createtable(L, 0, 16);
    set_string(L, "name", t.name);
    set_string(L, "change", change_name(t.change));
    set_string(L, "encoding", t.encoding);
    set_string(L, "dtype", dtype_name(t.dtype));
    push_shape(L, t.shape);
    lua_setfield(L, -2, "shape");
    if (t.base_dtype) set_string(L, "base_dtype", dtype_name(*t.base_dtype));
    if (t.base_shape) {
      push_shape(L, *t.base_shape);
      lua_setfield(L, -2, "base_shape");
    }
    set_number(L, "elements", static_cast<double>(t.elements));
    set_number(L, "bytes", static_cast<double>(t.bytes));
    set_number(L, "stored_bytes", static_cast<double>(t.stored_bytes));
    set_number(L, "changed", static_cast<double>(t.changed_elements));
    set_number(L, "density", t.density);
    set_number(L, "adler32", t.adler32);
    set_number(L, "base_adler32", t.base_adler32);
    lua_createtable(L, 0, static_cast<int>(kChunkEncodings));
    for (size_t e = 0; e < kChunkEncodings; ++e)
      set_number(L, std::string(encoding_name(static_cast<ChunkEncoding>(e))).c_str(),
                 static_cast<double>(t.chunks[e]));
    lua_setfield(L, -2, "chunks");
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  lua_setfield(L, -2, "tensors");
}

// Reads a tensors table; the views point into Lua strings, which stay alive
// because the table stays on the stack for the whole call.
std::vector<TensorView> read_tensors(lua_State* L, int idx, const char* fn, const char* what) {
  if (!lua_istable(L, idx))
    raise_invalid(fn, std::string("argument '") + what + "' must be a table of tensors, got " +
                          type_of(L, idx));
  std::vector<TensorView> out;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      raise_invalid(fn, std::string(what) + ": tensor names must be strings");
    std::string name = lua_tostring(L, -2);
    const std::string where = std::string(what) + "." + name;
    if (!lua_istable(L, -1)) raise_invalid(fn, where + " must be a table {dtype=, shape=, data=}");
    TensorView t;
    t.name = name;
    lua_getfield(L, -1, "dtype");
    auto d = lua_type(L, -1) == LUA_TSTRING ? dtype_from_name(lua_tostring(L, -1)) : std::nullopt;
    if (!d) raise_invalid(fn, where + ".dtype must name a safetensors dtype (F32, BF16, ...)");
    t.dtype = *d;
    lua_pop(L, 1);
    lua_getfield(L, -1, "shape");
    if (!lua_istable(L, -1)) raise_invalid(fn, where + ".shape must be an array of sizes");
    for (int i = 1;; ++i) {
      lua_rawgeti(L, -1, i);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      double v = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || v < 0 ||
          v != static_cast<double>(static_cast<uint64_t>(v)))
        raise_invalid(fn,
                      where + ".shape[" + std::to_string(i) + "] must be a non-negative integer");
      t.shape.push_back(static_cast<uint64_t>(v));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "data");
    size_t n = 0;
    const char* s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : nullptr;
    if (!s) raise_invalid(fn, where + ".data must be a string of bytes");
    t.data = {reinterpret_cast<const std::byte*>(s), n};
    lua_pop(L, 1);
    uint64_t want = 0;
    try {
      want = element_count(t.shape) * dtype_size(t.dtype);
    } catch (const std::exception&) {
      raise_invalid(fn, where + ".shape has too many elements");
    }
    if (want != n)
      raise_invalid(fn, where + ".data has " + std::to_string(n) + " bytes, its shape needs " +
                            std::to_string(want));
    out.push_back(std::move(t));
    lua_pop(L, 1);
  }
  return out;
}

std::string arg_string(lua_State* L, int idx, const char* fn, const char* name) {
  return std::string(check_string(L, idx, fn, name));
}

int l_compress_files(lua_State* L) {
  const char* fn = "flare.delta.compress_files";
  std::string prev = arg_string(L, 1, fn, "prev"), next = arg_string(L, 2, fn, "new"),
              out = arg_string(L, 3, fn, "out");
  EncodeOptions o = encode_options(L, 4, fn, nullptr);
  push_info(L, encode_files(prev, next, out, o));
  return 1;
}

int l_apply_files(lua_State* L) {
  const char* fn = "flare.delta.apply_files";
  std::string prev = arg_string(L, 1, fn, "prev"), diff = arg_string(L, 2, fn, "diff"),
              out = arg_string(L, 3, fn, "out");
  push_info(L, apply_files(prev, diff, out, apply_options(L, 4, fn)));
  return 1;
}

int l_verify_files(lua_State* L) {
  const char* fn = "flare.delta.verify_files";
  std::string prev = arg_string(L, 1, fn, "prev"), diff = arg_string(L, 2, fn, "diff"),
              next = arg_string(L, 3, fn, "new");
  push_info(L, verify_files(prev, diff, next, apply_options(L, 4, fn)));
  return 1;
}

int l_inspect(lua_State* L) {
  push_info(L, inspect_file(arg_string(L, 1, "flare.delta.inspect", "diff_path")));
  return 1;
}

int l_inspect_bytes(lua_State* L) {
  std::string_view s = check_string(L, 1, "flare.delta.inspect_bytes", "diff");
  push_info(L, inspect(std::as_bytes(std::span(s.data(), s.size()))));
  return 1;
}

int l_compress(lua_State* L) {
  const char* fn = "flare.delta.compress";
  auto a = read_tensors(L, 1, fn, "tensors_a");
  auto b = read_tensors(L, 2, fn, "tensors_b");
  Metadata meta;
  EncodeOptions o = encode_options(L, 3, fn, &meta);
  std::vector<std::byte> d = encode(a, b, meta, o);
  lua_pushlstring(L, reinterpret_cast<const char*>(d.data()), d.size());
  return 1;
}

int l_apply(lua_State* L) {
  const char* fn = "flare.delta.apply";
  auto a = read_tensors(L, 1, fn, "tensors_a");
  std::string_view diff = check_string(L, 2, fn, "diff");
  Checkpoint c = flare::delta::apply(
      a, {reinterpret_cast<const std::byte*>(diff.data()), diff.size()}, apply_options(L, 3, fn));
  lua_createtable(L, 0, static_cast<int>(c.tensors.size()));
  for (const Tensor& t : c.tensors) {
    lua_createtable(L, 0, 3);
    set_string(L, "dtype", dtype_name(t.dtype));
    push_shape(L, t.shape);
    lua_setfield(L, -2, "shape");
    lua_pushlstring(L, reinterpret_cast<const char*>(t.data.data()), t.data.size());
    lua_setfield(L, -2, "data");
    lua_setfield(L, -2, t.name.c_str());
  }
  push_metadata(L, c.metadata);
  return 2;
}

int l_adler32(lua_State* L) {
  const char* fn = "flare.delta.adler32";
  std::string_view s = check_string(L, 1, fn, "s");
  uint32_t seed = kAdler32Init;
  if (!lua_isnoneornil(L, 2))
    seed = static_cast<uint32_t>(check_integer(L, 2, fn, "seed", 0, 4294967295LL));
  lua_pushnumber(L, adler32(std::as_bytes(std::span(s.data(), s.size())), seed));
  return 1;
}

int open_delta(lua_State* L) {
  static const luaL_Reg functions[] = {{"compress_files", l_compress_files},
                                       {"apply_files", l_apply_files},
                                       {"verify_files", l_verify_files},
                                       {"inspect", l_inspect},
                                       {"inspect_bytes", l_inspect_bytes},
                                       {"compress", l_compress},
                                       {"apply", l_apply},
                                       {"adler32", l_adler32},
                                       {nullptr, nullptr}};
  push_functions(L, functions);
  set_string(L, "format_name", kFormatName);
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(delta, flare::lua::open_delta);
