#include "net/direct_transport.hpp"

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

bool DirectTransport::Pool::proxy_configured() {
  for (const char* name : {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"}) {
    const char* v = std::getenv(name);
    if (v && *v) return true;
  }
  return false;
}

// Whether `t` can go direct: http:// to an IP literal, no credentials, no
// proxy, no limits to enforce, a path libcurl would send as it is, and no
// header that changes the framing. Fills t->key and t->addr.
bool DirectTransport::Pool::direct_eligible(Transfer* t) {
  return direct_enabled && !proxy_env && !connection_limits && direct_target(t);
}

// Closes a connection that is neither idle nor carrying a transfer.
void DirectTransport::Pool::direct_close(DirectConn* c, bool dispatch) {
  if (c->fd >= 0) {
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, nullptr);
    direct_by_fd[static_cast<std::size_t>(c->fd)] = nullptr;
    close(c->fd);
  }
  bool was_opening = c->opening;
  settle(c);
  std::string key = std::move(c->key);
  delete c;
  if (was_opening && dispatch) dispatch_waiting(key);
}

// The server has the connection (or it is gone): it no longer counts as opening.
void DirectTransport::Pool::settle(DirectConn* c) {
  if (!c->opening) return;
  c->opening = false;
  auto& list = hosts[c->key].opening;
  list.erase(std::find(list.begin(), list.end(), c));
  --opening_total;
}

// Settles the opening connections whose request the server's TCP has
// acknowledged; restarts transfers whose connection was never accepted.
void DirectTransport::Pool::check_opening(Host& h, bool restart_stuck) {
  auto now = steady::now();
  std::vector<DirectConn*> list = h.opening;
  for (DirectConn* c : list) {
    if (c->connecting || c->out_off == 0) continue;
    int unacked = 0;
    if (ioctl(c->fd, SIOCOUTQ, &unacked) != 0) continue;
    if (static_cast<std::size_t>(unacked) < c->out_off) {
      // Some of the request was acknowledged: the server has the connection
      // (it may read the rest late: never send such a request again).
      settle(c);
    } else if (restart_stuck && c->out_off == c->out.size() && now - c->sent_at > kStuckAfter &&
               c->t && c->t->reconnects < kMaxReconnects && !c->got_bytes) {
      // Not one byte acknowledged: the server dropped the handshake, and has
      // not seen the request. Send it again on a new connection.
      Transfer* t = c->t;
      ++t->reconnects;
      t->conn = nullptr;
      c->t = nullptr;
      direct_close(c, false);
      direct_start(t);
    }
  }
}

void DirectTransport::Pool::check_all_opening() {
  for (auto& [key, h] : hosts)
    if (!h.opening.empty()) check_opening(h, true);
  for (auto& [key, h] : hosts)
    if (!h.waiting.empty()) dispatch_waiting(key);
}

// Gives waiting transfers the connections that became available.
void DirectTransport::Pool::dispatch_waiting(const std::string& key) {
  Host& h = hosts[key];
  while (!h.waiting.empty() && (!h.idle.empty() || h.opening.size() < kMaxOpening)) {
    Transfer* t = h.waiting.front();
    h.waiting.pop_front();
    --waiting_total;
    t->waiting = false;
    direct_start(t);
  }
}

// Closes the idle connections at the top of the pool that are past the server's
// announced keep-alive time (the pool is used last in, first out).
void DirectTransport::Pool::drop_expired_idle(Host& h) {
  if (h.idle.empty() || h.idle.back()->reuse_before == steady::time_point::max()) return;
  auto now = steady::now();
  while (!h.idle.empty() && h.idle.back()->reuse_before <= now) {
    DirectConn* c = h.idle.back();
    h.idle.pop_back();
    --idle_count;
    direct_close(c, false);
  }
}

void DirectTransport::Pool::take_from_idle(DirectConn* c) {
  auto& list = hosts[c->key].idle;
  auto pos = std::find(list.begin(), list.end(), c);
  if (pos == list.end()) return;
  list.erase(pos);
  --idle_count;
}

void DirectTransport::Pool::stop_waiting(Transfer* t) {
  if (!t->waiting) return;
  auto& q = hosts[t->key].waiting;
  q.erase(std::find(q.begin(), q.end(), t));
  --waiting_total;
  t->waiting = false;
}

// Starts (or restarts, after a stale keep-alive connection) a direct transfer.
void DirectTransport::Pool::direct_start(Transfer* t) {
  DirectConn* c = nullptr;
  Host& h = hosts[t->key];
  // A retry after a stale connection opens a new one, past the opening cap (once per
  // transfer): the server closes its idle connections in sweeps, so the next idle one
  // may be as dead as the last, and its close not yet seen here.
  const bool pooled = !t->direct_retried;
  drop_expired_idle(h);
  if (pooled && !h.idle.empty()) {
    c = h.idle.back();
    h.idle.pop_back();
    --idle_count;
  } else if (pooled && h.opening.size() >= kMaxOpening &&
             (check_opening(h, false), h.idle.empty() && h.opening.size() >= kMaxOpening)) {
    h.waiting.push_back(t);
    ++waiting_total;
    t->waiting = true;
    return;
  } else if (pooled && !h.idle.empty()) {
    c = h.idle.back();
    h.idle.pop_back();
    --idle_count;
  } else {
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      direct_fail(t, CURLE_COULDNT_CONNECT, std::string("socket: ") + std::strerror(errno));
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    c = new DirectConn();
    c->fd = fd;
    c->key = t->key;
    c->opening = true;
    h.opening.push_back(c);
    ++opening_total;
    if (direct_by_fd.size() <= static_cast<std::size_t>(fd))
      direct_by_fd.resize(static_cast<std::size_t>(fd) + 1, nullptr);
    direct_by_fd[static_cast<std::size_t>(fd)] = c;
    ++t->new_connections;
    t->connect_deadline =
        steady::now() + std::chrono::milliseconds(t->request.connect_timeout_s > 0
                                                      ? to_ms(t->request.connect_timeout_s)
                                                      : 300000);
    direct_next_due = std::min(direct_next_due, t->connect_deadline);
    int rc = connect(fd, reinterpret_cast<const sockaddr*>(&t->addr), t->addr_len);
    if (rc != 0 && errno != EINPROGRESS) {
      int err = errno;
      c->t = t;
      t->conn = c;
      direct_fail(t, CURLE_COULDNT_CONNECT, connect_message(t, err));
      return;
    }
    c->connecting = rc != 0;
  }
  c->t = t;
  t->conn = c;
  c->parser.begin();
  c->in.clear();
  c->in_off = 0;
  c->got_bytes = false;
  write_request(t->request, t->key, c->out);
  c->out_off = 0;
  if (c->connecting) {
    direct_register(c, EPOLLOUT);
    return;
  }
  direct_send(c);
}

std::string DirectTransport::Pool::connect_message(const Transfer* t, int err) const {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t->started);
  std::string host = t->key.substr(0, t->key.rfind(':'));
  std::string port =
      t->key.rfind(':') == std::string::npos ? "80" : t->key.substr(t->key.rfind(':') + 1);
  return "Failed to connect to " + host + " port " + port + " after " + std::to_string(ms.count()) +
         " ms: " + std::strerror(err);
}

void DirectTransport::Pool::remove_running(Transfer* t) {
  auto pos = std::find(direct_running.begin(), direct_running.end(), t);
  if (pos != direct_running.end()) {
    *pos = direct_running.back();
    direct_running.pop_back();
  }
}

void DirectTransport::Pool::direct_finished(Transfer* t) {
  stop_waiting(t);
  remove_running(t);
  t->response.total_s = std::chrono::duration<double>(steady::now() - t->started).count();
  t->state = State::Finished;
  finished.push_back(t);
}

// Fails the direct transfers whose time is up; returns the next deadline.
steady::time_point DirectTransport::Pool::direct_timeouts() {
  steady::time_point next = steady::time_point::max();
  if (direct_running.empty()) return next;
  auto now = steady::now();
  // Nothing can be due before direct_next_due (a lower bound: transfers
  // that finished may have held it): skip the scan until then.
  if (now < direct_next_due) return direct_next_due;
  for (std::size_t i = 0; i < direct_running.size();) {
    Transfer* t = direct_running[i];
    bool connecting = t->conn && t->conn->connecting;
    steady::time_point due = t->deadline;
    if (connecting) due = std::min(due, t->connect_deadline);
    if (due <= now) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - t->started).count();
      std::string detail =
          connecting ? "Connection timed out after " + std::to_string(ms) + " milliseconds"
                     : "Operation timed out after " + std::to_string(ms) + " milliseconds with " +
                           std::to_string(t->response.body.size()) + " bytes received";
      direct_fail(t, CURLE_OPERATION_TIMEDOUT, detail);  // removes it from direct_running
      continue;
    }
    next = std::min(next, due);
    ++i;
  }
  direct_next_due = next;
  return next;
}

void DirectTransport::Pool::direct_cancel(Transfer* t) {
  stop_waiting(t);
  remove_running(t);
  if (DirectConn* c = t->conn) {
    t->conn = nullptr;
    c->t = nullptr;
    direct_close(c);  // mid-request: the connection cannot be reused
  }
}

// Was HttpClient::start's part for direct transfers.
void DirectTransport::Pool::start(Transfer* t) {
  t->direct_retried = false;
  t->reconnects = 0;
  t->new_connections = 0;
  t->started = steady::now();
  t->deadline = t->request.timeout_s > 0
                    ? t->started + std::chrono::milliseconds(to_ms(t->request.timeout_s))
                    : steady::time_point::max();
  direct_running.push_back(t);
  direct_next_due = std::min(direct_next_due, t->deadline);
  direct_start(t);
}

steady::time_point DirectTransport::Pool::service() {
  steady::time_point due = direct_timeouts();
  if (opening_total > 0) {
    // Waiting transfers look again soon; stuck handshakes every quarter second.
    auto now = steady::now();
    if (waiting_total > 0 || now >= next_stuck_check) {
      check_all_opening();
      next_stuck_check = now + std::chrono::milliseconds(250);
    }
    if (opening_total > 0)
      due =
          std::min(due, waiting_total > 0 ? now + std::chrono::milliseconds(1) : next_stuck_check);
  }
  return due;
}

void DirectTransport::Pool::close_all() {
  for (auto& [key, host] : hosts) {
    for (DirectConn* c : host.idle) direct_close(c, false);
    host.idle.clear();
    host.waiting.clear();
  }
  idle_count = 0;
  waiting_total = 0;
  for (Transfer* t : direct_running) {
    if (DirectConn* c = t->conn) {
      t->conn = nullptr;
      c->t = nullptr;
      direct_close(c, false);
    }
    t->waiting = false;
  }
  direct_running.clear();
}

DirectTransport::DirectTransport(int epoll_fd, std::deque<Transfer*>& finished,
                                 const ClientOptions& options)
    : pool_(std::make_unique<Pool>(epoll_fd, finished)) {
  const char* no_direct = std::getenv("FLARE_HTTP_LIBCURL");
  pool_->direct_enabled = !(no_direct && *no_direct && std::strcmp(no_direct, "0") != 0);
  pool_->connection_limits = options.max_host_connections > 0 || options.max_total_connections > 0;
  pool_->proxy_env = Pool::proxy_configured();
  pool_->max_idle = options.max_idle_connections;
}

DirectTransport::~DirectTransport() {
  pool_->close_all();
}

bool DirectTransport::eligible(Transfer* t) {
  return pool_->direct_eligible(t);
}

void DirectTransport::start(Transfer* t) {
  pool_->start(t);
}

void DirectTransport::cancel(Transfer* t) {
  pool_->direct_cancel(t);
}

bool DirectTransport::on_event(int fd, std::uint32_t events) {
  auto i = static_cast<std::size_t>(fd);
  if (i >= pool_->direct_by_fd.size() || !pool_->direct_by_fd[i]) return false;
  pool_->direct_event(pool_->direct_by_fd[i], events);
  return true;
}

steady::time_point DirectTransport::service() {
  return pool_->service();
}

void DirectTransport::timeouts() {
  pool_->direct_timeouts();
}

void DirectTransport::close_all() {
  pool_->close_all();
}

}  // namespace flare::net
