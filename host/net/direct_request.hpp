#pragma once
// Which requests the direct transport carries, and their bytes on the wire.
#include <string>
#include <string_view>

#include "net/transfer.hpp"

namespace flare::net {

// Whether the request of `t` can go direct as far as the request itself goes:
// http:// to an IP literal, no credentials, a path libcurl would send as it
// is, not HEAD or CONNECT, and no header that changes the framing (Host,
// Content-Length, Transfer-Encoding, Expect). Fills t->key ("host:port" as
// written in the URL) and t->addr.
bool direct_target(Transfer* t);

// The request as libcurl would write it (Host, Accept, the caller's headers,
// a default Content-Type for bodies, Content-Length).
void write_request(const Request& r, std::string_view authority, std::string& out);

}  // namespace flare::net
