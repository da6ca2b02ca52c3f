#include "delta/codec.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>

#include "delta/adler32.hpp"
#include "delta/chunk_codec.hpp"
#include "delta/delta_format.hpp"
#include "delta/mapped_file.hpp"
#include "runtime/error.hpp"
#include "runtime/file_io.hpp"
#include "runtime/thread_pool.hpp"

namespace flare::delta {

void check_zstd_level(int level) {
  if (level < 1 || level > ZSTD_maxCLevel()) {
    throw Error("invalid_argument", "zstd level " + std::to_string(level) +
                                        " is outside the valid range 1.." +
                                        std::to_string(ZSTD_maxCLevel()));
  }
}
namespace {

std::span<const std::byte> chunk_of(std::span<const std::byte> data, uint64_t index,
                                    uint64_t chunk_bytes) {
  const uint64_t begin = index * chunk_bytes;
  return data.subspan(begin, std::min(chunk_bytes, data.size() - begin));
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// Adler-32 of `data` in pieces of `piece` bytes summed on the pool.
uint32_t pooled_adler(std::span<const std::byte> data, uint64_t piece, unsigned threads) {
  if (data.empty()) return kAdler32Init;
  const uint64_t pieces = (data.size() + piece - 1) / piece;
  std::vector<uint32_t> sums(pieces);
  parallel_for(pieces, threads, [&](size_t i) { sums[i] = adler32(chunk_of(data, i, piece)); });
  uint32_t total = sums[0];
  for (size_t i = 1; i < pieces; ++i)
    total = adler32_combine(total, sums[i], chunk_of(data, i, piece).size());
  return total;
}

// --- encoding ---------------------------------------------------------------

struct Encoded {
  DeltaHeader header;
  std::vector<std::vector<std::byte>> payloads;  // in payload order
  std::vector<uint32_t> payload_adlers;
  uint64_t payload_bytes = 0;
  uint32_t payload_adler = kAdler32Init;
};

using ReleaseFn = std::function<void(std::span<const std::byte>)>;

Encoded encode_core(std::span<const TensorView> base_in, std::span<const TensorView> next_in,
                    const Metadata& metadata, const EncodeOptions& opts, const ReleaseFn& release) {
  if (opts.chunk_elements == 0 || opts.chunk_elements > kMaxChunkElements)
    throw Error("invalid_argument",
                "chunk_elements must be in [1, " + std::to_string(kMaxChunkElements) + "]");
  std::map<std::string_view, const TensorView*> base, next;
  for (const auto& t : base_in)
    if (!base.emplace(t.name, &t).second)
      throw Error("invalid_argument", "base has tensor '" + t.name + "' twice");
  for (const auto& t : next_in)
    if (!next.emplace(t.name, &t).second)
      throw Error("invalid_argument", "next has tensor '" + t.name + "' twice");

  Encoded e;
  DeltaHeader& h = e.header;
  h.base_identity = opts.base_identity;
  h.chunk_elements = opts.chunk_elements;
  h.metadata = metadata;

  struct Job {
    size_t tensor;
    uint64_t chunk;
  };
  std::vector<Job> jobs;
  std::vector<const TensorView*> next_of, base_of;
  for (auto& [name, t] : next) {
    TensorRecord r;
    r.name = t->name;
    r.dtype = t->dtype;
    r.shape = t->shape;
    auto b = base.find(name);
    const TensorView* bt = b == base.end() ? nullptr : b->second;
    if (!bt) {
      r.change = TensorChange::Added;
    } else {
      r.base_dtype = bt->dtype;
      r.base_shape = bt->shape;
      r.change = bt->dtype == t->dtype && bt->shape == t->shape ? TensorChange::Modified
                                                                : TensorChange::Retyped;
    }
    const uint64_t n = t->elements();
    r.chunks.resize((n + h.chunk_elements - 1) / h.chunk_elements);
    for (uint64_t c = 0; c < r.chunks.size(); ++c) jobs.push_back({h.tensors.size(), c});
    next_of.push_back(t);
    base_of.push_back(bt);
    h.tensors.push_back(std::move(r));
  }
  for (auto& [name, bt] : base) {
    if (next.count(name)) continue;
    TensorRecord r;
    r.name = bt->name;
    r.change = TensorChange::Removed;
    r.base_dtype = bt->dtype;
    r.base_shape = bt->shape;
    next_of.push_back(nullptr);
    base_of.push_back(bt);
    h.tensors.push_back(std::move(r));
  }

  ChunkParams params;
  check_zstd_level(opts.zstd_level);
  params.zstd_level = opts.zstd_level;
  if (opts.context_classes > 64)
    throw Error("invalid_argument", "context_classes must be 0 (by density) or in [1, 64]");
  params.classes = opts.context_classes;
  if (opts.class_width < 1 || opts.class_width > 255)
    throw Error("invalid_argument", "class_width must be in [1, 255]");
  params.class_width = opts.class_width;
  std::vector<std::vector<std::byte>> payloads(jobs.size());
  std::vector<uint32_t> payload_adlers(jobs.size());
  parallel_for(jobs.size(), opts.threads, [&](size_t j) {
    TensorRecord& r = h.tensors[jobs[j].tensor];
    const TensorView* nt = next_of[jobs[j].tensor];
    const uint64_t chunk_bytes = h.chunk_elements * dtype_size(r.dtype);
    auto next_chunk = chunk_of(nt->data, jobs[j].chunk, chunk_bytes);
    std::span<const std::byte> base_chunk;
    ChunkRecord& rec = r.chunks[jobs[j].chunk];
    if (r.chunked_base())
      base_chunk = chunk_of(base_of[jobs[j].tensor]->data, jobs[j].chunk, chunk_bytes);
    EncodedChunk ec = encode_chunk(r.dtype, base_chunk, next_chunk, params);
    if (r.chunked_base()) rec.base_adler32 = ec.base_adler32;
    rec.adler32 = ec.next_adler32;
    rec.encoding = ec.encoding;
    rec.changed = ec.changed;
    rec.length = ec.payload.size();
    payload_adlers[j] = adler32(ec.payload);
    payloads[j] = std::move(ec.payload);
    if (release) {
      release(next_chunk);
      release(base_chunk);
    }
  });

  // Whole-tensor checksums of bases that do not line up chunk by chunk.
  for (size_t i = 0; i < h.tensors.size(); ++i)
    if (h.tensors[i].has_base() && !h.tensors[i].chunked_base()) {
      h.tensors[i].base_adler32 = pooled_adler(base_of[i]->data, 8 << 20, opts.threads);
      if (release) release(base_of[i]->data);
    }

  for (size_t j = 0; j < jobs.size(); ++j) {
    TensorRecord& r = h.tensors[jobs[j].tensor];
    ChunkRecord& rec = r.chunks[jobs[j].chunk];
    rec.offset = e.payload_bytes;
    e.payload_adler = e.payload_bytes == 0
                          ? payload_adlers[j]
                          : adler32_combine(e.payload_adler, payload_adlers[j], rec.length);
    if (rec.length == 0 && e.payload_bytes == 0) e.payload_adler = kAdler32Init;
    e.payload_bytes += rec.length;
  }
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    TensorRecord& r = h.tensors[i];
    if (!r.has_next()) continue;
    const uint64_t chunk_bytes = h.chunk_elements * dtype_size(r.dtype);
    const uint64_t total = r.next_bytes();
    uint32_t sum = kAdler32Init, base_sum = kAdler32Init;
    bool all_same = true;
    for (size_t c = 0; c < r.chunks.size(); ++c) {
      const uint64_t len = std::min(chunk_bytes, total - c * chunk_bytes);
      sum = c == 0 ? r.chunks[c].adler32 : adler32_combine(sum, r.chunks[c].adler32, len);
      base_sum = c == 0 ? r.chunks[c].base_adler32
                        : adler32_combine(base_sum, r.chunks[c].base_adler32, len);
      all_same = all_same && r.chunks[c].encoding == ChunkEncoding::Same;
    }
    r.adler32 = sum;
    if (r.chunked_base()) {
      r.base_adler32 = base_sum;
      if (all_same) r.change = TensorChange::Unchanged;
    }
  }
  h.base_digest = base_digest(h.tensors);
  e.payloads = std::move(payloads);
  return e;
}

std::vector<std::byte> serialize(const Encoded& e) {
  std::vector<std::byte> out = delta_preamble(e.header, e.payload_bytes, e.payload_adler);
  out.reserve(out.size() + e.payload_bytes);
  for (const auto& p : e.payloads) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// --- applying ---------------------------------------------------------------

// Where reconstructed chunks go.
struct Sink {
  virtual ~Sink() = default;
  // A buffer of `bytes` bytes for chunk `chunk` of tensor record `tensor`.
  virtual std::span<std::byte> buffer(size_t tensor, uint64_t chunk, uint64_t bytes) = 0;
  // Called once the chunk in `buffer` has been verified.
  virtual void done(size_t tensor, uint64_t chunk, std::span<const std::byte> bytes) = 0;
  // Whether buffers are the chunks' final place, or read again by done().
  virtual OutputUse use() const { return OutputUse::Reread; }
};

[[noreturn]] void base_mismatch(const std::string& what) {
  throw Error("base_mismatch", "delta does not apply to this base: " + what);
}

void check_base_layout(const DeltaHeader& h,
                       const std::map<std::string_view, const TensorView*>& base,
                       const ApplyOptions& opts) {
  if (opts.expect_base_identity && *opts.expect_base_identity != h.base_identity)
    base_mismatch("the delta was made against '" + h.base_identity + "', not '" +
                  *opts.expect_base_identity + "'");
  std::map<std::string_view, const TensorRecord*> records;
  for (const auto& t : h.tensors) records.emplace(t.name, &t);
  for (const auto& [name, bt] : base) {
    auto r = records.find(name);
    if (r == records.end() || !r->second->has_base())
      base_mismatch("the base has tensor '" + bt->name + "', which the delta's base did not have");
  }
  for (const auto& t : h.tensors) {
    if (!t.has_base()) continue;
    auto b = base.find(t.name);
    if (b == base.end()) base_mismatch("tensor '" + t.name + "' is missing from the base");
    if (b->second->dtype != *t.base_dtype || b->second->shape != *t.base_shape)
      base_mismatch("tensor '" + t.name + "' has a different dtype or shape in the base");
  }
}

// release(range) is called with the base's ranges once read, and
// release_payload with the payload's.
void apply_core(const ParsedDelta& d, std::span<const TensorView> base_in, const ApplyOptions& opts,
                Sink& sink, const ReleaseFn& release, const ReleaseFn& release_payload = {}) {
  const DeltaHeader& h = d.header;
  std::map<std::string_view, const TensorView*> base;
  for (const auto& t : base_in) base.emplace(t.name, &t);
  check_base_layout(h, base, opts);

  struct Job {
    size_t tensor;
    uint64_t chunk;
  };
  std::vector<Job> jobs;
  for (size_t i = 0; i < h.tensors.size(); ++i)
    for (uint64_t c = 0; c < h.tensors[i].chunks.size(); ++c) jobs.push_back({i, c});

  // Bases that are not chunked with next (retyped, removed) are checked whole.
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const TensorRecord& t = h.tensors[i];
    if (!t.has_base() || t.chunked_base()) continue;
    auto data = base.at(t.name)->data;
    uint32_t got = pooled_adler(data, 8 << 20, opts.threads);
    if (release) release(data);
    if (got != t.base_adler32)
      base_mismatch("tensor '" + t.name + "' has Adler-32 " + hex32(got) + ", the delta expects " +
                    hex32(t.base_adler32));
  }

  parallel_for(jobs.size(), opts.threads, [&](size_t j) {
    const TensorRecord& t = h.tensors[jobs[j].tensor];
    const ChunkRecord& rec = t.chunks[jobs[j].chunk];
    const uint64_t chunk_bytes = h.chunk_elements * dtype_size(t.dtype);
    const uint64_t begin = jobs[j].chunk * chunk_bytes;
    const uint64_t len = std::min(chunk_bytes, t.next_bytes() - begin);
    const std::string where = "tensor '" + t.name + "' chunk " + std::to_string(jobs[j].chunk);
    std::span<const std::byte> base_chunk;
    if (t.chunked_base()) base_chunk = base.at(t.name)->data.subspan(begin, len);
    auto check_base = [&](uint32_t got) {
      if (t.chunked_base() && got != rec.base_adler32)
        base_mismatch(where + ": base Adler-32 " + hex32(got) + " differs from the delta's " +
                      hex32(rec.base_adler32));
    };
    std::span<std::byte> out = sink.buffer(jobs[j].tensor, jobs[j].chunk, len);
    // The decoder sums the output (and, where the output alone does not show
    // a wrong base, the base) block by block while they are in cache; a wrong
    // base is reported as such even when it made the decoding fail.
    uint64_t changed;
    ChunkSums sums;
    try {
      changed = decode_chunk(t.dtype, rec.encoding, d.payload.subspan(rec.offset, rec.length),
                             base_chunk, out, &sums, sink.use());
    } catch (const Error&) {
      throw;
    } catch (const std::exception& ex) {
      check_base(adler32(base_chunk));
      throw Error(
          "invalid_delta",
          "delta: " + where + " (" + std::string(encoding_name(rec.encoding)) + "): " + ex.what());
    }
    if (sums.base_summed) check_base(sums.base);
    const bool counted = codes_against_base(rec.encoding);
    const uint32_t got = sums.out;
    if (!sums.base_summed && ((counted && changed != rec.changed) || got != rec.adler32))
      check_base(adler32(base_chunk));
    if (counted && changed != rec.changed)
      throw Error("invalid_delta", "delta: " + where + " changes " + std::to_string(changed) +
                                       " elements, its record says " + std::to_string(rec.changed));
    if (got != rec.adler32)
      throw Error("checksum_mismatch", "delta: " + where + ": reconstructed Adler-32 " +
                                           hex32(got) + " differs from the recorded " +
                                           hex32(rec.adler32));
    sink.done(jobs[j].tensor, jobs[j].chunk, out);
    if (release) release(base_chunk);
    if (release_payload) release_payload(d.payload.subspan(rec.offset, rec.length));
  });
}

std::vector<TensorView> next_layout(const DeltaHeader& h, std::vector<size_t>* record_index) {
  std::vector<TensorView> views;
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const TensorRecord& t = h.tensors[i];
    if (!t.has_next()) continue;
    views.push_back({t.name, t.dtype, t.shape, {}});
    if (record_index) record_index->push_back(i);
  }
  return views;
}

// Writes into caller-owned buffers, checked against next's layout up front.
struct CallerSink : Sink {
  const DeltaHeader& h;
  std::vector<std::span<std::byte>> dest;  // per record; empty for removed tensors
  CallerSink(const DeltaHeader& header, std::span<const OutputTensor> out) : h(header) {
    std::map<std::string_view, const OutputTensor*> by_name;
    for (const auto& o : out)
      if (!by_name.emplace(o.name, &o).second)
        throw Error("invalid_argument", "apply_into: output tensor '" + o.name + "' given twice");
    dest.resize(h.tensors.size());
    for (size_t i = 0; i < h.tensors.size(); ++i) {
      const TensorRecord& t = h.tensors[i];
      if (!t.has_next()) continue;
      auto it = by_name.find(t.name);
      if (it == by_name.end())
        throw Error("invalid_argument", "apply_into: no output buffer for tensor '" + t.name + "'");
      const OutputTensor& o = *it->second;
      if (o.dtype != t.dtype || o.shape != t.shape)
        throw Error("invalid_argument", "apply_into: output tensor '" + t.name +
                                            "' has a different dtype or shape than the delta's");
      if (o.data.size() != t.next_bytes())
        throw Error("invalid_argument", "apply_into: output tensor '" + t.name + "' has " +
                                            std::to_string(o.data.size()) + " bytes, needs " +
                                            std::to_string(t.next_bytes()));
      by_name.erase(it);
      dest[i] = o.data;
    }
    if (!by_name.empty())
      throw Error("invalid_argument", "apply_into: the delta has no tensor '" +
                                          std::string(by_name.begin()->first) + "'");
  }
  std::span<std::byte> buffer(size_t tensor, uint64_t chunk, uint64_t bytes) override {
    const uint64_t chunk_bytes = h.chunk_elements * dtype_size(h.tensors[tensor].dtype);
    return dest[tensor].subspan(chunk * chunk_bytes, bytes);
  }
  void done(size_t, uint64_t, std::span<const std::byte>) override {}
  OutputUse use() const override { return OutputUse::Kept; }
};

// Writes verified chunks straight into their place in the output file.
struct FileSink : Sink {
  AtomicFile& file;
  const DeltaHeader& h;
  std::vector<uint64_t> tensor_offset;  // per record
  explicit FileSink(AtomicFile& f, const DeltaHeader& header) : file(f), h(header) {
    std::vector<size_t> index;
    std::vector<TensorView> views = next_layout(h, &index);
    std::vector<uint64_t> offsets;
    std::vector<std::byte> head = safetensors_header_for(views, h, offsets);
    tensor_offset.assign(h.tensors.size(), 0);
    uint64_t total = head.size();
    for (size_t k = 0; k < index.size(); ++k) {
      tensor_offset[index[k]] = offsets[k];
      total += h.tensors[index[k]].next_bytes();
    }
    file.reserve(total);
    file.write_at(0, head);
  }
  static std::vector<std::byte> safetensors_header_for(const std::vector<TensorView>& views,
                                                       const DeltaHeader& h,
                                                       std::vector<uint64_t>& offsets) {
    std::vector<TensorSpec> specs;
    for (const auto& v : views) specs.push_back({v.name, v.dtype, v.shape});
    return safetensors_header(specs, h.metadata, &offsets);
  }
  std::span<std::byte> buffer(size_t, uint64_t, uint64_t bytes) override {
    thread_local std::vector<std::byte> buf;
    buf.resize(bytes);
    return buf;
  }
  void done(size_t tensor, uint64_t chunk, std::span<const std::byte> bytes) override {
    const uint64_t chunk_bytes = h.chunk_elements * dtype_size(h.tensors[tensor].dtype);
    file.write_at(tensor_offset[tensor] + chunk * chunk_bytes, bytes);
  }
};

// Compares reconstructed chunks with an expected checkpoint.
struct CompareSink : Sink {
  const DeltaHeader& h;
  const SafetensorsFile& expected;
  explicit CompareSink(const DeltaHeader& header, const SafetensorsFile& next)
      : h(header), expected(next) {}
  std::span<std::byte> buffer(size_t, uint64_t, uint64_t bytes) override {
    thread_local std::vector<std::byte> buf;
    buf.resize(bytes);
    return buf;
  }
  void done(size_t tensor, uint64_t chunk, std::span<const std::byte> bytes) override {
    const TensorRecord& t = h.tensors[tensor];
    const uint64_t chunk_bytes = h.chunk_elements * dtype_size(t.dtype);
    auto want = expected.at(t.name).data.subspan(chunk * chunk_bytes, bytes.size());
    if (!std::equal(bytes.begin(), bytes.end(), want.begin()))
      throw Error("checksum_mismatch", "verify: tensor '" + t.name + "' chunk " +
                                           std::to_string(chunk) +
                                           " differs from the new checkpoint");
    expected.release(want);
  }
};

SafetensorsFile open_checkpoint(const std::string& path) {
  return SafetensorsFile::open(path);
}

}  // namespace

std::vector<std::byte> encode(std::span<const TensorView> base, std::span<const TensorView> next,
                              const Metadata& next_metadata, const EncodeOptions& opts) {
  return serialize(encode_core(base, next, next_metadata, opts, {}));
}

Checkpoint apply(std::span<const TensorView> base, std::span<const std::byte> delta,
                 const ApplyOptions& opts) {
  ParsedDelta d = parse_delta(delta);
  Checkpoint next{{}, d.header.metadata};
  for (const auto& t : d.header.tensors)
    if (t.has_next())
      next.tensors.push_back({t.name, t.dtype, t.shape, std::vector<std::byte>(t.next_bytes())});
  std::sort(next.tensors.begin(), next.tensors.end(),
            [](const Tensor& a, const Tensor& b) { return a.name < b.name; });
  std::vector<OutputTensor> out;
  for (auto& t : next.tensors) out.push_back({t.name, t.dtype, t.shape, t.data});
  CallerSink sink(d.header, out);
  apply_core(d, base, opts, sink, {});
  return next;
}

Metadata apply_into(std::span<const TensorView> base, std::span<const std::byte> delta,
                    std::span<const OutputTensor> out, const ApplyOptions& opts) {
  ParsedDelta d = parse_delta(delta);
  CallerSink sink(d.header, out);
  apply_core(d, base, opts, sink, {});
  return d.header.metadata;
}

DeltaInfo inspect(std::span<const std::byte> delta) {
  return describe(parse_delta(delta));
}

DeltaInfo encode_files(const std::string& base_path, const std::string& next_path,
                       const std::string& out_path, const EncodeOptions& opts) {
  SafetensorsFile base = open_checkpoint(base_path);
  SafetensorsFile next = open_checkpoint(next_path);
  EncodeOptions o = opts;
  if (o.base_identity.empty()) o.base_identity = base_path.substr(base_path.find_last_of('/') + 1);
  Encoded e = encode_core(base.tensors(), next.tensors(), next.metadata(), o, {});
  std::vector<std::byte> pre = delta_preamble(e.header, e.payload_bytes, e.payload_adler);
  AtomicFile out(out_path);
  out.write_at(0, pre);
  uint64_t offset = pre.size();
  for (const auto& p : e.payloads) {
    out.write_at(offset, p);
    offset += p.size();
  }
  out.commit(/*durable=*/true);  // a finished file survives a crash, as SQLite's do
  ParsedDelta parsed{std::move(e.header), {}, offset};
  return describe(parsed);
}

DeltaInfo apply_files(const std::string& base_path, const std::string& delta_path,
                      const std::string& out_path, const ApplyOptions& opts) {
  // The delta is mapped and its pages released once read, like the base's:
  // resident memory stays near a few chunks whatever the delta's size.
  const MappedFile delta = MappedFile::open(delta_path);
  auto release_delta = [&](std::span<const std::byte> r) { delta.release(r); };
  ParsedDelta d;
  try {
    d = parse_delta(delta.bytes(), release_delta);
  } catch (const Error& e) {
    throw Error(e.code, delta_path + ": " + e.what());
  }
  SafetensorsFile base = open_checkpoint(base_path);
  AtomicFile out(out_path);
  FileSink sink(out, d.header);
  apply_core(
      d, base.tensors(), opts, sink, [&](std::span<const std::byte> r) { base.release(r); },
      release_delta);
  out.commit(/*durable=*/true);
  return describe(d);
}

DeltaInfo inspect_file(const std::string& delta_path) {
  std::vector<std::byte> bytes = read_file(delta_path);
  try {
    return describe(parse_delta(bytes));
  } catch (const Error& e) {
    throw Error(e.code, delta_path + ": " + e.what());
  }
}

DeltaInfo verify_files(const std::string& base_path, const std::string& delta_path,
                       const std::string& next_path, const ApplyOptions& opts) {
  std::vector<std::byte> bytes = read_file(delta_path);
  ParsedDelta d = parse_delta(bytes);
  SafetensorsFile base = open_checkpoint(base_path);
  SafetensorsFile next = open_checkpoint(next_path);
  std::vector<TensorView> layout = next_layout(d.header, nullptr);
  if (layout.size() != next.tensors().size())
    throw Error("checksum_mismatch", "verify: the delta yields " + std::to_string(layout.size()) +
                                         " tensors, the new checkpoint has " +
                                         std::to_string(next.tensors().size()));
  for (const auto& v : layout) {
    const TensorView* t = next.find(v.name);
    if (!t)
      throw Error("checksum_mismatch",
                  "verify: tensor '" + v.name + "' is not in the new checkpoint");
    if (t->dtype != v.dtype || t->shape != v.shape)
      throw Error("checksum_mismatch", "verify: tensor '" + v.name +
                                           "' has another dtype or shape in the new checkpoint");
  }
  if (next.metadata() != d.header.metadata)
    throw Error("checksum_mismatch", "verify: __metadata__ differs from the new checkpoint's");
  CompareSink sink(d.header, next);
  apply_core(d, base.tensors(), opts, sink, [&](std::span<const std::byte> r) { base.release(r); });
  return describe(d);
}

}  // namespace flare::delta
