#include "delta/chunk_codec.hpp"

#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_c_literalCompressionMode
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "delta/adler32.hpp"
#include "delta/bit_kernels.hpp"
#include "delta/class_planes.hpp"
#include "delta/unaligned.hpp"
#include "delta/varint.hpp"
#include "delta/zigzag.hpp"

namespace flare::delta {
namespace {

[[noreturn]] void corrupt(const std::string& what) {
  throw std::runtime_error(what);
}

ExponentField exponent_field(DType d) {
  switch (d) {
    case DType::F64:
      return {.shift = 52, .bits = 11};
    case DType::F32:
      return {.shift = 23, .bits = 8};
    case DType::F16:
      return {.shift = 10, .bits = 5};
    case DType::BF16:
      return {.shift = 7, .bits = 8};
    case DType::F8_E4M3:
      return {.shift = 3, .bits = 4};
    case DType::F8_E5M2:
      return {.shift = 2, .bits = 5};
    case DType::F8_E8M0:  // a scale: all eight bits are the exponent
      return {.shift = 0, .bits = 8};
    default:
      return {.shift = 0, .bits = 0};
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

// How a stream's bytes are coded: Matches finds repeats of 7 bytes or more
// in a small table; Literals (for level 1) codes the bytes as Huffman
// literals and skips the match search.
enum class StreamCoding { Matches, Literals };
// The classed form's planes keep the matches: on an fp32 step (99.95% changed)
// they code 0.1% smaller than literals alone at the same speed.
constexpr StreamCoding kClassedCoding = StreamCoding::Matches;

void put_stream(std::vector<std::byte>& out, std::span<const std::byte> raw, int level,
                StreamCoding coding = StreamCoding::Matches) {
  std::vector<std::byte>& tmp = [&]() -> std::vector<std::byte>& {
    thread_local std::vector<std::byte> buf;
    return buf;
  }();
  size_t stored = raw.size();
  uint8_t mode = kStreamRaw;
  if (raw.size() >= 32) {
    tmp.resize(ZSTD_compressBound(raw.size()));
    // The streams (gaps, value planes) have few repeats: matches shorter than
    // 7 bytes cost more than coding their bytes as Huffman literals, so the
    // match finder looks for long ones only, in a small table. Where even
    // those do not pay (Literals), the match finder steps over a whole block
    // at a time (ZSTD_c_targetLength is the fast strategy's acceleration)
    // with literal compression kept on (zstd turns it off at that setting by
    // default): a bf16 step changing 20% of 134M elements codes to 16.42 MB
    // against 17.44 MB, with a third less time in zstd. On fp32 steps the
    // gap streams are runs of zeros, which matches code far better.
    const int key = level * 2 + (coding == StreamCoding::Literals);
    thread_local int set_key = 0;
    ZSTD_CCtx* c = zstd().c;
    if (set_key != key) {
      ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
      ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
      ZSTD_CCtx_setParameter(c, ZSTD_c_minMatch, 7);
      ZSTD_CCtx_setParameter(c, ZSTD_c_hashLog, 7);
      // Without the parameter (another zstd), Matches.
      if (coding == StreamCoding::Literals && level == 1 &&
          !ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_literalCompressionMode, ZSTD_ps_enable)))
        ZSTD_CCtx_setParameter(c, ZSTD_c_targetLength, ZSTD_TARGETLENGTH_MAX);
      set_key = key;
    }
    size_t n = ZSTD_compress2(c, tmp.data(), tmp.size(), raw.data(), raw.size());
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
// not exceed `max_raw`). Errors name the stream's byte offset in the chunk.
void get_stream(std::span<const std::byte> in, size_t& pos, uint64_t max_raw,
                std::vector<std::byte>& dst, const char* what) {
  const std::string where = std::string(what) + " stream at byte " + std::to_string(pos);
  if (pos >= in.size()) corrupt(where + " is missing (the chunk ends)");
  uint8_t mode = std::to_integer<uint8_t>(in[pos++]);
  auto raw = get_varint(in, pos);
  auto stored = get_varint(in, pos);
  if (!raw || !stored) corrupt(where + ": header is truncated");
  if (mode > kStreamZstd) corrupt(where + " has unknown mode " + std::to_string(mode));
  if (*raw > max_raw)
    corrupt(where + " claims " + std::to_string(*raw) + " bytes, more than " +
            std::to_string(max_raw));
  if (*stored > in.size() - pos) corrupt(where + " runs past the end of the chunk");
  dst.resize(*raw);
  auto body = in.subspan(pos, *stored);
  pos += *stored;
  if (mode == kStreamRaw) {
    if (*stored != *raw) corrupt(where + ": raw stream length disagrees with its size");
    if (*raw) std::memcpy(dst.data(), body.data(), *raw);
    return;
  }
  size_t n = ZSTD_decompressDCtx(zstd().d, dst.data(), dst.size(), body.data(), body.size());
  if (ZSTD_isError(n)) corrupt(where + ": zstd: " + ZSTD_getErrorName(n));
  if (n != *raw) corrupt(where + " decompressed to the wrong size");
}

thread_local std::vector<uint64_t> t_masks;

// Chunks are read in blocks of kBlock elements: a block of base and next is
// checksummed, compared and patched while it is in the core's cache, so every
// byte of a chunk comes from memory once.
constexpr size_t kBlock = 8192;

struct ClassSetup {
  unsigned classes = 1, width = 1, top = 0;
};

// The first four bytes of a sparse or classed chunk: u8 classes, u8 width, u16 top.
ClassSetup read_class_setup(std::span<const std::byte> in, ExponentField f, const char* kind) {
  const std::string what = std::string(kind) + " chunk";
  if (in.size() < 4) corrupt(what + " header is truncated");
  ClassSetup s;
  s.classes = std::to_integer<unsigned>(in[0]);
  s.width = std::to_integer<unsigned>(in[1]);
  s.top = std::to_integer<unsigned>(in[2]) | (std::to_integer<unsigned>(in[3]) << 8);
  if (s.classes < 1 || s.classes > 64 || (s.classes > 1 && f.bits == 0))
    corrupt(what + " has invalid class count " + std::to_string(s.classes) + " at byte 0");
  if (s.width < 1) corrupt(what + " has class width 0 at byte 1");
  if (s.top >= (1u << std::max(f.bits, 1u)))
    corrupt(what + " has invalid top exponent " + std::to_string(s.top) + " at bytes 2-3");
  return s;
}

void put_class_setup(std::vector<std::byte>& out, const ClassSetup& s) {
  out.push_back(static_cast<std::byte>(s.classes));
  out.push_back(static_cast<std::byte>(s.width));
  out.push_back(static_cast<std::byte>(s.top & 0xff));
  out.push_back(static_cast<std::byte>(s.top >> 8));
}

// Mask of the valid elements of word w of a chunk of n elements.
inline uint64_t valid_mask(size_t w, size_t n) {
  const size_t rest = n - w * 64;
  return rest >= 64 ? ~uint64_t{0} : (uint64_t{1} << rest) - 1;
}

// Exponent classes, a block of words at a time. The class is monotone in the
// exponent, so "class >= k" is "exponent <= top - k * width": K - 1 compares
// give nested masks, and class k's members are those of >= k minus >= k + 1.
constexpr size_t kBlockWords = kBlock / 64;

template <typename T>
class ClassMasks {
 public:
  ClassMasks(ExponentField f, const ClassSetup& s, std::span<const std::byte> base, size_t n)
      : f_(f), k_(s.classes), base_(base.data()), n_(n) {
    for (unsigned k = 1; k < k_; ++k)
      thr_[k - 1] = static_cast<int16_t>(static_cast<int>(s.top) - static_cast<int>(k * s.width));
    if (k_ > 1) ge_.resize(kBlockWords * (k_ - 1));
  }
  // Computes the masks of words [w0, w1), at most kBlockWords of them.
  void fill(size_t w0, size_t w1) {
    w0_ = w0;
    if (k_ == 1) return;
    const size_t full = std::min(w1, n_ / 64);
    if (full > w0)
      le_masks(base_ + w0 * 64 * sizeof(T), full - w0, sizeof(T), f_, thr_, k_ - 1, ge_.data());
    if (w1 > full && w1 > w0) {  // the chunk's last, partial word, padded
      T pad[64] = {};
      std::memcpy(pad, base_ + full * 64 * sizeof(T), (n_ - full * 64) * sizeof(T));
      le_masks(reinterpret_cast<const std::byte*>(pad), 1, sizeof(T), f_, thr_, k_ - 1,
               ge_.data() + (full - w0) * (k_ - 1));
    }
  }
  // Masks of class >= k (k = 1..K-1) of word w (filled before; bits past the
  // chunk's end are not cleared).
  const uint64_t* ge(size_t w) const { return ge_.data() + (w - w0_) * (k_ - 1); }

 private:
  ExponentField f_;
  unsigned k_;
  int16_t thr_[64] = {};
  const std::byte* base_;
  size_t n_;
  size_t w0_ = 0;
  std::vector<uint64_t> ge_;
};

// Appends v (< 2^28) as an LEB128 varint at p, writing 4 bytes whatever its
// length (the buffer has 3 bytes of slack); returns the length.
inline size_t put_varint28(std::byte* p, uint32_t v) {
  const uint32_t len = 1 + (v >= (1u << 7)) + (v >= (1u << 14)) + (v >= (1u << 21));
  const uint32_t bytes =
      (v & 0x7f) | ((v << 1) & 0x7f00) | ((v << 2) & 0x7f0000) | ((v << 3) & 0x7f000000);
  const uint32_t cont = 0x808080u & ((uint32_t{1} << (8 * (len - 1))) - 1);
  const uint32_t word = bytes | cont;
  std::memcpy(p, &word, 4);
  return len;
}

// Grows a thread-local scratch buffer without zero-filling it.
template <typename U>
U* scratch(std::unique_ptr<U[]>& buf, size_t& cap, size_t need) {
  if (need > cap) {
    cap = std::max(need, cap + cap / 2);
    buf.reset(new U[cap]);
  }
  return buf.get();
}

// --- sparse: u8 classes, u8 width, u16 top, varint count per class, then per
// class with changes: gap stream, then one stream per byte plane of the values.
//
// The first pass (encode_typed) lists the changed elements: positions, z and
// base exponent, and a histogram of the exponents.
template <typename T>
struct ChangedElements {
  std::unique_ptr<uint32_t[]> pos;  // chunk positions, ascending (64 entries of slack)
  std::unique_ptr<T[]> z;
  std::unique_ptr<uint16_t[]> e;  // exponent field of the base element
  size_t cap = 0;
  // Changed elements per base exponent value, counted in four interleaved
  // histograms (summed into hist[0]): neighbours often share an exponent, and
  // one counter would make each increment wait for the previous one's store.
  uint32_t hist[4][2048];
};
template <typename T>
ChangedElements<T>& changed_scratch(size_t n) {
  thread_local ChangedElements<T> c;
  if (c.cap < n) {
    c.cap = n;
    c.pos.reset(new uint32_t[n + 64]);
    c.z.reset(new T[n]);
    c.e.reset(new uint16_t[n]);
  }
  return c;
}

// For each of `words` words with masks ge (K - 1 per word) of class >= 1..K-1:
// M gets each class's members (class >= k minus class >= k + 1) and C each
// class's element count before the word; cnt (counts before the first word)
// advances past the words. KC: K known at compile time (0: use k).
template <unsigned KC>
inline void class_prefix(const uint64_t* ge, size_t words, unsigned k, bool counts_only,
                         uint32_t* cnt, uint64_t* M, uint32_t* C) {
  const unsigned K = KC ? KC : k;
  uint32_t acc[64];
  for (unsigned t = 0; t < K; ++t) acc[t] = cnt[t];
  for (size_t w = 0; w < words; ++w, ge += K - 1) {
    uint64_t* m = M + w * K;
    uint32_t* c = C + w * K;
    uint64_t above = ~uint64_t{0};  // class >= t
    for (unsigned t = 0; t < K; ++t) {
      const uint64_t next = t + 1 < K ? ge[t] : 0;
      const uint64_t member = above & ~next;
      if (!counts_only) {
        m[t] = member;
        c[t] = acc[t];
      }
      acc[t] += static_cast<uint32_t>(__builtin_popcountll(member));
      above = next;
    }
  }
  for (unsigned t = 0; t < K; ++t) cnt[t] = acc[t];
}

// One class's output while the sparse coder lists a chunk: values are stored
// whole (split into byte planes once the chunk is listed), gaps as they come.
template <typename T>
struct ClassOut {
  std::byte* gap;  // next gap's bytes
  T* value;        // next value
  uint64_t next_rank;
  void put(uint64_t rank, T z) {
    gap += put_varint28(gap, static_cast<uint32_t>(rank - next_rank));
    next_rank = rank + 1;
    *value++ = z;
  }
};

template <typename T>
struct ListedElements {
  const uint32_t* pos;  // chunk positions
  const uint16_t* e;    // base exponents
  const T* z;
};

// Puts the listed elements j.. before position `end` (in the block of words
// from w0 on) into their classes' outputs: the class from a table of the
// base exponent, the number in the class from the class's count before the
// word (C) and a popcount of its members (M) below the element. Returns the
// first element not put. Not inlined: inside the coder's loops the compiler
// kept this loop's pointers on the stack. KC: K known at compile time (0: k).
template <typename T, unsigned KC>
[[gnu::noinline]] uint64_t put_listed(const ListedElements<T>& le, uint64_t j, uint64_t changed,
                                      uint32_t end, size_t w0, unsigned k, const uint8_t* cls,
                                      const uint64_t* M, const uint32_t* C, ClassOut<T>* co) {
  const size_t K = KC ? KC : k;
  const uint32_t* pos = le.pos;
  const uint16_t* es = le.e;
  const T* zs = le.z;
  for (; j < changed && pos[j] < end; ++j) {
    const uint32_t i = pos[j];
    const unsigned c = cls[es[j]];
    const size_t off = (i / 64 - w0) * K + c;
    const uint64_t below = (uint64_t{1} << (i % 64)) - 1;
    co[c].put(C[off] + static_cast<uint64_t>(__builtin_popcountll(M[off] & below)), zs[j]);
  }
  return j;
}

// A block of words at a time: the nested class masks "class >= t" come from
// K - 1 compares of the base exponents, and their running popcounts give every
// class's element count before each word. Then a flat loop over the block's
// changed elements: the class from a table of the base exponent, the number
// within the class from two popcounts (members of class k are "class >= k"
// minus "class >= k + 1"), and the gap and value bytes go straight into the
// class's buffers, sized once from the class counts (from the histogram).
template <typename T>
std::vector<std::byte> encode_sparse(DType dtype, std::span<const std::byte> base,
                                     const ChangedElements<T>& ch, const uint64_t* masks, size_t n,
                                     uint64_t changed, const ChunkParams& p, unsigned top) {
  constexpr size_t B = sizeof(T);
  const ExponentField f = exponent_field(dtype);
  ClassSetup s;
  if (f.bits && p.classes > 1) {
    s.classes = std::min(p.classes, 64u);
    s.width = std::clamp(p.class_width, 1u, 255u);
    s.top = top;
  }
  const unsigned K = s.classes;
  uint64_t counts[64] = {};
  // Class of each exponent value (the same rule as the masks: class 0 above top).
  uint8_t cls[2048];
  const unsigned emask = f.bits ? (1u << f.bits) - 1 : 0;
  if (K > 1) {
    for (unsigned e = 0; e <= emask; ++e) {
      cls[e] = static_cast<uint8_t>(e > s.top ? 0 : std::min(K - 1, (s.top - e) / s.width));
      counts[cls[e]] += ch.hist[0][e];
    }
  } else {
    counts[0] = changed;
  }

  // Buffers of every class: gaps (at most 4 bytes each: numbers are below
  // 2^24), then the byte planes.
  thread_local std::unique_ptr<std::byte[]> t_buf;
  thread_local size_t buf_cap = 0;
  std::byte* buf = scratch(t_buf, buf_cap, changed * (4 + B));
  // Each class's output in one place (a pointer per array made every element
  // compute three addresses); values are stored whole and split into byte
  // planes once the chunk is listed.
  ClassOut<T> co[64];
  std::byte* gap_begin[64];
  T* value_begin[64];
  size_t at = 0;
  for (unsigned k = 0; k < K; ++k) {  // values first: aligned for T
    value_begin[k] = co[k].value = reinterpret_cast<T*>(buf + at);
    co[k].next_rank = 0;
    at += counts[k] * B;
  }
  for (unsigned k = 0; k < K; ++k) {
    gap_begin[k] = co[k].gap = buf + at;
    at += counts[k] * 4;
  }
  const uint32_t* pos = ch.pos.get();
  const T* zs = ch.z.get();
  if (K == 1) {
    for (uint64_t j = 0; j < changed; ++j) co[0].put(pos[j], zs[j]);
  } else {
    ClassMasks<T> cm(f, s, base, n);
    const size_t words = (n + 63) / 64;
    // Per word and class: its members and its element count before the word.
    thread_local std::vector<uint64_t> t_m;
    thread_local std::vector<uint32_t> t_c;
    t_m.resize(kBlockWords * K);
    t_c.resize(kBlockWords * K);
    uint64_t* M = t_m.data();
    uint32_t* C = t_c.data();
    uint32_t cnt[64] = {};  // elements of each class before the current word
    const uint16_t* es = ch.e.get();
    // Where most elements changed, class by class (below); else one flat loop
    // over the changed elements, which has no branch per word and class.
    const bool by_class = 2 * changed > n;
    uint64_t j = 0;
    for (size_t w0 = 0; w0 < words; w0 += kBlockWords) {
      const size_t w1 = std::min(words, w0 + kBlockWords);
      const uint32_t end = static_cast<uint32_t>(std::min<size_t>(n, w1 * 64));
      cm.fill(w0, w1);
      const bool counts_only =  // no change in the block
          j == changed || (!by_class && pos[j] >= end) ||
          (by_class && std::all_of(masks + w0, masks + w1, [](uint64_t x) { return x == 0; }));
      // The densities' usual K (6, 12) keep the counters in registers.
      if (K == 6)
        class_prefix<6>(cm.ge(w0), w1 - w0, K, counts_only, cnt, M, C);
      else if (K == 12)
        class_prefix<12>(cm.ge(w0), w1 - w0, K, counts_only, cnt, M, C);
      else
        class_prefix<0>(cm.ge(w0), w1 - w0, K, counts_only, cnt, M, C);
      if (counts_only) continue;
      if (by_class) {
        // Class by class over the block's words: each class's buffers and
        // last rank stay in registers (per element through arrays indexed
        // by class, each waited on the previous element's stores). j of an
        // element is the changed elements before it (popcounts of the masks).
        uint32_t jw[kBlockWords];
        for (size_t w = w0; w < w1; ++w) {
          jw[w - w0] = static_cast<uint32_t>(j);
          j += static_cast<uint64_t>(__builtin_popcountll(masks[w]));
        }
        for (unsigned k = 0; k < K; ++k) {
          if (!counts[k]) continue;
          std::byte* gp = co[k].gap;
          T* vp = co[k].value;
          uint64_t nr = co[k].next_rank;
          for (size_t w = w0; w < w1; ++w) {
            const uint64_t member = M[(w - w0) * K + k];
            const uint64_t before = C[(w - w0) * K + k];
            for (uint64_t m = masks[w] & member; m; m &= m - 1) {
              const uint64_t below = (m & (0 - m)) - 1;
              const uint64_t rank =
                  before + static_cast<uint64_t>(__builtin_popcountll(member & below));
              const T z =
                  zs[jw[w - w0] + static_cast<uint64_t>(__builtin_popcountll(masks[w] & below))];
              gp += put_varint28(gp, static_cast<uint32_t>(rank - nr));
              nr = rank + 1;
              *vp++ = z;
            }
          }
          co[k].gap = gp;
          co[k].value = vp;
          co[k].next_rank = nr;
        }
        continue;
      }
      const ListedElements<T> le{pos, es, zs};
      if (K == 6)
        j = put_listed<T, 6>(le, j, changed, end, w0, 6, cls, M, C, co);
      else if (K == 12)
        j = put_listed<T, 12>(le, j, changed, end, w0, 12, cls, M, C, co);
      else
        j = put_listed<T, 0>(le, j, changed, end, w0, K, cls, M, C, co);
    }
  }

  std::vector<std::byte> out;
  out.reserve(4 + 10 * K + changed * (B + 1) / 2 + 64);
  put_class_setup(out, s);
  for (unsigned k = 0; k < K; ++k) put_varint(out, counts[k]);
  // Huffman literals for 1- and 2-byte elements (bf16 steps: smaller and
  // faster); wider ones keep the matches (fp32: 2.6x against 2.4x).
  const StreamCoding coding = B <= 2 ? StreamCoding::Literals : StreamCoding::Matches;
  thread_local std::unique_ptr<std::byte[]> t_plane;
  thread_local size_t plane_cap = 0;
  std::byte* planes = scratch(t_plane, plane_cap, changed);
  for (unsigned k = 0; k < K; ++k) {
    if (!counts[k]) continue;
    put_stream(out, {gap_begin[k], static_cast<size_t>(co[k].gap - gap_begin[k])}, p.zstd_level,
               coding);
    const T* v = value_begin[k];
    const size_t cnt = counts[k];
    for (size_t q = 0; q < B; ++q) {
      for (size_t d = 0; d < cnt; ++d) planes[d] = static_cast<std::byte>((v[d] >> (8 * q)) & 0xff);
      put_stream(out, {planes, cnt}, p.zstd_level, coding);
    }
  }
  return out;
}

// Decoded streams of one class.
struct ClassStreams {
  std::vector<std::byte> gaps;
  std::vector<std::byte> planes[8];
};

// out[d] = the value whose byte q is planes[q][d], for d < count.
template <typename T>
void interleave_planes(const std::vector<std::byte>* planes, size_t count, T* __restrict out) {
  const std::byte* p[sizeof(T)];
  for (size_t q = 0; q < sizeof(T); ++q) p[q] = planes[q].data();
  for (size_t d = 0; d < count; ++d) {
    T z = 0;
    for (size_t q = 0; q < sizeof(T); ++q)
      z |= static_cast<T>(static_cast<T>(std::to_integer<T>(p[q][d])) << (8 * q));
    out[d] = z;
  }
}

// Copies len bytes to out as `use` asks (stream_fence() after the last).
inline void copy_out(std::byte* out, const std::byte* src, size_t len, OutputUse use) {
  if (use == OutputUse::Kept)
    stream_copy(out, src, len);
  else
    std::memcpy(out, src, len);
}

// Builds out block by block: base copied in, patch(w0, w1, block) changes the
// elements of words [w0, w1) (element 64 * w0 + j at block[j]), and the
// patched block is summed while it is in L1 (faster than adding up what each
// patched byte changed, measured at 20% and 100% changed). The base is not
// summed (see ChunkSums). A kept
// output is built in a cache-resident staging block and streamed out; one
// reread at once is built in place (its lines stay in the cache for that).
template <typename T, typename Patch>
void copy_patch_blocks(std::span<const std::byte> base, std::span<std::byte> out, size_t n,
                       ChunkSums* sums, OutputUse use, Patch&& patch, bool copy_base = true) {
  alignas(64) static thread_local T staging[kBlock];
  if (sums) sums->base_summed = false;
  const bool in_place =
      use == OutputUse::Reread && reinterpret_cast<uintptr_t>(out.data()) % alignof(T) == 0;
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t count = std::min(kBlock, n - begin);
    const size_t len = count * sizeof(T);
    std::byte* dst = out.data() + begin * sizeof(T);
    T* block = in_place ? reinterpret_cast<T*>(dst) : staging;
    std::byte* bytes = reinterpret_cast<std::byte*>(block);
    if (copy_base) std::memcpy(bytes, base.data() + begin * sizeof(T), len);
    patch(begin / 64, (begin + count + 63) / 64, block);
    if (sums) sums->out = adler32_combine(sums->out, adler32({bytes, len}), len);
    if (!in_place) copy_out(dst, bytes, len, use);
  }
  stream_fence();
}

// Patches a block's changed elements (change masks chg of its nw words) class
// by class: class k's members in word w are "class >= k" minus "class >= k +
// 1" (ge: K - 1 masks per word), and its changed elements take the class's
// next values in position order, byte q from plane[k][q] (done[k] advances).
// One class at a time keeps its value counter and plane pointers in
// registers (a counter per class in memory made every element wait on the
// previous one's store), so the planes are read as they are (interleaving
// them first was slower here). Not inlined: inside the decoder's loops the
// compiler kept this loop's operands on the stack.
template <typename T>
[[gnu::noinline]] void patch_by_class(const uint64_t* chg, const uint64_t* ge, unsigned K,
                                      size_t nw, T* __restrict block,
                                      const std::byte* const (*plane)[8], const uint64_t* count,
                                      uint64_t* done) {
  for (unsigned k = 0; k < K; ++k) {
    if (!count[k]) continue;
    const std::byte* v[sizeof(T)];
    for (size_t q = 0; q < sizeof(T); ++q) v[q] = plane[k][q];
    uint64_t d = done[k];
    for (size_t w = 0; w < nw; ++w) {
      uint64_t m = chg[w];
      if (k > 0) m &= ge[w * (K - 1) + k - 1];
      if (k + 1 < K) m &= ~ge[w * (K - 1) + k];
      while (m) {
        const size_t i = w * 64 + static_cast<size_t>(__builtin_ctzll(m));
        m &= m - 1;
        T z = 0;
        for (size_t q = 0; q < sizeof(T); ++q)
          z |= static_cast<T>(static_cast<T>(std::to_integer<T>(v[q][d])) << (8 * q));
        ++d;
        block[i] = unzigzag_add(block[i], z);
      }
    }
    done[k] = d;
  }
}

// Patches the changed elements at[0..count) (chunk positions, ascending, from
// element `first` on) of a block: each takes the next value of its class
// (value[k] advances), which its base element's exponent gives. Not inlined: inside the decoder's
// loops the compiler kept this loop's operands on the stack.
template <typename T>
[[gnu::noinline]] void patch_changes(const uint32_t* at, size_t count,
                                     const std::byte* __restrict base, T* __restrict block,
                                     size_t first, unsigned shift, unsigned emask,
                                     const uint8_t* cls, const T** value) {
  for (size_t j = 0; j < count; ++j) {
    const size_t i = at[j] - first;
    const T b = load<T>(base + i * sizeof(T));
    const unsigned k = cls[static_cast<unsigned>(b >> shift) & emask];
    block[i] = unzigzag_add(b, *value[k]++);
  }
}

template <typename T>
uint64_t decode_sparse(DType dtype, std::span<const std::byte> in, std::span<const std::byte> base,
                       std::span<std::byte> out, size_t n, ChunkSums* sums, OutputUse use) {
  const ExponentField f = exponent_field(dtype);
  const ClassSetup s = read_class_setup(in, f, "sparse");
  size_t pos = 4;
  thread_local std::vector<ClassStreams> streams;
  if (streams.size() < s.classes) streams.resize(s.classes);
  uint64_t count[64], total = 0;
  for (unsigned k = 0; k < s.classes; ++k) {
    auto v = get_varint(in, pos);
    if (!v) corrupt("sparse chunk class counts are truncated");
    if (*v > n - total) corrupt("sparse chunk claims more changes than elements");
    count[k] = *v;
    total += *v;
  }
  // Each class's changed element numbers (bit r: the class's element r
  // changed) as a bitmap, set straight from its gaps and checked to lie in the
  // chunk. The bitmaps are all zeros between calls (the words a call wrote
  // are cleared when it returns or throws), so a gap needs no branch: numbers
  // ascend, and each is ORed into its word assembled in a register (cleared
  // when the word changes) and stored whole; words without a bit stay zero,
  // as far past the last bit as a block reads on.
  const size_t stride = n / 64 + kBlockWords + 2 + 64;
  thread_local std::unique_ptr<uint64_t[]> t_bitmaps;
  thread_local size_t bitmaps_cap = 0;
  if (stride * s.classes > bitmaps_cap) {
    bitmaps_cap = std::max(stride * s.classes, bitmaps_cap + bitmaps_cap / 2);
    t_bitmaps.reset(new uint64_t[bitmaps_cap]());
  }
  // A local copy: stores to out may alias the thread_locals.
  uint64_t* bitmaps = t_bitmaps.get();
  struct ClearOnExit {
    uint64_t* bitmaps;
    size_t stride;
    size_t dirty[64] = {};  // words written in each class's bitmap
    ~ClearOnExit() {
      for (size_t k = 0; k < 64; ++k)
        if (dirty[k]) std::fill_n(bitmaps + k * stride, dirty[k], uint64_t{0});
    }
  } clear{bitmaps, stride};
  // Where most elements changed, the changed elements are patched class by
  // class from the value planes; else in one flat loop, which reads each
  // class's values z whole (its byte planes interleaved, one class after
  // another) through one pointer per class.
  const bool by_class = 2 * total > n;
  thread_local std::unique_ptr<T[]> t_values;
  thread_local size_t values_cap = 0;
  T* values = by_class ? nullptr : scratch(t_values, values_cap, total + 1);
  const T* value[64];  // next value of each class (flat loop)
  const T* value_begin[64];
  const std::byte* plane[64][8];  // each class's planes (class by class)
  uint64_t last[64];              // last changed element number of each class
  for (unsigned k = 0; k < s.classes; ++k) {
    if (!count[k]) continue;
    ClassStreams& c = streams[k];
    get_stream(in, pos, count[k] * 10, c.gaps, "gap");
    for (size_t q = 0; q < sizeof(T); ++q) {
      get_stream(in, pos, count[k], c.planes[q], "value plane");
      if (c.planes[q].size() != count[k]) corrupt("value plane has the wrong length");
    }
    if (by_class) {
      for (size_t q = 0; q < sizeof(T); ++q) plane[k][q] = c.planes[q].data();
    } else {
      interleave_planes(c.planes, count[k], values);
      value_begin[k] = value[k] = values;
      values += count[k];
    }
    uint64_t* bm = bitmaps + k * stride;
    clear.dirty[k] = stride;  // until the loop below finishes
    const std::byte* gaps = c.gaps.data();
    const size_t gaps_len = c.gaps.size();
    size_t gp = 0, word = 0;  // the word being assembled in `bits`
    uint64_t r = ~uint64_t{0}, bits = 0;
    const uint64_t changes = count[k];  // in a register: stores to bm may alias count
    for (uint64_t j = 0; j < changes; ++j) {
      uint64_t g;
      if (gp < gaps_len && std::to_integer<uint8_t>(gaps[gp]) < 0x80) {  // one-byte gap
        g = std::to_integer<uint8_t>(gaps[gp++]);
      } else {
        auto v = get_varint(c.gaps, gp);
        if (!v || *v >= n) corrupt("gap stream is corrupt");
        g = *v;
      }
      r += 1 + g;
      if (r >= n) corrupt("gap stream points past the end of the chunk");
      const size_t w = r / 64;
      bits &= 0 - static_cast<uint64_t>(w == word);
      bits |= uint64_t{1} << (r % 64);
      bm[w] = bits;
      word = w;
    }
    if (gp != gaps_len) corrupt("gap stream has trailing bytes");
    last[k] = r;
    clear.dirty[k] = word + 1;
  }
  if (pos != in.size())
    corrupt("sparse chunk has " + std::to_string(in.size() - pos) + " trailing bytes");

  // Class of each exponent value, as the masks have it (class 0 above top).
  const unsigned emask = f.bits ? (1u << f.bits) - 1 : 0;
  uint8_t cls[2048] = {};
  if (s.classes > 1)
    for (unsigned e = 0; e <= emask; ++e)
      cls[e] = static_cast<uint8_t>(e > s.top ? 0 : std::min(s.classes - 1, (s.top - e) / s.width));

  // Per block: every class's changed elements deposited onto its members give
  // the block's change masks. Where most elements changed, the changed
  // elements are patched class by class; else one flat loop over the listed
  // changed positions patches them, each taking the next value of its class
  // (from its base exponent): its loop has no branch per word and class,
  // which sparse words mispredict.
  ClassMasks<T> cm(f, s, base, n);
  thread_local std::unique_ptr<uint32_t[]> t_pos(new uint32_t[kBlock + 64]);
  uint32_t* changed_at = t_pos.get();
  uint64_t seen[64] = {}, done[64] = {};
  copy_patch_blocks<T>(base, out, n, sums, use, [&](size_t w0, size_t w1, T* block) {
    cm.fill(w0, w1);
    const size_t nw = w1 - w0;
    uint64_t chg[kBlockWords] = {};
    const uint64_t* ge = s.classes > 1 ? cm.ge(w0) : nullptr;
    const unsigned K = s.classes;
    bool live[64];  // the class has changes left
    const uint64_t* class_bits[64];
    static constexpr uint64_t kNoBits[2] = {0, 0};  // read by classes without changes
    for (unsigned k = 0; k < K; ++k) {
      live[k] = count[k] && seen[k] <= last[k];
      class_bits[k] = count[k] ? bitmaps + k * stride : kNoBits;
    }
    if (!deposit_all_classes(ge, K, nw, class_bits, seen, live, chg))
      for (unsigned k = 0; k < K; ++k)
        if (live[k])
          seen[k] = deposit_class_bits(k ? ge + k - 1 : nullptr, k + 1 < K ? ge + k : nullptr,
                                       K - 1, nw, class_bits[k], seen[k], chg);
    chg[nw - 1] &= valid_mask(w1 - 1, n);
    if (by_class) return patch_by_class<T>(chg, ge, K, nw, block, plane, count, done);
    const size_t changes = flatten_bits(chg, nw, static_cast<uint32_t>(w0 * 64), changed_at);
    patch_changes<T>(changed_at, changes, base.data() + w0 * 64 * sizeof(T), block, w0 * 64,
                     f.shift, emask, cls, value);
  });
  // A changed element number past its class's members was never deposited.
  for (unsigned k = 0; k < s.classes; ++k)
    if (count[k] &&
        (by_class ? done[k] : static_cast<uint64_t>(value[k] - value_begin[k])) != count[k])
      corrupt("gap stream points past the end of the chunk");
  return total;
}

// --- classed: u8 classes, u8 width, u16 top, varint members per class (every
// element of the chunk, changed or not), then per class with members one
// stream per byte plane of z for every member in position order. No
// positions: where nearly every element changed, the sparse form's gaps and
// its per-element walk cost more than the few unchanged elements' zeros.

// Tried where the chunk's first block has at least 7 in 8 elements changed,
// kept where the whole chunk has.
inline bool nearly_all_changed(uint64_t changed, size_t n) {
  return changed * 8 >= uint64_t{n} * 7;
}

// Encodes the chunk as classed in one pass over its blocks (checksums and
// split together), or returns nothing where fewer than 7 in 8 elements
// changed (then the caller codes it sparse). The class rule's top is the
// first block's largest exponent: larger exponents are allowed (class 0), so
// no pass over the chunk comes first.
template <typename T>
std::optional<EncodedChunk> encode_classed(DType dtype, std::span<const std::byte> base,
                                           std::span<const std::byte> next, const ChunkParams& p) {
  constexpr size_t B = sizeof(T);
  const size_t n = next.size() / B;
  const ExponentField f = exponent_field(dtype);
  const size_t first = std::min(kBlock, n);
  t_masks.resize((first + 63) / 64);
  if (!nearly_all_changed(change_masks(base.data(), next.data(), first, B, t_masks.data()), first))
    return std::nullopt;
  ClassSetup s;
  if (f.bits && p.classes != 1) {
    s.classes = p.classes ? std::min(p.classes, 64u) : 12;
    s.width = p.classes ? std::clamp(p.class_width, 1u, 255u) : 1;
    s.top = max_exponent(base.data(), first, B, f);
  }
  const unsigned K = s.classes;
  const ClassRule rule(f, K, s.width, s.top);
  // Each class's planes, grown a block ahead (64 bytes of slack for the
  // kernels' whole-register stores).
  thread_local std::vector<std::byte> t_planes[64 * 8];
  std::byte* planes[64 * 8];
  for (size_t i = 0; i < K * B; ++i) planes[i] = t_planes[i].data();
  uint64_t at[64] = {};
  EncodedChunk best;
  uint64_t changed = 0;
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t count = std::min(kBlock, n - begin);
    const auto b = base.subspan(begin * B, count * B);
    const auto x = next.subspan(begin * B, count * B);
    best.base_adler32 = adler32(b, best.base_adler32);
    best.next_adler32 = adler32(x, best.next_adler32);
    for (unsigned k = 0; k < K; ++k) {
      const size_t need = at[k] + count + 64;
      if (t_planes[k * B].size() >= need) continue;
      const size_t grown = std::max(need, t_planes[k * B].size() * 3 / 2);
      for (size_t q = 0; q < B; ++q) {
        t_planes[k * B + q].resize(grown);
        planes[k * B + q] = t_planes[k * B + q].data();
      }
    }
    changed += split_class_planes(b.data(), x.data(), count, B, rule, planes, at);
  }
  if (!nearly_all_changed(changed, n)) return std::nullopt;
  best.changed = changed;
  best.encoding = ChunkEncoding::Classed;
  std::vector<std::byte>& out = best.payload;
  out.reserve(n * B / 2);
  put_class_setup(out, s);
  for (unsigned k = 0; k < K; ++k) put_varint(out, at[k]);
  for (unsigned k = 0; k < K; ++k)
    for (size_t q = 0; q < B && at[k]; ++q)
      put_stream(out, {planes[k * B + q], at[k]}, p.zstd_level, kClassedCoding);
  if (out.size() >= next.size()) {
    best.encoding = ChunkEncoding::Raw;
    best.payload.assign(next.begin(), next.end());
  }
  return best;
}

template <typename T>
uint64_t decode_classed(DType dtype, std::span<const std::byte> in, std::span<const std::byte> base,
                        std::span<std::byte> out, size_t n, ChunkSums* sums, OutputUse use) {
  constexpr size_t B = sizeof(T);
  const ExponentField f = exponent_field(dtype);
  const ClassSetup s = read_class_setup(in, f, "classed");
  size_t pos = 4;
  uint64_t members[64], total = 0;
  for (unsigned k = 0; k < s.classes; ++k) {
    const size_t at = pos;
    auto v = get_varint(in, pos);
    if (!v)
      corrupt("classed chunk: size of class " + std::to_string(k) + " at byte " +
              std::to_string(at) + " is truncated");
    if (*v > n - total)
      corrupt("classed chunk: size of class " + std::to_string(k) + " at byte " +
              std::to_string(at) + " makes more members than the chunk's " + std::to_string(n) +
              " elements");
    members[k] = *v;
    total += *v;
  }
  if (total != n)
    corrupt("classed chunk's classes hold " + std::to_string(total) + " elements, not its " +
            std::to_string(n));
  thread_local std::vector<ClassStreams> streams;
  if (streams.size() < s.classes) streams.resize(s.classes);
  alignas(64) static constexpr std::byte kNone[64] = {};  // planes of classes without members
  const std::byte* planes[64 * 8];
  for (unsigned k = 0; k < s.classes; ++k)
    for (size_t q = 0; q < B; ++q) {
      std::vector<std::byte>& plane = streams[k].planes[q];
      planes[k * B + q] = kNone;
      if (!members[k]) continue;
      const size_t at = pos;
      get_stream(in, pos, members[k], plane, "value plane");
      if (plane.size() != members[k])
        corrupt("value plane stream at byte " + std::to_string(at) + " holds " +
                std::to_string(plane.size()) + " bytes, its class has " +
                std::to_string(members[k]) + " members");
      plane.resize(members[k] + 64);  // the kernels read whole registers
      planes[k * B + q] = plane.data();
    }
  if (pos != in.size())
    corrupt("classed chunk has " + std::to_string(in.size() - pos) + " trailing bytes from byte " +
            std::to_string(pos));
  const ClassRule rule(f, s.classes, s.width, s.top);
  uint64_t at[64] = {}, changed = 0;
  copy_patch_blocks<T>(
      base, out, n, sums, use,
      [&](size_t w0, size_t w1, T* block) {
        const size_t first = w0 * 64, count = std::min(w1 * 64, n) - first;
        if (!merge_class_planes(base.data() + first * B, reinterpret_cast<std::byte*>(block), count,
                                B, rule, planes, at, members, &changed))
          corrupt("classed chunk: by element " + std::to_string(first + count) +
                  " a class has more members in the base than its planes hold");
      },
      /*copy_base=*/false);
  for (unsigned k = 0; k < s.classes; ++k)
    if (at[k] != members[k])
      corrupt("classed chunk: class " + std::to_string(k) + " has " + std::to_string(at[k]) +
              " members in the base, its planes hold " + std::to_string(members[k]));
  return changed;
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
    best.next_adler32 = adler32(next);
    std::vector<std::byte> full = encode_planes<T, false>(base, next, n, p.zstd_level);
    if (full.size() < next.size()) {
      best.encoding = ChunkEncoding::Full;
      best.payload = std::move(full);
    } else {
      best.payload.assign(next.begin(), next.end());
    }
    return best;
  }
  if (auto classed = encode_classed<T>(dtype, base, next, p)) return std::move(*classed);
  // One pass over the chunk in cache-sized blocks: both checksums, the change
  // masks, the top exponent, and z and the base exponent of every changed element.
  const ExponentField f = exponent_field(dtype);
  const bool want_top = f.bits > 0 && p.classes != 1;  // 0: chosen below, by density
  t_masks.resize((n + 63) / 64);
  ChangedElements<T>& ch = changed_scratch<T>(n);
  uint32_t(*hist)[2048] = ch.hist;
  const unsigned emask = f.bits ? (1u << f.bits) - 1 : 0;
  if (want_top)
    for (auto& h : ch.hist) std::fill_n(h, emask + 1, 0u);
  uint64_t changed = 0;
  unsigned top = 0;
  // Low bytes of z, counted in four interleaved histograms (for the dense
  // form's bound below).
  uint32_t low4[4][256] = {};
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t count = std::min(kBlock, n - begin);
    const auto b = base.subspan(begin * sizeof(T), count * sizeof(T));
    const auto x = next.subspan(begin * sizeof(T), count * sizeof(T));
    best.base_adler32 = adler32(b, best.base_adler32);
    best.next_adler32 = adler32(x, best.next_adler32);
    uint64_t* mk = t_masks.data() + begin / 64;
    const uint64_t c = change_masks_top(b.data(), x.data(), count, sizeof(T),
                                        want_top ? f : ExponentField{}, mk, top);
    if (!c) continue;
    // Positions, z and base exponents of the block's changed elements while
    // both blocks are in cache; flat loops, no branch per word or element.
    uint32_t* pos = ch.pos.get() + changed;
    flatten_bits(mk, (count + 63) / 64, static_cast<uint32_t>(begin), pos);
    T* z = ch.z.get() + changed;
    uint16_t* e = ch.e.get() + changed;
    const std::byte* bb = base.data();
    const std::byte* xb = next.data();
    if (want_top) {
      for (uint64_t j = 0; j < c; ++j) {
        const T bv = load<T>(bb + size_t{pos[j]} * sizeof(T));
        const T zj = zigzag(load<T>(xb + size_t{pos[j]} * sizeof(T)), bv);
        z[j] = zj;
        ++low4[j & 3][zj & 0xff];
        const unsigned ex = static_cast<unsigned>(bv >> f.shift) & emask;
        e[j] = static_cast<uint16_t>(ex);
        ++hist[j & 3][ex];
      }
    } else {
      for (uint64_t j = 0; j < c; ++j) {
        const T zj = zigzag(load<T>(xb + size_t{pos[j]} * sizeof(T)),
                            load<T>(bb + size_t{pos[j]} * sizeof(T)));
        z[j] = zj;
        ++low4[j & 3][zj & 0xff];
      }
    }
    changed += c;
  }
  if (want_top)
    for (unsigned x = 0; x <= emask; ++x) hist[0][x] += hist[1][x] + hist[2][x] + hist[3][x];
  best.changed = changed;
  if (changed == 0) {
    best.encoding = ChunkEncoding::Same;
    return best;
  }
  size_t best_size = next.size();
  // The sparse form first, at every density: its value planes are coded by
  // exponent class, which beats the dense form's planes (measured on bf16
  // steps changing 1-53% of the elements and fp32 steps changing all).
  ChunkParams sp = p;
  if (sp.classes == 0) {  // by density: finer context where many elements changed
    const bool many = changed * 10 >= n;
    sp.classes = many ? 12 : 6;
    sp.class_width = many ? 1 : 2;
  }
  auto sparse = encode_sparse<T>(dtype, base, ch, t_masks.data(), n, changed, sp, top);
  if (sparse.size() < best_size) {
    best_size = sparse.size();
    best.encoding = ChunkEncoding::Sparse;
    best.payload = std::move(sparse);
  }
  // The dense form codes every element's z in byte planes with an order-0
  // entropy coder (Huffman literals; matches are rare in such data), so it
  // takes at least the order-0 entropy of its low plane: the changed
  // elements' low bytes among the unchanged elements' zeros. Only when the
  // sparse form costs more can the dense form be smaller.
  uint64_t low[256];
  for (unsigned v = 0; v < 256; ++v)
    low[v] = uint64_t{low4[0][v]} + low4[1][v] + low4[2][v] + low4[3][v];
  low[0] += n - changed;
  double bits = 0;
  for (uint64_t c : low)
    if (c)
      bits -= static_cast<double>(c) * std::log2(static_cast<double>(c) / static_cast<double>(n));
  const bool try_dense = static_cast<double>(best_size) > bits / 8;
  if (try_dense) {
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
                      std::span<const std::byte> base, std::span<std::byte> out, ChunkSums* sums,
                      OutputUse use) {
  const size_t n = out.size() / sizeof(T);
  auto sum_both = [&] {
    if (!sums) return;
    if (!base.empty()) sums->base = adler32(base);
    sums->out = adler32(out);
  };
  switch (e) {
    case ChunkEncoding::Same:
      if (!in.empty()) corrupt("unchanged chunk carries payload bytes");
      if (!sums) {
        std::memcpy(out.data(), base.data(), out.size());
        return 0;
      }
      for (size_t at = 0; at < out.size(); at += kBlock * sizeof(T)) {  // out = base: one sum
        const size_t len = std::min(kBlock * sizeof(T), out.size() - at);
        copy_out(out.data() + at, base.data() + at, len, use);
        sums->base = adler32(base.subspan(at, len), sums->base);
      }
      stream_fence();
      sums->out = sums->base;
      return 0;
    case ChunkEncoding::Raw:
      if (in.size() != out.size())
        corrupt("raw chunk has " + std::to_string(in.size()) + " bytes, expected " +
                std::to_string(out.size()));
      std::memcpy(out.data(), in.data(), out.size());
      sum_both();
      return n;
    case ChunkEncoding::Full:
      decode_planes<T, false>(in, base, out, n);
      sum_both();
      return n;
    case ChunkEncoding::Dense: {
      decode_planes<T, true>(in, base, out, n);
      sum_both();
      t_masks.resize((n + 63) / 64);
      return change_masks(base.data(), out.data(), n, sizeof(T), t_masks.data());
    }
    case ChunkEncoding::Sparse:
      return decode_sparse<T>(dtype, in, base, out, n, sums, use);
    case ChunkEncoding::Classed:
      return decode_classed<T>(dtype, in, base, out, n, sums, use);
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
                      std::span<const std::byte> base, std::span<std::byte> out, ChunkSums* sums,
                      OutputUse use) {
  if (codes_against_base(encoding) && base.size() != out.size())
    corrupt(std::string(encoding_name(encoding)) + " chunk needs a base of the same size");
  switch (dtype_size(dtype)) {
    case 1:
      return decode_typed<uint8_t>(dtype, encoding, payload, base, out, sums, use);
    case 2:
      return decode_typed<uint16_t>(dtype, encoding, payload, base, out, sums, use);
    case 4:
      return decode_typed<uint32_t>(dtype, encoding, payload, base, out, sums, use);
    default:
      return decode_typed<uint64_t>(dtype, encoding, payload, base, out, sums, use);
  }
}

}  // namespace flare::delta
