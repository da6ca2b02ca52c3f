#pragma once
// Every resource reference a client sends is checked where it enters, and
// every file the emulator reads or writes for a request is resolved inside
// its state dir: a path that leaves it, also through a symbolic link, is
// refused with a 400 that names the client's own text, never a server path.
#include <string>

namespace flare::emulator {

// The protocol's resource id charset: 1 to 63 of [a-z0-9-]. `field` names the
// field or parameter in the 400 message.
void check_resource_id(const std::string& field, const std::string& id);

// `path` with every symbolic link of its existing part resolved; throws
// ApiError 400 "<what> is outside the server's state directory" when that is
// not below `state_dir` (itself canonical).
std::string inside_state_dir(const std::string& state_dir, const std::string& path,
                             const std::string& what);

// `message` with every mention of `state_dir` replaced by "<state dir>", so
// that an error text from a lower layer shows no absolute server path.
std::string hide_state_dir(const std::string& state_dir, std::string message);

}  // namespace flare::emulator
