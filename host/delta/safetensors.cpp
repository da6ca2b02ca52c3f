#include "delta/safetensors.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "delta/mapped_file.hpp"
#include "runtime/error.hpp"
#include "runtime/file_io.hpp"

namespace flare::delta {
namespace {

constexpr std::string_view kDTypeNames[] = {"F64", "F32", "F16", "BF16",   "F8_E4M3", "F8_E5M2",
                                            "I64", "I32", "I16", "I8",     "U8",      "BOOL",
                                            "U64", "U32", "U16", "F8_E8M0"};
constexpr size_t kDTypeSizes[] = {8, 4, 2, 2, 1, 1, 8, 4, 2, 1, 1, 1, 8, 4, 2, 1};

[[noreturn]] void invalid(const std::string& what) {
  throw Error("invalid_safetensors", "safetensors: " + what);
}

uint64_t read_le64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<uint64_t>(p[i]);
  return v;
}

uint64_t json_uint(const nlohmann::json& v, const std::string& where) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer() && v.get<int64_t>() >= 0) return v.get<uint64_t>();
    invalid(where + " must be a non-negative integer, got " + v.dump());
  }
  return v.get<uint64_t>();
}

std::vector<size_t> safetensors_order(std::span<const TensorSpec> tensors) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    size_t sa = dtype_size(tensors[a].dtype), sb = dtype_size(tensors[b].dtype);
    return sa != sb ? sa > sb : tensors[a].name < tensors[b].name;
  });
  return order;
}

}  // namespace

size_t dtype_size(DType d) {
  return kDTypeSizes[static_cast<size_t>(d)];
}
std::string_view dtype_name(DType d) {
  return kDTypeNames[static_cast<size_t>(d)];
}
std::optional<DType> dtype_from_name(std::string_view s) {
  for (size_t i = 0; i < std::size(kDTypeNames); ++i)
    if (kDTypeNames[i] == s) return static_cast<DType>(i);
  return std::nullopt;
}

uint64_t element_count(const Shape& shape) {
  constexpr uint64_t kLimit = uint64_t{1} << 62;
  uint64_t n = 1;
  for (uint64_t d : shape) {
    if (d == 0) return 0;
    if (n > kLimit / d) throw std::runtime_error("shape has more than 2^62 elements");
    n *= d;
  }
  return n;
}

struct SafetensorsFile::Mapping {
  MappedFile file;
  std::vector<std::byte> owned;
};

SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.mapping_ = std::make_unique<Mapping>();
  f.mapping_->file = MappedFile::open(path);
  f.bytes_ = f.mapping_->file.bytes();
  try {
    f.parse();
  } catch (const Error& e) {
    throw Error(e.code, path + ": " + e.what());
  }
  return f;
}

SafetensorsFile SafetensorsFile::view_bytes(std::span<const std::byte> bytes) {
  SafetensorsFile f;
  f.bytes_ = bytes;
  f.parse();
  return f;
}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<std::byte> bytes) {
  SafetensorsFile f;
  f.mapping_ = std::make_unique<Mapping>();
  f.mapping_->owned = std::move(bytes);
  f.bytes_ = f.mapping_->owned;
  f.parse();
  return f;
}

void SafetensorsFile::release(std::span<const std::byte> range) const {
  if (mapping_) mapping_->file.release(range);
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorView& SafetensorsFile::at(std::string_view name) const {
  if (const TensorView* t = find(name)) return *t;
  throw Error("invalid_safetensors", "safetensors: no tensor named '" + std::string(name) + "'");
}

void SafetensorsFile::parse() {
  const uint64_t size = bytes_.size();
  if (size == 0) invalid("empty file (a safetensors file starts with an 8-byte header length)");
  if (size < 8)
    invalid("file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  const uint64_t n = read_le64(bytes_.data());
  if (n > kMaxHeaderBytes)
    invalid("header length " + std::to_string(n) + " exceeds the limit of " +
            std::to_string(kMaxHeaderBytes) + " bytes");
  if (n > size - 8)
    invalid("header length " + std::to_string(n) + " runs past the end of the " +
            std::to_string(size) + "-byte file");
  if (n < 2) invalid("header length " + std::to_string(n) + " is too short for a JSON object");
  header_size_ = 8 + n;
  const char* text = reinterpret_cast<const char*>(bytes_.data() + 8);
  if (text[0] != '{') invalid("header does not start with '{'");

  std::set<std::string> keys;
  std::string duplicate;
  nlohmann::json::parser_callback_t on_event = [&](int depth, nlohmann::json::parse_event_t ev,
                                                   nlohmann::json& parsed) {
    if (ev == nlohmann::json::parse_event_t::key && depth == 1 &&
        !keys.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + n, on_event);
  } catch (const nlohmann::json::exception& e) {
    invalid(std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) invalid("tensor '" + duplicate + "' appears twice in the header");
  if (!header.is_object()) invalid("header is not a JSON object");

  const uint64_t data_size = size - header_size_;
  struct Entry {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) invalid("__metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) invalid("__metadata__." + m.key() + " must be a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) invalid(where + " must be an object");
    for (auto f = v.begin(); f != v.end(); ++f)
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        invalid(where + " has unknown field '" + f.key() + "'");
    if (!v.contains("dtype") || !v["dtype"].is_string())
      invalid(where + ": dtype missing or not a string");
    auto dtype = dtype_from_name(v["dtype"].get<std::string>());
    if (!dtype) invalid(where + ": unknown dtype '" + v["dtype"].get<std::string>() + "'");
    if (!v.contains("shape") || !v["shape"].is_array())
      invalid(where + ": shape missing or not an array");
    Shape shape;
    for (const auto& d : v["shape"]) shape.push_back(json_uint(d, where + ": shape"));
    const auto& off = v.contains("data_offsets") ? v["data_offsets"] : nlohmann::json();
    if (!off.is_array() || off.size() != 2) invalid(where + ": data_offsets must be [begin, end]");
    uint64_t begin = json_uint(off[0], where + ": data_offsets[0]");
    uint64_t end = json_uint(off[1], where + ": data_offsets[1]");
    if (begin > end)
      invalid(where + ": data_offsets begin " + std::to_string(begin) + " is after end " +
              std::to_string(end));
    if (end > data_size)
      invalid(where + ": data_offsets end " + std::to_string(end) + " is past the " +
              std::to_string(data_size) + " bytes of tensor data");
    uint64_t elements = 0;
    try {
      elements = element_count(shape);
    } catch (const std::exception&) {
      invalid(where + ": shape " + v["shape"].dump() + " has more than 2^62 elements");
    }
    const uint64_t expect = elements * dtype_size(*dtype);
    if (elements > (uint64_t{1} << 62) / 8 || expect != end - begin)
      invalid(where + ": data_offsets span " + std::to_string(end - begin) + " bytes but shape " +
              v["shape"].dump() + " of " + std::string(dtype_name(*dtype)) + " needs " +
              std::to_string(expect));
    entries.push_back({begin, end, tensors_.size()});
    tensors_.push_back(
        {name, *dtype, std::move(shape), bytes_.subspan(header_size_ + begin, end - begin)});
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (const Entry& e : entries) {
    const std::string& name = tensors_[e.index].name;
    if (e.begin < expected)
      invalid("tensor '" + name + "': data_offsets begin " + std::to_string(e.begin) +
              " overlaps the previous tensor, which ends at " + std::to_string(expected));
    if (e.begin > expected)
      invalid("tensor '" + name + "': data_offsets begin " + std::to_string(e.begin) +
              " leaves a gap after offset " + std::to_string(expected));
    expected = e.end;
  }
  if (expected != data_size)
    invalid(std::to_string(data_size - expected) +
            " bytes of trailing data after the last tensor (offset " + std::to_string(expected) +
            " of " + std::to_string(data_size) + ")");
  std::vector<TensorView> ordered;
  ordered.reserve(entries.size());
  for (const Entry& e : entries) ordered.push_back(std::move(tensors_[e.index]));
  tensors_ = std::move(ordered);
}

std::vector<std::byte> safetensors_header(std::span<const TensorView> tensors,
                                          const Metadata& metadata,
                                          std::vector<uint64_t>* offsets) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& t : tensors) {
    uint64_t expect = element_count(t.shape) * dtype_size(t.dtype);
    if (expect != t.data.size())
      invalid("tensor '" + t.name + "' has " + std::to_string(t.data.size()) +
              " bytes but its shape needs " + std::to_string(expect));
    specs.push_back({t.name, t.dtype, t.shape});
  }
  return safetensors_header(std::span<const TensorSpec>(specs), metadata, offsets);
}

std::vector<std::byte> safetensors_header(std::span<const TensorSpec> tensors,
                                          const Metadata& metadata,
                                          std::vector<uint64_t>* offsets) {
  std::set<std::string_view> names;
  std::vector<uint64_t> sizes;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") invalid("a tensor may not be named __metadata__");
    if (!names.insert(t.name).second) invalid("tensor '" + t.name + "' given twice");
    sizes.push_back(element_count(t.shape) * dtype_size(t.dtype));
  }
  // Largest dtype first keeps every tensor aligned to its element size; ties
  // by name, as the reference implementation orders them.
  std::vector<size_t> order = safetensors_order(tensors);
  std::string json = "{";
  bool first = true;
  if (!metadata.empty()) {
    json += "\"__metadata__\":" + nlohmann::json(metadata).dump();
    first = false;
  }
  if (offsets) offsets->assign(tensors.size(), 0);
  uint64_t offset = 0;
  std::vector<uint64_t> rel(tensors.size());
  for (size_t i : order) {
    const TensorSpec& t = tensors[i];
    if (!first) json += ",";
    first = false;
    nlohmann::json shape = nlohmann::json::array();
    for (uint64_t d : t.shape) shape.push_back(d);
    json += nlohmann::json(t.name).dump() + ":{\"dtype\":\"" + std::string(dtype_name(t.dtype)) +
            "\",\"shape\":" + shape.dump() + ",\"data_offsets\":[" + std::to_string(offset) + "," +
            std::to_string(offset + sizes[i]) + "]}";
    rel[i] = offset;
    offset += sizes[i];
  }
  json += "}";
  while (json.size() % 8 != 0) json += ' ';
  std::vector<std::byte> out(8 + json.size());
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, json.data(), json.size());
  if (offsets)
    for (size_t i = 0; i < tensors.size(); ++i) (*offsets)[i] = out.size() + rel[i];
  return out;
}

std::vector<std::byte> serialize_safetensors(std::span<const TensorView> tensors,
                                             const Metadata& metadata) {
  std::vector<uint64_t> offsets;
  std::vector<std::byte> out = safetensors_header(tensors, metadata, &offsets);
  uint64_t total = out.size();
  for (const auto& t : tensors) total += t.data.size();
  out.resize(total);
  for (size_t i = 0; i < tensors.size(); ++i)
    if (!tensors[i].data.empty())
      std::memcpy(out.data() + offsets[i], tensors[i].data.data(), tensors[i].data.size());
  return out;
}

void write_safetensors(const std::string& path, std::span<const TensorView> tensors,
                       const Metadata& metadata) {
  std::vector<uint64_t> offsets;
  std::vector<std::byte> header = safetensors_header(tensors, metadata, &offsets);
  AtomicFile out(path);
  out.write_at(0, header);
  for (size_t i = 0; i < tensors.size(); ++i) out.write_at(offsets[i], tensors[i].data);
  out.commit();
}

}  // namespace flare::delta
