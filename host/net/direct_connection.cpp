// One direct connection's I/O: sending the request, reading and parsing the
// response, handing the connection back to the pool.
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "net/direct_pool.hpp"
#include "net/direct_request.hpp"

namespace flare::net {

void DirectTransport::Pool::direct_register(DirectConn* c, std::uint32_t events) {
  if (c->events == events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = c->fd;
  epoll_ctl(epoll_fd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
  c->events = events;
}

// Sends what is left of the request; true when all of it is out and c is
// still this transfer's (false: waiting for the socket, failed, or retried).
bool DirectTransport::Pool::direct_send(DirectConn* c) {
  while (c->out_off < c->out.size()) {
    ssize_t n = send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      direct_register(c, EPOLLIN | EPOLLOUT);
      return false;
    }
    int err = n < 0 ? errno : EPIPE;
    if (!retry_stale(c))
      direct_fail(c->t, CURLE_SEND_ERROR, std::string("Send failure: ") + std::strerror(err));
    return false;
  }
  c->sent_at = steady::now();
  direct_register(c, EPOLLIN);
  return true;
}

// A reused keep-alive connection that the server closed before answering:
// the request goes again on a fresh one (as libcurl does), once.
bool DirectTransport::Pool::retry_stale(DirectConn* c) {
  Transfer* t = c->t;
  if (!c->reused || c->got_bytes || t->direct_retried) return false;
  t->direct_retried = true;
  t->conn = nullptr;
  direct_close(c);
  direct_start(t);
  return true;
}

void DirectTransport::Pool::direct_event(DirectConn* c, std::uint32_t events) {
  if (!c->t) {  // idle: the server closed it (or spoke out of turn)
    take_from_idle(c);
    direct_close(c);
    return;
  }
  if (c->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      direct_fail(c->t, CURLE_COULDNT_CONNECT, connect_message(c->t, err));
      return;
    }
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    c->connecting = false;
  }
  if (c->out_off < c->out.size() && !direct_send(c)) return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) direct_read(c);
}

void DirectTransport::Pool::direct_read(DirectConn* c) {
  char buf[16384];
  for (;;) {
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n > 0) {
      c->got_bytes = true;
      c->in.append(buf, static_cast<std::size_t>(n));
      if (!direct_parse(c)) return;                          // finished or failed: c may be gone
      if (static_cast<std::size_t>(n) < sizeof buf) return;  // drained (level-triggered)
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // End of stream or an error.
    int err = n < 0 ? errno : 0;
    if (retry_stale(c)) return;
    if (c->parser.until_close()) {
      direct_done(c);
      return;
    }
    if (err) {
      direct_fail(c->t, CURLE_RECV_ERROR, std::string("Recv failure: ") + std::strerror(err));
    } else if (!c->got_bytes) {
      direct_fail(c->t, CURLE_GOT_NOTHING, "Empty reply from server");
    } else if (c->parser.in_length_body()) {
      direct_fail(c->t, CURLE_PARTIAL_FILE,
                  "transfer closed with " + std::to_string(c->parser.remaining()) +
                      " bytes remaining to read");
    } else {
      direct_fail(c->t, CURLE_PARTIAL_FILE, "transfer closed before the response was complete");
    }
    return;
  }
}

// Parses what arrived; false when the transfer ended (finished or failed).
bool DirectTransport::Pool::direct_parse(DirectConn* c) {
  Transfer* t = c->t;
  const bool had_body = !t->response.body.empty();
  auto result = c->parser.feed(c->in, c->in_off, t->response, t->header_count);
  if (!had_body && !t->response.body.empty())
    t->response.first_body_byte_s =
        std::chrono::duration<double>(steady::now() - t->started).count();
  switch (result) {
    case ResponseParser::Result::More:
      if (c->in_off == c->in.size()) {  // drop the parsed prefix of the input
        c->in.clear();
        c->in_off = 0;
      } else if (c->in_off > 4096) {
        c->in.erase(0, c->in_off);
        c->in_off = 0;
      }
      return true;
    case ResponseParser::Result::Done:
      direct_done(c);
      return false;
    case ResponseParser::Result::Failed:
      break;
  }
  bool framing = c->parser.failure() == ResponseParser::Failure::BadFraming;
  direct_fail(t, framing ? CURLE_RECV_ERROR : CURLE_WEIRD_SERVER_REPLY, c->parser.message());
  return false;
}

// The response is complete: the connection goes back to the pool (or is closed).
void DirectTransport::Pool::direct_done(DirectConn* c) {
  Transfer* t = c->t;
  c->reused = true;
  settle(c);  // it answered: the server has accepted it
  bool reusable = c->parser.keep_alive() && c->in_off == c->in.size() &&
                  idle_count < static_cast<std::size_t>(std::max(0L, max_idle));
  c->t = nullptr;
  t->conn = nullptr;
  if (reusable) {
    // A connection is reused only well within the idle time the server announced.
    int keep_s = c->parser.keep_alive_timeout_s();
    c->reuse_before =
        keep_s < 0 ? steady::time_point::max()
                   : steady::now() +
                         std::chrono::milliseconds(keep_s * 1000 - std::min(keep_s * 500, 1000));
    c->in.clear();
    c->in_off = 0;
    c->out.clear();
    direct_register(c, EPOLLIN);
    hosts[c->key].idle.push_back(c);
    ++idle_count;
  }
  std::string key = c->key;
  if (!reusable) direct_close(c, false);
  t->result = CURLE_OK;
  direct_finished(t);
  dispatch_waiting(key);
}

void DirectTransport::Pool::direct_fail(Transfer* t, CURLcode code, const std::string& detail) {
  if (DirectConn* c = t->conn) {
    t->conn = nullptr;
    c->t = nullptr;
    direct_close(c);
  }
  t->result = code;
  std::snprintf(t->error_buffer, sizeof t->error_buffer, "%s", detail.c_str());
  direct_finished(t);
}

}  // namespace flare::net
