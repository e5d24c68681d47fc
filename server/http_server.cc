#include "server/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/host_port.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

// Blocks SIGPIPE on the calling thread (and the threads it starts): a write
// to a connection the peer has closed then fails with EPIPE.
void BlockSigpipe() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// cpp-httplib's Server::stop() does nothing until listen_after_bind() has
// started running, so a Stop() right after Create() would leave the accept
// loop running forever. Closing the listening socket ourselves works at
// any time: the loop then never starts or ends at once.
template <typename Base>
class ClosableServer final : public Base {
 public:
  using Base::Base;
  int listener_fd() const { return this->svr_sock_; }
  void CloseListener() {
    const int fd = this->svr_sock_.exchange(INVALID_SOCKET);
    if (fd == INVALID_SOCKET) return;
    ::shutdown(fd, SHUT_RDWR);  // Wakes accept().
    ::close(fd);
  }
};

// The local address of the listener, to recognise its accepted sockets.
struct LocalAddress {
  int family = AF_UNSPEC;
  int port = 0;
  bool wildcard = true;
  char address[16] = {};  // in_addr or in6_addr bytes.
};

absl::StatusOr<LocalAddress> GetLocalAddress(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    return ErrnoStatus(errno, "getsockname", "HTTP listener");
  }
  LocalAddress local;
  local.family = storage.ss_family;
  if (storage.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    local.port = ntohs(in->sin_port);
    local.wildcard = in->sin_addr.s_addr == htonl(INADDR_ANY);
    std::memcpy(local.address, &in->sin_addr, sizeof(in->sin_addr));
  } else if (storage.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    local.port = ntohs(in6->sin6_port);
    local.wildcard = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
    std::memcpy(local.address, &in6->sin6_addr, sizeof(in6->sin6_addr));
  } else {
    return absl::InternalError("HTTP listener is not an IP socket");
  }
  return local;
}

// True when `fd` is a connected TCP socket whose local end is `listener`'s
// address (a connection accepted by that listener).
bool IsAcceptedBy(int fd, const LocalAddress& listener) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  int listening = 0;
  socklen_t length = sizeof(listening);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 ||
      listening != 0) {
    return false;
  }
  absl::StatusOr<LocalAddress> local = GetLocalAddress(fd);
  if (!local.ok() || local->port != listener.port) return false;
  if (listener.wildcard) return true;
  return local->family == listener.family &&
         std::memcmp(local->address, listener.address,
                     sizeof(local->address)) == 0;
}

// Shuts down (without closing: cpp-httplib owns the descriptors) every
// connection accepted by `listener`, so that the workers serving them see
// end-of-file at once instead of waiting for a timeout. cpp-httplib does
// not expose its connections, so they are found in /proc/self/fd. Each
// descriptor is duplicated before it is inspected, so the check and the
// shutdown concern the same socket even if the number is reused meanwhile.
void ShutdownConnections(const LocalAddress& listener) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) {
    FEDGE_LOG(WARNING) << "HTTP server: cannot list /proc/self/fd; open "
                          "connections end at their timeouts";
    return;
  }
  std::vector<int> fds;
  while (const dirent* entry = readdir(dir)) {
    int fd;
    if (absl::SimpleAtoi(entry->d_name, &fd) && fd != dirfd(dir)) {
      fds.push_back(fd);
    }
  }
  closedir(dir);
  for (const int fd : fds) {
    const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) continue;
    if (IsAcceptedBy(copy, listener)) ::shutdown(copy, SHUT_RDWR);
    ::close(copy);
  }
}

// cpp-httplib's task queue: the connection workers. On shutdown (called by
// the accept loop once it has ended, so every accepted connection is
// known) it first runs `before_shutdown`, then serves what is queued and
// joins the workers.
class ConnectionWorkers final : public httplib::TaskQueue {
 public:
  ConnectionWorkers(int num_threads, std::function<void()> before_shutdown)
      : before_shutdown_(std::move(before_shutdown)) {
    for (int i = 0; i < num_threads; ++i) {
      threads_.emplace_back([this] { Work(); });
    }
  }
  ~ConnectionWorkers() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    absl::MutexLock lock(&mu_);
    jobs_.push_back(std::move(fn));
  }

  void shutdown() override {
    if (threads_.empty()) return;
    before_shutdown_();
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Work() {
    BlockSigpipe();
    while (true) {
      std::function<void()> job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &ConnectionWorkers::HasWorkOrStop));
        if (jobs_.empty()) return;  // Stopping, and nothing left to serve.
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();  // Serves the connection, then closes it.
    }
  }

  bool HasWorkOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || !jobs_.empty();
  }

  const std::function<void()> before_shutdown_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> jobs_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;  // Touched by the accept loop only.
};

absl::Status ValidateOptions(const HttpServerOptions& options) {
  if (options.insecure &&
      (!options.tls_cert_path.empty() || !options.tls_key_path.empty())) {
    return Invalid("insecure",
                   "set together with tls_cert_path/tls_key_path; "
                   "choose HTTPS or plain HTTP");
  }
  if (!options.insecure) {
    if (options.tls_cert_path.empty()) {
      return Invalid("tls_cert_path",
                     "required for HTTPS (plain HTTP needs insecure: true)");
    }
    if (options.tls_key_path.empty()) {
      return Invalid("tls_key_path",
                     "required for HTTPS (plain HTTP needs insecure: true)");
    }
  }
  for (const auto& [path, handler] : options.routes) {
    if (path.empty() || path[0] != '/') {
      return Invalid("routes",
                     absl::StrCat("path '", path, "' does not start with '/'"));
    }
    if (handler == nullptr) {
      return Invalid("routes", absl::StrCat("no handler for '", path, "'"));
    }
  }
  if (options.num_threads < 1) return Invalid("num_threads", "must be >= 1");
  if (options.max_request_bytes < 1) {
    return Invalid("max_request_bytes", "must be >= 1");
  }
  if (options.read_timeout < absl::Milliseconds(1)) {
    return Invalid("read_timeout", "must be >= 1ms");
  }
  if (options.write_timeout < absl::Milliseconds(1)) {
    return Invalid("write_timeout", "must be >= 1ms");
  }
  if (options.keep_alive_timeout < absl::Seconds(1)) {
    return Invalid("keep_alive_timeout", "must be >= 1s");
  }
  if (options.keep_alive_max_requests < 1) {
    return Invalid("keep_alive_max_requests", "must be >= 1");
  }
  return absl::OkStatus();
}

// Checks that a TLS file can be read, naming the option that gave it.
absl::Status CheckReadable(absl::string_view field, const std::string& path) {
  return Annotate(ReadSmallFile(path, 1 << 20).status(), field);
}

std::pair<time_t, time_t> SecondsAndMicros(absl::Duration d) {
  const int64_t micros = absl::ToInt64Microseconds(d);
  return {static_cast<time_t>(micros / 1000000),
          static_cast<time_t>(micros % 1000000)};
}

void SetResponse(const HttpResponse& response, httplib::Response* res) {
  res->status = response.status;
  for (const auto& [name, value] : response.headers) {
    res->set_header(name.c_str(), value);
  }
  if (!res->has_header("Cache-Control")) {
    res->set_header("Cache-Control", "no-store");
  }
  if (!res->has_header("X-Content-Type-Options")) {
    res->set_header("X-Content-Type-Options", "nosniff");
  }
  res->set_content(response.body, response.content_type.c_str());
}

HttpResponse TextResponse(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

}  // namespace

// The cpp-httplib server, its routes and the accept loop's thread body.
class HttpServer::Listener {
 public:
  Listener(std::unique_ptr<httplib::Server> server,
           std::function<void()> close_listener, std::function<int()> fd,
           std::map<std::string, HttpHandler> routes)
      : server_(std::move(server)),
        close_listener_(std::move(close_listener)),
        listener_fd_(std::move(fd)),
        routes_(std::move(routes)) {}

  httplib::Server& server() { return *server_; }
  int listener_fd() const { return listener_fd_(); }
  void set_local_address(const LocalAddress& local) { local_ = local; }

  // Installs the handlers, limits and connection workers.
  void Configure(const HttpServerOptions& options) {
    httplib::Server& s = *server_;
    s.Get(".*", [this](const httplib::Request& req, httplib::Response& res) {
      SetResponse(Route(req), &res);
    });
    const auto not_allowed = [](const httplib::Request&,
                                httplib::Response& res) {
      HttpResponse response = TextResponse(405, "method not allowed\n");
      response.headers.emplace_back("Allow", "GET, HEAD");
      SetResponse(response, &res);
    };
    s.Post(".*", not_allowed);
    s.Put(".*", not_allowed);
    s.Patch(".*", not_allowed);
    s.Delete(".*", not_allowed);
    s.Options(".*", not_allowed);
    s.set_exception_handler([](const httplib::Request& req,
                               httplib::Response& res,
                               std::exception_ptr error) {
      std::string what = "unknown exception";
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      FEDGE_LOG(ERROR) << "HTTP handler for " << req.path << " threw: " << what;
      SetResponse(TextResponse(500, "internal error\n"), &res);
    });
    const auto [read_s, read_us] = SecondsAndMicros(options.read_timeout);
    const auto [write_s, write_us] = SecondsAndMicros(options.write_timeout);
    s.set_read_timeout(read_s, read_us);
    s.set_write_timeout(write_s, write_us);
    s.set_keep_alive_timeout(absl::ToInt64Seconds(options.keep_alive_timeout));
    s.set_keep_alive_max_count(options.keep_alive_max_requests);
    s.set_payload_max_length(static_cast<size_t>(options.max_request_bytes));
    // cpp-httplib's default also sets SO_REUSEPORT, which would let a second
    // server bind the same port and silently share its connections.
    s.set_socket_options([](int fd) {
      const int yes = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    const int num_threads = options.num_threads;
    s.new_task_queue = [this, num_threads] {
      return new ConnectionWorkers(num_threads,
                                   [this] { ShutdownConnections(local_); });
    };
  }

  // The accept loop, run on the server's thread until CloseListener().
  void Run() {
    BlockSigpipe();  // Inherited by the connection workers.
    if (!server_->listen_after_bind()) {
      FEDGE_LOG(ERROR) << "HTTP server on port " << local_.port
                       << ": accept failed; no longer serving";
    }
  }

  void CloseListener() { close_listener_(); }

 private:
  HttpResponse Route(const httplib::Request& req) const {
    const auto it = routes_.find(req.path);
    if (it == routes_.end()) return TextResponse(404, "not found\n");
    HttpRequest request;
    request.path = req.path;
    request.query.assign(req.params.begin(), req.params.end());
    request.remote_address = req.remote_addr;
    return it->second(request);
  }

  const std::unique_ptr<httplib::Server> server_;
  const std::function<void()> close_listener_;
  const std::function<int()> listener_fd_;
  const std::map<std::string, HttpHandler> routes_;
  LocalAddress local_;  // Set before the accept loop starts.
};

namespace {

template <typename Base, typename... Args>
std::unique_ptr<HttpServer::Listener> MakeListener(
    std::map<std::string, HttpHandler> routes, Args&&... args) {
  auto server =
      std::make_unique<ClosableServer<Base>>(std::forward<Args>(args)...);
  ClosableServer<Base>* raw = server.get();
  return std::make_unique<HttpServer::Listener>(
      std::move(server), [raw] { raw->CloseListener(); },
      [raw] { return raw->listener_fd(); }, std::move(routes));
}

absl::StatusOr<std::unique_ptr<HttpServer::Listener>> NewListener(
    HttpServerOptions* options) {
  if (options->insecure) {
    return MakeListener<httplib::Server>(std::move(options->routes));
  }
  RETURN_IF_ERROR(CheckReadable("tls_cert_path", options->tls_cert_path));
  RETURN_IF_ERROR(CheckReadable("tls_key_path", options->tls_key_path));
  auto listener = MakeListener<httplib::SSLServer>(
      std::move(options->routes), options->tls_cert_path.c_str(),
      options->tls_key_path.c_str());
  if (!listener->server().is_valid()) {
    return Invalid(
        "tls_cert_path",
        absl::StrCat("cannot load certificate '", options->tls_cert_path,
                     "' with key '", options->tls_key_path,
                     "' (not PEM, or the key does not match)"));
  }
  SSL_CTX_set_min_proto_version(
      static_cast<httplib::SSLServer&>(listener->server()).ssl_context(),
      TLS1_2_VERSION);
  return listener;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(
    HttpServerOptions options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  std::string host;
  int port = 0;
  if (absl::Status parsed = ParseHostPort(options.address, &host, &port);
      !parsed.ok()) {
    return Invalid("address", parsed.message());
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Listener> listener, NewListener(&options));
  listener->Configure(options);

  httplib::Server& server = listener->server();
  const bool bound = port == 0 ? (port = server.bind_to_any_port(host)) > 0
                               : server.bind_to_port(host, port);
  if (!bound) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen for HTTP on ", options.address,
        " (address in use, not local, or the host does not resolve)"));
  }
  absl::StatusOr<LocalAddress> local = GetLocalAddress(listener->listener_fd());
  absl::Status status = local.status();
  if (status.ok() && !options.port_file.empty()) {
    status = WriteStringAtomically(options.port_file, absl::StrCat(port, "\n"));
  }
  if (!status.ok()) {
    listener->CloseListener();
    return status;
  }
  listener->set_local_address(*local);
  const bool tls = !options.insecure;
  FEDGE_LOG(INFO) << "HTTP server listening on " << host << ":" << port
                  << (tls ? " (HTTPS)" : " (plain HTTP, insecure)");
  return std::unique_ptr<HttpServer>(
      new HttpServer(std::move(listener), port, tls));
}

HttpServer::HttpServer(std::unique_ptr<Listener> listener, int port, bool tls)
    : listener_(std::move(listener)), port_(port), tls_(tls) {
  absl::MutexLock lock(&stop_mu_);
  thread_ = std::thread([l = listener_.get()] { l->Run(); });
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  absl::MutexLock lock(&stop_mu_);
  if (!thread_.joinable()) return;
  listener_->CloseListener();
  // The accept loop ends, shuts down the open connections and joins the
  // workers (ConnectionWorkers::shutdown) before the thread returns.
  thread_.join();
}

}  // namespace fedge
