#include "delta/chunk_codec.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "delta/bit_kernels.hpp"
#include "delta/varint.hpp"

namespace flare::delta {
namespace {

[[noreturn]] void corrupt(const std::string& what) {
  throw std::runtime_error(what);
}

ExponentField exponent_field(DType d) {
  switch (d) {
    case DType::F64:
      return {52, 11};
    case DType::F32:
      return {23, 8};
    case DType::F16:
      return {10, 5};
    case DType::BF16:
      return {7, 8};
    case DType::F8_E4M3:
      return {3, 4};
    case DType::F8_E5M2:
      return {2, 5};
    default:
      return {0, 0};
  }
}

// --- entropy-coded streams: u8 mode, varint raw length, varint stored length, bytes

enum : uint8_t { kStreamRaw = 0, kStreamZstd = 1 };

struct ZstdContexts {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_DCtx* d = ZSTD_createDCtx();
  ~ZstdContexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
  }
};
ZstdContexts& zstd() {
  thread_local ZstdContexts ctx;
  return ctx;
}

void put_stream(std::vector<std::byte>& out, std::span<const std::byte> raw, int level) {
  std::vector<std::byte>& tmp = [&]() -> std::vector<std::byte>& {
    thread_local std::vector<std::byte> buf;
    return buf;
  }();
  size_t stored = raw.size();
  uint8_t mode = kStreamRaw;
  if (raw.size() >= 32) {
    tmp.resize(ZSTD_compressBound(raw.size()));
    size_t n = ZSTD_compressCCtx(zstd().c, tmp.data(), tmp.size(), raw.data(), raw.size(), level);
    if (ZSTD_isError(n)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(n));
    if (n < raw.size()) {
      mode = kStreamZstd;
      stored = n;
    }
  }
  out.push_back(static_cast<std::byte>(mode));
  put_varint(out, raw.size());
  put_varint(out, stored);
  const std::byte* src = mode == kStreamRaw ? raw.data() : tmp.data();
  out.insert(out.end(), src, src + stored);
}

// Decodes the stream at `pos` into `dst` (resized to the raw length, which must
// not exceed `max_raw`).
void get_stream(std::span<const std::byte> in, size_t& pos, uint64_t max_raw,
                std::vector<std::byte>& dst, const char* what) {
  if (pos >= in.size()) corrupt(std::string(what) + " stream is missing");
  uint8_t mode = std::to_integer<uint8_t>(in[pos++]);
  auto raw = get_varint(in, pos);
  auto stored = get_varint(in, pos);
  if (!raw || !stored) corrupt(std::string(what) + " stream header is truncated");
  if (mode > kStreamZstd)
    corrupt(std::string(what) + " stream has unknown mode " + std::to_string(mode));
  if (*raw > max_raw)
    corrupt(std::string(what) + " stream claims " + std::to_string(*raw) + " bytes, more than " +
            std::to_string(max_raw));
  if (*stored > in.size() - pos)
    corrupt(std::string(what) + " stream runs past the end of the chunk");
  dst.resize(*raw);
  auto body = in.subspan(pos, *stored);
  pos += *stored;
  if (mode == kStreamRaw) {
    if (*stored != *raw) corrupt(std::string(what) + " raw stream length disagrees with its size");
    if (*raw) std::memcpy(dst.data(), body.data(), *raw);
    return;
  }
  size_t n = ZSTD_decompressDCtx(zstd().d, dst.data(), dst.size(), body.data(), body.size());
  if (ZSTD_isError(n)) corrupt(std::string(what) + " stream: zstd: " + ZSTD_getErrorName(n));
  if (n != *raw) corrupt(std::string(what) + " stream decompressed to the wrong size");
}

template <typename T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
void store(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// Values are stored as the zigzag of (next - base) modulo 2^bits: a change of
// one unit in the last place is 1 or 2 whichever way it goes, whereas an XOR
// would spell out the carry chain that the decoder can read off the base.
template <typename T>
T zigzag(T next, T base) {
  using S = std::make_signed_t<T>;
  T d = static_cast<T>(next - base);
  return static_cast<T>(static_cast<T>(d << 1) ^
                        static_cast<T>(static_cast<S>(d) >> (8 * sizeof(T) - 1)));
}
template <typename T>
T unzigzag_add(T base, T z) {
  T d = static_cast<T>((z >> 1) ^ static_cast<T>(-static_cast<T>(z & 1)));
  return static_cast<T>(base + d);
}

thread_local std::vector<uint64_t> t_masks;

struct ClassSetup {
  unsigned classes = 1, width = 1, top = 0;
};

// Elements are visited in blocks small enough for the base, next and class
// bytes of a block to stay in L1 while every class walks over it; walking the
// whole chunk once per class would miss the cache at every changed element.
constexpr size_t kBlockWords = 32;
constexpr size_t kBlock = kBlockWords * 64;

// Class bytes of elements [begin, begin + count) of `base` into cls, padded
// with 0xff (no class) to a whole number of words.
void block_classes(DType dtype, std::span<const std::byte> base, size_t begin, size_t count,
                   const ClassSetup& s, uint8_t* cls) {
  const size_t es = dtype_size(dtype);
  exponent_classes(base.data() + begin * es, count, es, exponent_field(dtype), s.top, s.width,
                   s.classes, cls);
  std::memset(cls + count, 0xff, (count + 63) / 64 * 64 - count);
}

// Bits needed to number `classes` classes.
inline unsigned plane_count(unsigned classes) {
  unsigned nb = 0;
  while ((1u << nb) < classes) ++nb;
  return nb;
}

// Class planes of every word of a block (see class_planes64).
struct BlockPlanes {
  uint64_t p[kBlockWords][6];
  void fill(const uint8_t* cls, size_t words, unsigned nb) {
    for (size_t w = 0; w < words; ++w) class_planes64(cls + 64 * w, nb, p[w]);
  }
};

// Mask of the valid elements of word w of a chunk of n elements.
inline uint64_t valid_mask(size_t w, size_t n) {
  const size_t rest = n - w * 64;
  return rest >= 64 ? ~uint64_t{0} : (uint64_t{1} << rest) - 1;
}

// --- sparse: u8 classes, u8 width, u16 top, varint count per class, then per
// class with changes: gap stream, then one stream per byte plane of the values.

template <typename T>
std::vector<std::byte> encode_sparse(DType dtype, std::span<const std::byte> base,
                                     std::span<const std::byte> next, size_t n,
                                     const ChunkParams& p) {
  const ExponentField f = exponent_field(dtype);
  ClassSetup s;
  if (f.bits && p.classes > 1) {
    s.classes = std::min(p.classes, 64u);
    s.width = std::clamp(p.class_width, 1u, 255u);
    s.top = max_exponent(base.data(), n, sizeof(T), f);
  }
  const size_t words = (n + 63) / 64;
  const uint64_t* masks = t_masks.data();
  std::vector<std::vector<std::byte>> gaps(s.classes), planes(s.classes * sizeof(T));
  std::vector<uint64_t> counts(s.classes, 0), seen(s.classes, 0), next_rank(s.classes, 0);
  const unsigned nb = plane_count(s.classes);
  uint8_t cls[kBlock];
  BlockPlanes planes_of;
  for (size_t w0 = 0; w0 < words; w0 += kBlockWords) {
    const size_t w1 = std::min(words, w0 + kBlockWords);
    // The changed elements of this block are read at random below: fetch the
    // next block's lines ahead so those reads hit the cache.
    for (size_t off = w1 * 64 * sizeof(T); off < std::min(n, w1 * 64 + kBlock) * sizeof(T);
         off += 64) {
      __builtin_prefetch(next.data() + off);
      __builtin_prefetch(base.data() + off);
    }
    bool any = false;
    for (size_t w = w0; w < w1; ++w) any |= masks[w] != 0;
    if (!any && s.classes == 1) continue;
    if (s.classes > 1) {
      block_classes(dtype, base, w0 * 64, std::min(n - w0 * 64, kBlock), s, cls);
      planes_of.fill(cls, w1 - w0, nb);
    }
    for (unsigned k = 0; k < s.classes; ++k) {
      auto& g = gaps[k];
      for (size_t w = w0; w < w1; ++w) {
        uint64_t member = s.classes == 1 ? ~uint64_t{0} : class_member(planes_of.p[w - w0], nb, k);
        if (w + 1 == words) member &= valid_mask(w, n);
        uint64_t hits = member & masks[w];
        while (hits) {
          const unsigned b = static_cast<unsigned>(__builtin_ctzll(hits));
          hits &= hits - 1;
          const uint64_t rank =
              seen[k] +
              static_cast<uint64_t>(__builtin_popcountll(member & ((uint64_t{1} << b) - 1)));
          put_varint(g, rank - next_rank[k]);
          next_rank[k] = rank + 1;
          const size_t i = w * 64 + b;
          const T z =
              zigzag(load<T>(next.data() + i * sizeof(T)), load<T>(base.data() + i * sizeof(T)));
          for (size_t q = 0; q < sizeof(T); ++q)
            planes[k * sizeof(T) + q].push_back(static_cast<std::byte>((z >> (8 * q)) & 0xff));
          ++counts[k];
        }
        seen[k] += static_cast<uint64_t>(__builtin_popcountll(member));
      }
    }
  }
  std::vector<std::byte> out;
  out.push_back(static_cast<std::byte>(s.classes));
  out.push_back(static_cast<std::byte>(s.width));
  out.push_back(static_cast<std::byte>(s.top & 0xff));
  out.push_back(static_cast<std::byte>(s.top >> 8));
  for (uint64_t c : counts) put_varint(out, c);
  for (unsigned k = 0; k < s.classes; ++k) {
    if (!counts[k]) continue;
    put_stream(out, gaps[k], p.zstd_level);
    for (size_t q = 0; q < sizeof(T); ++q) put_stream(out, planes[k * sizeof(T) + q], p.zstd_level);
  }
  return out;
}

// Decoding state of one class: its decoded streams and the next change.
struct ClassCursor {
  uint64_t count = 0, done = 0, target = 0, seen = 0;
  size_t gap_pos = 0;
  std::vector<std::byte> gaps;
  std::vector<std::byte> planes[8];
};

template <typename T>
uint64_t decode_sparse(DType dtype, std::span<const std::byte> in, std::span<const std::byte> base,
                       std::span<std::byte> out, size_t n) {
  if (in.size() < 4) corrupt("sparse chunk header is truncated");
  ClassSetup s;
  s.classes = std::to_integer<unsigned>(in[0]);
  s.width = std::to_integer<unsigned>(in[1]);
  s.top = std::to_integer<unsigned>(in[2]) | (std::to_integer<unsigned>(in[3]) << 8);
  const ExponentField f = exponent_field(dtype);
  if (s.classes < 1 || s.classes > 64 || (s.classes > 1 && f.bits == 0))
    corrupt("sparse chunk has invalid class count " + std::to_string(s.classes));
  if (s.width < 1) corrupt("sparse chunk has class width 0");
  if (s.top >= (1u << std::max(f.bits, 1u)))
    corrupt("sparse chunk has invalid top exponent " + std::to_string(s.top));
  size_t pos = 4;
  thread_local std::vector<ClassCursor> cursors;
  if (cursors.size() < s.classes) cursors.resize(s.classes);
  uint64_t total = 0;
  for (unsigned k = 0; k < s.classes; ++k) {
    auto v = get_varint(in, pos);
    if (!v) corrupt("sparse chunk class counts are truncated");
    if (*v > n - total) corrupt("sparse chunk claims more changes than elements");
    cursors[k].count = *v;
    total += *v;
  }
  auto next_gap = [&](ClassCursor& c) -> uint64_t {
    auto g = get_varint(c.gaps, c.gap_pos);
    if (!g || *g >= n) corrupt("gap stream is corrupt");
    return *g;
  };
  for (unsigned k = 0; k < s.classes; ++k) {
    ClassCursor& c = cursors[k];
    c.done = c.seen = 0;
    c.gap_pos = 0;
    if (!c.count) continue;
    get_stream(in, pos, c.count * 10, c.gaps, "gap");
    for (size_t q = 0; q < sizeof(T); ++q) {
      get_stream(in, pos, c.count, c.planes[q], "value plane");
      if (c.planes[q].size() != c.count) corrupt("value plane has the wrong length");
    }
    c.target = next_gap(c);
  }
  if (pos != in.size())
    corrupt("sparse chunk has " + std::to_string(in.size() - pos) + " trailing bytes");

  const size_t words = (n + 63) / 64;
  const unsigned nb = plane_count(s.classes);
  uint8_t cls[kBlock];
  BlockPlanes planes_of;
  for (size_t w0 = 0; w0 < words; w0 += kBlockWords) {
    const size_t w1 = std::min(words, w0 + kBlockWords);
    const size_t begin = w0 * 64, count = std::min(n - begin, kBlock);
    std::memcpy(out.data() + begin * sizeof(T), base.data() + begin * sizeof(T), count * sizeof(T));
    if (s.classes > 1) {
      block_classes(dtype, base, begin, count, s, cls);
      planes_of.fill(cls, w1 - w0, nb);
    }
    for (unsigned k = 0; k < s.classes; ++k) {
      ClassCursor& c = cursors[k];
      if (c.done == c.count) continue;
      for (size_t w = w0; w < w1 && c.done < c.count; ++w) {
        uint64_t member = s.classes == 1 ? ~uint64_t{0} : class_member(planes_of.p[w - w0], nb, k);
        if (w + 1 == words) member &= valid_mask(w, n);
        const uint64_t pop = static_cast<uint64_t>(__builtin_popcountll(member));
        uint64_t consumed = 0;  // members of this word already dropped from `member`
        while (c.done < c.count && c.target < c.seen + pop) {
          for (uint64_t skip = c.target - c.seen - consumed; skip; --skip) member &= member - 1;
          consumed = c.target - c.seen + 1;
          const size_t i = w * 64 + static_cast<size_t>(__builtin_ctzll(member));
          member &= member - 1;
          T z = 0;
          for (size_t q = 0; q < sizeof(T); ++q)
            z |= static_cast<T>(std::to_integer<T>(c.planes[q][c.done]) << (8 * q));
          store<T>(out.data() + i * sizeof(T),
                   unzigzag_add(load<T>(base.data() + i * sizeof(T)), z));
          if (++c.done < c.count) c.target = c.target + 1 + next_gap(c);
        }
        c.seen += pop;
      }
    }
  }
  for (unsigned k = 0; k < s.classes; ++k) {
    if (cursors[k].done != cursors[k].count) corrupt("gap stream points past the end of the chunk");
    if (cursors[k].count && cursors[k].gap_pos != cursors[k].gaps.size())
      corrupt("gap stream has trailing bytes");
  }
  return total;
}

// --- dense: one stream of the byte planes of zigzag(next - base) for every element.
// --- full: one stream of the byte planes of next.

template <typename T, bool kDiff>
std::vector<std::byte> encode_planes(std::span<const std::byte> base,
                                     std::span<const std::byte> next, size_t n, int level) {
  thread_local std::vector<std::byte> shuffled;
  shuffled.resize(n * sizeof(T));
  for (size_t i = 0; i < n; ++i) {
    T v = load<T>(next.data() + i * sizeof(T));
    if constexpr (kDiff) v = zigzag(v, load<T>(base.data() + i * sizeof(T)));
    for (size_t q = 0; q < sizeof(T); ++q)
      shuffled[q * n + i] = static_cast<std::byte>((v >> (8 * q)) & 0xff);
  }
  std::vector<std::byte> out;
  put_stream(out, shuffled, level);
  return out;
}

template <typename T, bool kDiff>
void decode_planes(std::span<const std::byte> in, std::span<const std::byte> base,
                   std::span<std::byte> out, size_t n) {
  thread_local std::vector<std::byte> shuffled;
  size_t pos = 0;
  get_stream(in, pos, n * sizeof(T), shuffled, kDiff ? "dense" : "full");
  if (shuffled.size() != n * sizeof(T)) corrupt("plane stream has the wrong length");
  if (pos != in.size()) corrupt("chunk has trailing bytes after its plane stream");
  for (size_t i = 0; i < n; ++i) {
    T v = 0;
    for (size_t q = 0; q < sizeof(T); ++q)
      v |= static_cast<T>(std::to_integer<T>(shuffled[q * n + i]) << (8 * q));
    if constexpr (kDiff) v = unzigzag_add(load<T>(base.data() + i * sizeof(T)), v);
    store<T>(out.data() + i * sizeof(T), v);
  }
}

template <typename T>
EncodedChunk encode_typed(DType dtype, std::span<const std::byte> base,
                          std::span<const std::byte> next, const ChunkParams& p) {
  const size_t n = next.size() / sizeof(T);
  EncodedChunk best;
  best.encoding = ChunkEncoding::Raw;
  best.changed = n;
  if (base.empty()) {
    std::vector<std::byte> full = encode_planes<T, false>(base, next, n, p.zstd_level);
    if (full.size() < next.size()) {
      best.encoding = ChunkEncoding::Full;
      best.payload = std::move(full);
    } else {
      best.payload.assign(next.begin(), next.end());
    }
    return best;
  }
  t_masks.resize((n + 63) / 64);
  const uint64_t changed = change_masks(base.data(), next.data(), n, sizeof(T), t_masks.data());
  best.changed = changed;
  if (changed == 0) {
    best.encoding = ChunkEncoding::Same;
    return best;
  }
  const double density = static_cast<double>(changed) / static_cast<double>(n);
  size_t best_size = next.size();
  // Wide floats change almost everywhere, but how far they move depends on
  // their exponent, so the class-conditioned value planes of the sparse form
  // still beat the dense form there.
  const bool wide_float = sizeof(T) >= 4 && exponent_field(dtype).bits > 0;
  if (density <= 0.35 || wide_float) {
    auto sparse = encode_sparse<T>(dtype, base, next, n, p);
    if (sparse.size() < best_size) {
      best_size = sparse.size();
      best.encoding = ChunkEncoding::Sparse;
      best.payload = std::move(sparse);
    }
  }
  if (density >= 0.08) {
    auto dense = encode_planes<T, true>(base, next, n, p.zstd_level);
    if (dense.size() < best_size) {
      best_size = dense.size();
      best.encoding = ChunkEncoding::Dense;
      best.payload = std::move(dense);
    }
  }
  if (best.encoding == ChunkEncoding::Raw) best.payload.assign(next.begin(), next.end());
  return best;
}

template <typename T>
uint64_t decode_typed(DType dtype, ChunkEncoding e, std::span<const std::byte> in,
                      std::span<const std::byte> base, std::span<std::byte> out) {
  const size_t n = out.size() / sizeof(T);
  switch (e) {
    case ChunkEncoding::Same:
      if (!in.empty()) corrupt("unchanged chunk carries payload bytes");
      std::memcpy(out.data(), base.data(), out.size());
      return 0;
    case ChunkEncoding::Raw:
      if (in.size() != out.size())
        corrupt("raw chunk has " + std::to_string(in.size()) + " bytes, expected " +
                std::to_string(out.size()));
      std::memcpy(out.data(), in.data(), out.size());
      return n;
    case ChunkEncoding::Full:
      decode_planes<T, false>(in, base, out, n);
      return n;
    case ChunkEncoding::Dense: {
      decode_planes<T, true>(in, base, out, n);
      t_masks.resize((n + 63) / 64);
      return change_masks(base.data(), out.data(), n, sizeof(T), t_masks.data());
    }
    case ChunkEncoding::Sparse:
      return decode_sparse<T>(dtype, in, base, out, n);
  }
  corrupt("unknown chunk encoding");
}

}  // namespace

EncodedChunk encode_chunk(DType dtype, std::span<const std::byte> base,
                          std::span<const std::byte> next, const ChunkParams& params) {
  switch (dtype_size(dtype)) {
    case 1:
      return encode_typed<uint8_t>(dtype, base, next, params);
    case 2:
      return encode_typed<uint16_t>(dtype, base, next, params);
    case 4:
      return encode_typed<uint32_t>(dtype, base, next, params);
    default:
      return encode_typed<uint64_t>(dtype, base, next, params);
  }
}

uint64_t decode_chunk(DType dtype, ChunkEncoding encoding, std::span<const std::byte> payload,
                      std::span<const std::byte> base, std::span<std::byte> out) {
  const bool needs_base = encoding == ChunkEncoding::Same || encoding == ChunkEncoding::Sparse ||
                          encoding == ChunkEncoding::Dense;
  if (needs_base && base.size() != out.size())
    corrupt(std::string(encoding_name(encoding)) + " chunk needs a base of the same size");
  switch (dtype_size(dtype)) {
    case 1:
      return decode_typed<uint8_t>(dtype, encoding, payload, base, out);
    case 2:
      return decode_typed<uint16_t>(dtype, encoding, payload, base, out);
    case 4:
      return decode_typed<uint32_t>(dtype, encoding, payload, base, out);
    default:
      return decode_typed<uint64_t>(dtype, encoding, payload, base, out);
  }
}

}  // namespace flare::delta
