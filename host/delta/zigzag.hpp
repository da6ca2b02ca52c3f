#pragma once
// The value coded for a changed element: the zigzag of (next - base) modulo
// 2^bits. A change of one unit in the last place is 1 or 2 whichever way it
// goes, whereas an XOR would spell out the carry chain that the decoder can
// read off the base.
#include <type_traits>

namespace flare::delta {

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

}  // namespace flare::delta
