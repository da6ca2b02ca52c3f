#include "emulator/server/emulator.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

#include "emulator/server/api_error.hpp"
#include "emulator/server/control_plane.hpp"
#include "emulator/server/faults.hpp"
#include "emulator/server/http_server.hpp"
#include "emulator/server/router.hpp"
#include "emulator/server/routes.hpp"
#include "emulator/server/store.hpp"
#include "runtime/key_file.hpp"

namespace fs = std::filesystem;

namespace flare::emulator {
namespace {

constexpr const char* kAccount = "local";

std::string random_key() {
  std::random_device rd;
  std::string key = "flare_local_";
  const char* hex = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) key += hex[rd() % 16];
  return key;
}

// Reads the stored key or creates one (mode 0600). A stored key others may
// read is still used, with a warning.
std::string load_or_create_key(const std::string& path) {
  KeyFile stored = read_key_file(path);
  if (!stored.key.empty()) {
    if (!stored.warning.empty())
      std::fprintf(stderr, "flare emulator: warning: %s\n", stored.warning.c_str());
    return stored.key;
  }
  std::string key = random_key();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write the API key file " + path);
  std::string line = key + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::fchmod(fd, 0600);
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write the API key file " + path);
  return key;
}

// cpp-httplib as Debian builds it listens with a backlog of 5: a burst of
// clients connecting at once overflows it, and each dropped SYN is retried
// by the client only after 1 s, then 3 s. Listening again on the bound
// socket (found by its port) raises the backlog to the system's maximum.
void widen_listen_backlog(int port) {
  for (int fd = 0; fd < 4096; ++fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    int bound = -1;
    if (addr.ss_family == AF_INET) bound = ntohs(reinterpret_cast<sockaddr_in&>(addr).sin_port);
    if (addr.ss_family == AF_INET6) bound = ntohs(reinterpret_cast<sockaddr_in6&>(addr).sin6_port);
    if (bound == port) ::listen(fd, SOMAXCONN);
  }
}

}  // namespace

void add_admin_routes(Router& r, RouteEnv& env) {
  r.get("/admin/v1/faults", Auth::Any, [&env](const httplib::Request&, httplib::Response& res) {
    nlohmann::json j = env.faults.describe();
    j["replayed"] = env.replays.replayed();  // retried trainer steps answered from the cache
    send_json(res, 200, j);
  });
  r.post("/admin/v1/faults", Auth::Any,
         [&env](const httplib::Request& req, httplib::Response& res) {
           nlohmann::json body = parse_body(req);
           env.faults.set(get_string(body, "spec", ""));  // std::invalid_argument -> 400
           send_json(res, 200, env.faults.describe());
         });
  r.del("/admin/v1/faults", Auth::Any, [&env](const httplib::Request&, httplib::Response& res) {
    env.faults.set("");
    send_json(res, 200, env.faults.describe());
  });
}

struct Emulator::Impl {
  Options opt;
  bool temp_state = false;
  std::string key_path;
  std::string api_key;
  int port = 0;
  std::unique_ptr<Store> store;
  std::unique_ptr<ControlPlane> cp;
  Faults faults;
  std::unique_ptr<HttpServer> server;
  std::unique_ptr<Router> router;
  std::unique_ptr<RouteEnv> env;
  std::thread listener;
  bool running = false;
  int lock_fd = -1;  // flock on <state dir>/lock while running
};

namespace {

// One emulator per state dir: two would each keep their own view of the same
// database and buckets. The lock dies with the process, so a crash leaves none.
int lock_state_dir(const std::string& dir) {
  const std::string path = dir + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    std::string who = n > 0 ? " (pid " + std::string(pid, static_cast<size_t>(n)) + ")" : "";
    throw std::runtime_error("state dir " + dir + " is in use by another flare emulator" + who +
                             "; stop that one or use another state dir");
  }
  // The pid is only for the message above; the lock holds without it.
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, pid.data(), pid.size(), 0);
  return fd;
}

}  // namespace

Emulator::Emulator(Options opt) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.faults.set(opt.faults);  // std::invalid_argument names the bad rule
  if (opt.state_dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "flare-emulator-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a temporary state dir");
    opt.state_dir = tmpl;
    m.temp_state = true;
  }
  fs::create_directories(opt.state_dir);
  opt.state_dir = fs::canonical(opt.state_dir).string();
  if (opt.api_key.empty()) {
    m.key_path = opt.state_dir + "/api_key";
    m.api_key = load_or_create_key(m.key_path);
  } else {
    m.api_key = opt.api_key;
  }
  m.opt = opt;
}

Emulator::~Emulator() {
  stop();
  if (impl_->lock_fd >= 0) ::close(impl_->lock_fd);
  if (impl_->temp_state) {
    std::error_code ec;
    fs::remove_all(impl_->opt.state_dir, ec);
  }
}

void Emulator::start() {
  Impl& m = *impl_;
  if (m.running) return;
  if (m.lock_fd < 0) m.lock_fd = lock_state_dir(m.opt.state_dir);
  m.store = std::make_unique<Store>(m.opt.state_dir + "/state.db");
  if (!m.store->meta("account")) m.store->set_meta("account", kAccount);
  m.cp =
      std::make_unique<ControlPlane>(m.opt, *m.store, *m.store->meta("account"), m.opt.state_dir);
  m.cp->restore();

  m.server = std::make_unique<HttpServer>();
  m.server->set_tcp_nodelay(true);  // else each keep-alive answer waits for a delayed ACK
  // httplib's default adds SO_REUSEPORT, which lets a second server bind the
  // same port and take half of the requests: only SO_REUSEADDR here, so that
  // a port in use is an error while a restart need not wait out TIME_WAIT.
  m.server->set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  m.server->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404 && res.body.empty()) {
      send_error(res, 404, "NOT_FOUND", "no route for " + req.method + " " + req.path);
    } else if (res.body.empty()) {
      // What httplib answers by itself, before any route ran.
      std::string cause = res.status == 400   ? "malformed HTTP request"
                          : res.status == 413 ? "request body too large"
                          : res.status == 414 ? "request line too long"
                                              : "request failed";
      send_error(res, res.status, "ERROR", cause + " (status " + std::to_string(res.status) + ")");
    }
  });
  m.server->set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          send_error(res, 500, "INTERNAL", e.what());
        } catch (...) {
          send_error(res, 500, "INTERNAL", "unknown error");
        }
      });

  int bound = m.opt.port == 0 ? m.server->bind_to_any_port(m.opt.host)
                              : (m.server->bind_to_port(m.opt.host, m.opt.port) ? m.opt.port : -1);
  if (bound <= 0) {
    m.server.reset();
    m.cp.reset();
    m.store.reset();
    throw std::runtime_error("cannot listen on " + m.opt.host + ":" + std::to_string(m.opt.port) +
                             (m.opt.port != 0 ? ": port " + std::to_string(m.opt.port) +
                                                    " is in use (another flare serve?) or not "
                                                    "available; choose another with --port"
                                              : ""));
  }
  m.port = bound;
  widen_listen_backlog(bound);
  m.env.reset(new RouteEnv{*m.cp, m.faults, base_url()});
  m.router =
      std::make_unique<Router>(*m.server, m.api_key, m.faults, m.opt.log_requests, m.opt.state_dir);
  add_deployment_routes(*m.router, *m.env);
  add_addon_routes(*m.router, *m.env);
  add_completion_routes(*m.router, *m.env);
  add_openai_routes(*m.router, *m.env);
  add_hotload_routes(*m.router, *m.env);
  add_trainer_job_routes(*m.router, *m.env);
  add_trainer_routes(*m.router, *m.env);
  add_admin_routes(*m.router, *m.env);

  m.cp->start();
  httplib::Server* srv = m.server.get();
  m.listener = std::thread([srv] { srv->listen_after_bind(); });
  while (!srv->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  m.running = true;
}

void Emulator::stop() {
  Impl& m = *impl_;
  if (!m.running) return;
  m.running = false;
  m.server->shutdown();  // closes waiting connections; handlers running finish
  if (m.listener.joinable()) m.listener.join();
  m.server.reset();
  m.cp->stop();
  m.router.reset();
  m.env.reset();
  m.cp.reset();
  m.store.reset();
  ::close(m.lock_fd);  // closing the file releases the lock
  m.lock_fd = -1;
}

int Emulator::port() const {
  return impl_->port;
}
std::string Emulator::base_url() const {
  std::string host = impl_->opt.host;
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(impl_->port);
}
std::string Emulator::api_key() const {
  return impl_->api_key;
}
std::string Emulator::account_id() const {
  return kAccount;
}
std::string Emulator::state_dir() const {
  return impl_->opt.state_dir;
}
std::string Emulator::api_key_path() const {
  return impl_->key_path;
}

}  // namespace flare::emulator
