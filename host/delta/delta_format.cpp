#include "delta/delta_format.hpp"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "delta/adler32.hpp"
#include "runtime/error.hpp"

namespace flare::delta {
namespace {

using nlohmann::json;

[[noreturn]] void invalid(const std::string& what) {
  throw Error("invalid_delta", "delta: " + what);
}

void put_le(std::byte* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}
uint64_t get_le(const std::byte* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | std::to_integer<uint64_t>(p[i]);
  return v;
}

constexpr std::string_view kChangeNames[] = {"unchanged", "modified", "added", "removed",
                                             "retyped"};
constexpr std::string_view kEncodingNames[] = {"same", "sparse", "dense", "raw", "full", "classed"};

json shape_json(const Shape& s) {
  json a = json::array();
  for (uint64_t d : s) a.push_back(d);
  return a;
}

const json& field(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) invalid(where + ": field '" + key + "' is missing");
  return *it;
}
uint64_t get_uint(const json& v, const std::string& where, uint64_t max = UINT64_MAX) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    invalid(where + " must be a non-negative integer");
  uint64_t x = v.get<uint64_t>();
  if (x > max)
    invalid(where + " is " + std::to_string(x) + ", above the limit " + std::to_string(max));
  return x;
}
std::string get_string(const json& v, const std::string& where) {
  if (!v.is_string()) invalid(where + " must be a string");
  return v.get<std::string>();
}
DType get_dtype(const json& v, const std::string& where) {
  auto d = dtype_from_name(get_string(v, where));
  if (!d) invalid(where + " names unknown dtype '" + v.get<std::string>() + "'");
  return *d;
}
Shape get_shape(const json& v, const std::string& where) {
  if (!v.is_array()) invalid(where + " must be an array");
  Shape s;
  for (const auto& d : v) s.push_back(get_uint(d, where + " dimension"));
  try {
    element_count(s);
  } catch (const std::exception&) {
    invalid(where + " " + v.dump() + " has more than 2^62 elements");
  }
  return s;
}

}  // namespace

std::string_view change_name(TensorChange c) {
  return kChangeNames[static_cast<size_t>(c)];
}
std::string_view encoding_name(ChunkEncoding e) {
  return kEncodingNames[static_cast<size_t>(e)];
}

uint32_t base_digest(const std::vector<TensorRecord>& tensors) {
  std::vector<const TensorRecord*> with_base;
  for (const auto& t : tensors)
    if (t.has_base()) with_base.push_back(&t);
  std::sort(with_base.begin(), with_base.end(), [](auto* a, auto* b) { return a->name < b->name; });
  uint32_t sum = kAdler32Init;
  for (const TensorRecord* t : with_base) {
    std::string line = t->name + "\t" + std::string(dtype_name(*t->base_dtype)) + "\t" +
                       shape_json(*t->base_shape).dump() + "\t" + std::to_string(t->base_adler32) +
                       "\n";
    sum = adler32(std::as_bytes(std::span(line.data(), line.size())), sum);
  }
  return sum;
}

std::vector<std::byte> delta_preamble(const DeltaHeader& h, uint64_t payload_bytes,
                                      uint32_t payload_adler) {
  json tensors = json::array();
  for (const auto& t : h.tensors) {
    json r = {{"name", t.name}, {"change", std::string(change_name(t.change))}};
    if (t.has_next()) {
      r["dtype"] = std::string(dtype_name(t.dtype));
      r["shape"] = shape_json(t.shape);
      r["adler32"] = t.adler32;
    }
    if (t.has_base()) {
      r["base_dtype"] = std::string(dtype_name(*t.base_dtype));
      r["base_shape"] = shape_json(*t.base_shape);
      r["base_adler32"] = t.base_adler32;
    }
    if (t.has_next()) {
      json chunks = json::array();
      for (const auto& c : t.chunks)
        chunks.push_back({static_cast<int>(c.encoding), c.offset, c.length, c.base_adler32,
                          c.adler32, c.changed});
      r["chunks"] = std::move(chunks);
    }
    tensors.push_back(std::move(r));
  }
  json j = {{"format", std::string(kFormatName)},
            {"base", {{"identity", h.base_identity}, {"digest", h.base_digest}}},
            {"chunk_elements", h.chunk_elements},
            {"metadata", h.metadata},
            {"tensors", std::move(tensors)}};
  std::string text = j.dump();
  std::vector<std::byte> out(kPrefixBytes + text.size());
  std::memcpy(out.data(), kMagic, 8);
  put_le(&out[8], kFormatVersion, 4);
  put_le(&out[12], adler32(std::as_bytes(std::span(text.data(), text.size()))), 4);
  put_le(&out[16], text.size(), 8);
  put_le(&out[24], payload_bytes, 8);
  put_le(&out[32], payload_adler, 4);
  put_le(&out[36], 0, 4);
  std::memcpy(out.data() + kPrefixBytes, text.data(), text.size());
  return out;
}

ParsedDelta parse_delta(std::span<const std::byte> bytes,
                        const std::function<void(std::span<const std::byte>)>& release) {
  const uint64_t size = bytes.size();
  if (size == 0) invalid("empty file");
  if (size < kPrefixBytes)
    invalid("file is " + std::to_string(size) + " bytes, shorter than the " +
            std::to_string(kPrefixBytes) + "-byte prefix (truncated?)");
  if (std::memcmp(bytes.data(), kMagic, 8) != 0)
    invalid("bad magic at offset 0: not a flare-delta file");
  const uint64_t version = get_le(&bytes[8], 4);
  if (version != kFormatVersion)
    invalid("format version " + std::to_string(version) +
            " at offset 8 is not supported (expected " + std::to_string(kFormatVersion) + ")");
  const uint32_t header_adler = static_cast<uint32_t>(get_le(&bytes[12], 4));
  const uint64_t header_len = get_le(&bytes[16], 8);
  const uint64_t payload_len = get_le(&bytes[24], 8);
  const uint32_t payload_adler = static_cast<uint32_t>(get_le(&bytes[32], 4));
  if (get_le(&bytes[36], 4) != 0) invalid("reserved field at offset 36 is not zero");
  if (header_len > kMaxDeltaHeaderBytes)
    invalid("header length " + std::to_string(header_len) + " at offset 16 is absurd");
  if (payload_len > size || header_len + payload_len != size - kPrefixBytes)
    invalid("file is " + std::to_string(size) + " bytes but the prefix announces " +
            std::to_string(header_len) + " header + " + std::to_string(payload_len) +
            " payload bytes (truncated or trailing data)");
  auto header_bytes = bytes.subspan(kPrefixBytes, header_len);
  if (adler32(header_bytes) != header_adler) invalid("header checksum mismatch (corrupt header)");
  ParsedDelta d;
  d.payload = bytes.subspan(kPrefixBytes + header_len, payload_len);
  d.total_bytes = size;
  uint32_t sum = kAdler32Init;
  constexpr uint64_t kPiece = uint64_t{4} << 20;  // resident at once while summed
  const uint64_t piece = release ? kPiece : std::max<uint64_t>(payload_len, 1);
  for (uint64_t at = 0; at < payload_len; at += piece) {
    const auto part = d.payload.subspan(at, std::min(piece, payload_len - at));
    sum = at == 0 ? adler32_parallel(part)
                  : adler32_combine(sum, adler32_parallel(part), part.size());
    if (release) release(part);
  }
  if (sum != payload_adler) invalid("payload checksum mismatch (corrupt payload)");

  json j;
  try {
    j = json::parse(reinterpret_cast<const char*>(header_bytes.data()),
                    reinterpret_cast<const char*>(header_bytes.data()) + header_bytes.size());
  } catch (const json::exception& e) {
    invalid(std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) invalid("header is not a JSON object");
  if (get_string(field(j, "format", "header"), "header.format") != kFormatName)
    invalid("header.format is not " + std::string(kFormatName));
  DeltaHeader& h = d.header;
  const json& base = field(j, "base", "header");
  if (!base.is_object()) invalid("header.base must be an object");
  h.base_identity = get_string(field(base, "identity", "header.base"), "header.base.identity");
  h.base_digest = static_cast<uint32_t>(
      get_uint(field(base, "digest", "header.base"), "header.base.digest", UINT32_MAX));
  h.chunk_elements =
      get_uint(field(j, "chunk_elements", "header"), "header.chunk_elements", kMaxChunkElements);
  if (h.chunk_elements == 0) invalid("header.chunk_elements is 0");
  const json& meta = field(j, "metadata", "header");
  if (!meta.is_object()) invalid("header.metadata must be an object");
  for (auto it = meta.begin(); it != meta.end(); ++it)
    h.metadata[it.key()] = get_string(it.value(), "header.metadata." + it.key());
  const json& tensors = field(j, "tensors", "header");
  if (!tensors.is_array()) invalid("header.tensors must be an array");

  std::set<std::string> names;
  uint64_t expect_offset = 0;
  for (const json& r : tensors) {
    if (!r.is_object()) invalid("header.tensors has an entry that is not an object");
    TensorRecord t;
    t.name = get_string(field(r, "name", "tensor"), "tensor name");
    const std::string where = "tensor '" + t.name + "'";
    if (!names.insert(t.name).second) invalid(where + " appears twice");
    std::string change = get_string(field(r, "change", where), where + ".change");
    auto ci = std::find(std::begin(kChangeNames), std::end(kChangeNames), change);
    if (ci == std::end(kChangeNames)) invalid(where + ".change '" + change + "' is unknown");
    t.change = static_cast<TensorChange>(ci - std::begin(kChangeNames));
    if (t.has_base()) {
      t.base_dtype = get_dtype(field(r, "base_dtype", where), where + ".base_dtype");
      t.base_shape = get_shape(field(r, "base_shape", where), where + ".base_shape");
      t.base_adler32 = static_cast<uint32_t>(
          get_uint(field(r, "base_adler32", where), where + ".base_adler32", UINT32_MAX));
    }
    if (t.has_next()) {
      t.dtype = get_dtype(field(r, "dtype", where), where + ".dtype");
      t.shape = get_shape(field(r, "shape", where), where + ".shape");
      t.adler32 = static_cast<uint32_t>(
          get_uint(field(r, "adler32", where), where + ".adler32", UINT32_MAX));
      const bool same_layout = t.has_base() && t.dtype == *t.base_dtype && t.shape == *t.base_shape;
      if (t.chunked_base() != same_layout)
        invalid(where + ": change '" + change +
                "' disagrees with its dtype/shape and base_dtype/base_shape");
      const uint64_t elements = element_count(t.shape);
      const uint64_t want_chunks = (elements + h.chunk_elements - 1) / h.chunk_elements;
      const json& chunks = field(r, "chunks", where);
      if (!chunks.is_array()) invalid(where + ".chunks must be an array");
      if (chunks.size() != want_chunks)
        invalid(where + " has " + std::to_string(chunks.size()) + " chunks but its " +
                std::to_string(elements) + " elements need " + std::to_string(want_chunks));
      uint32_t sum = kAdler32Init, base_sum = kAdler32Init;
      for (size_t i = 0; i < chunks.size(); ++i) {
        const json& c = chunks[i];
        const std::string cw = where + " chunk " + std::to_string(i);
        if (!c.is_array() || c.size() != 6)
          invalid(cw + " must be [encoding, offset, length, base_adler32, adler32, changed]");
        ChunkRecord rec;
        uint64_t enc = get_uint(c[0], cw + " encoding", kChunkEncodings - 1);
        rec.encoding = static_cast<ChunkEncoding>(enc);
        rec.offset = get_uint(c[1], cw + " offset");
        rec.length = get_uint(c[2], cw + " length");
        rec.base_adler32 = static_cast<uint32_t>(get_uint(c[3], cw + " base_adler32", UINT32_MAX));
        rec.adler32 = static_cast<uint32_t>(get_uint(c[4], cw + " adler32", UINT32_MAX));
        const uint64_t n = std::min(h.chunk_elements, elements - i * h.chunk_elements);
        rec.changed = get_uint(c[5], cw + " changed", n);
        if (rec.offset != expect_offset)
          invalid(cw + " payload offset " + std::to_string(rec.offset) + " is not the expected " +
                  std::to_string(expect_offset));
        if (rec.length > payload_len - rec.offset)
          invalid(cw + " payload [" + std::to_string(rec.offset) + ", +" +
                  std::to_string(rec.length) + ") runs past the " + std::to_string(payload_len) +
                  "-byte payload");
        expect_offset += rec.length;
        if (codes_against_base(rec.encoding) && !t.chunked_base())
          invalid(cw + " encoding '" + std::string(encoding_name(rec.encoding)) +
                  "' needs a base chunk");
        if (t.change == TensorChange::Unchanged && rec.encoding != ChunkEncoding::Same)
          invalid(cw + " of an unchanged tensor is not 'same'");
        if (rec.encoding == ChunkEncoding::Same &&
            (rec.changed != 0 || rec.adler32 != rec.base_adler32))
          invalid(cw + " is 'same' but records a change");
        const uint64_t chunk_bytes = n * dtype_size(t.dtype);
        sum = i == 0 ? rec.adler32 : adler32_combine(sum, rec.adler32, chunk_bytes);
        base_sum =
            i == 0 ? rec.base_adler32 : adler32_combine(base_sum, rec.base_adler32, chunk_bytes);
        t.chunks.push_back(rec);
      }
      if (t.adler32 != sum) invalid(where + ".adler32 does not match its chunks' checksums");
      if (t.chunked_base() && t.base_adler32 != base_sum)
        invalid(where + ".base_adler32 does not match its chunks' base checksums");
    }
    h.tensors.push_back(std::move(t));
  }
  if (expect_offset != payload_len)
    invalid("chunks cover " + std::to_string(expect_offset) + " of the " +
            std::to_string(payload_len) + " payload bytes");
  if (base_digest(h.tensors) != h.base_digest)
    invalid("header.base.digest does not match the base records");
  return d;
}

DeltaInfo describe(const ParsedDelta& d) {
  DeltaInfo info;
  info.format = std::string(kFormatName);
  info.version = kFormatVersion;
  info.base_identity = d.header.base_identity;
  info.base_digest = d.header.base_digest;
  info.delta_bytes = d.total_bytes;
  info.metadata = d.header.metadata;
  for (const auto& t : d.header.tensors) {
    TensorDeltaInfo ti;
    ti.name = t.name;
    ti.change = t.change;
    ti.dtype = t.has_next() ? t.dtype : *t.base_dtype;
    ti.shape = t.has_next() ? t.shape : *t.base_shape;
    ti.base_dtype = t.base_dtype;
    ti.base_shape = t.base_shape;
    ti.elements = element_count(ti.shape);
    ti.bytes = t.next_bytes();
    ti.base_adler32 = t.base_adler32;
    ti.adler32 = t.adler32;
    if (t.has_base())
      info.base_tensor_bytes += element_count(*t.base_shape) * dtype_size(*t.base_dtype);
    info.next_tensor_bytes += ti.bytes;
    uint64_t by_encoding[kChunkEncodings] = {};
    for (const auto& c : t.chunks) {
      ti.stored_bytes += c.length;
      ti.changed_elements += c.changed;
      ++ti.chunks[static_cast<size_t>(c.encoding)];
      by_encoding[static_cast<size_t>(c.encoding)] += c.length + 1;
    }
    if (t.change == TensorChange::Removed) {
      ti.encoding = "removed";
    } else {
      size_t best = static_cast<size_t>(
          std::max_element(by_encoding, by_encoding + kChunkEncodings) - by_encoding);
      ti.encoding = std::string(encoding_name(static_cast<ChunkEncoding>(best)));
    }
    ti.density =
        ti.elements && t.has_next() ? static_cast<double>(ti.changed_elements) / ti.elements : 0;
    info.tensors.push_back(std::move(ti));
  }
  return info;
}

}  // namespace flare::delta
