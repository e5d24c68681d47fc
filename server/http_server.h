// HttpServer: the coordinator's one HTTP(S) listener for operators
// (Prometheus /metrics, the status page and its JSON). It serves GET
// routes given at creation; everything else is 404 (or 405 for another
// method). Built on cpp-httplib, which stays out of this header.
//
//   HttpServerOptions options;
//   options.address = "0.0.0.0:9464";
//   options.tls_cert_path = "coordinator.pem";
//   options.tls_key_path = "coordinator.key";
//   options.routes["/metrics"] = [&](const HttpRequest&) {
//     return HttpResponse{200, std::string(kPrometheusContentType),
//                         registry.Render()};
//   };
//   ASSIGN_OR_RETURN(std::unique_ptr<HttpServer> http,
//                    HttpServer::Create(std::move(options)));
//
// Threads: a listener thread accepts connections and `num_threads` workers
// serve them; handlers run on the workers, concurrently, and must be
// thread-safe. The server owns its threads; Stop() (also run by the
// destructor) closes the listener, shuts down open connections (idle
// keep-alive ones and slow clients included) and joins every thread, so it
// returns once the handlers that are running have returned. SIGPIPE is
// blocked on the server's threads (a client that goes away mid-response is
// an error for that connection, not a signal for the process).
//
// Thread-safety: port() and Stop() may be called from any thread.
#ifndef FEDGE_SERVER_HTTP_SERVER_H_
#define FEDGE_SERVER_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fedge {

// A GET request, as a handler sees it.
struct HttpRequest {
  std::string path;  // Decoded path without the query, e.g. "/api/status".
  // Decoded query parameters ("?b=2&a=1"), sorted by name.
  std::vector<std::pair<std::string, std::string>> query;
  std::string remote_address;  // The client's IP address.
};

// A handler's answer. The server adds Content-Length, and
// "Cache-Control: no-store" and "X-Content-Type-Options: nosniff" unless
// `headers` sets them.
struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // Extra headers.
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  // "HOST:PORT" to listen on: an IPv4 address, a name, or "[IPv6]". Port 0
  // picks a free port (see HttpServer::port()).
  std::string address = "127.0.0.1:0";

  // HTTPS certificate chain and private key (PEM files). Both are required
  // unless `insecure` is true.
  std::string tls_cert_path;
  std::string tls_key_path;
  // Serve plain HTTP. Only for development and tests; refused together
  // with the TLS paths.
  bool insecure = false;

  // When set, the bound port is written there (decimal, then a newline)
  // atomically once the listener is bound.
  std::string port_file;

  // GET handlers by exact path ("/metrics"); paths start with '/'. HEAD is
  // answered from the same handler.
  std::map<std::string, HttpHandler> routes;

  // Worker threads serving connections (>= 1). One connection holds a
  // worker while it is open, so this is also the number of clients served
  // at a time; further connections wait for a worker.
  int num_threads = 8;
  // Largest request body accepted; larger requests get 413. (Request line
  // and each header line are also limited to 8 KiB by cpp-httplib.)
  int64_t max_request_bytes = 64 * 1024;
  // A connection is closed when the client sends nothing for
  // `read_timeout` while a request is due, or accepts nothing for
  // `write_timeout` while a response is sent. Whole milliseconds, > 0.
  absl::Duration read_timeout = absl::Seconds(5);
  absl::Duration write_timeout = absl::Seconds(5);
  // An idle keep-alive connection is closed after this (whole seconds,
  // >= 1) or after `keep_alive_max_requests` requests (>= 1).
  absl::Duration keep_alive_timeout = absl::Seconds(5);
  int keep_alive_max_requests = 100;
};

class HttpServer {
 public:
  // Validates `options`, binds the listener and starts serving.
  //   INVALID_ARGUMENT: a bad option, named in the message (address,
  //     tls_cert_path / tls_key_path / insecure, routes, a limit), or TLS
  //     files that do not hold a matching certificate and key.
  //   NOT_FOUND / PERMISSION_DENIED: a TLS file cannot be read.
  //   UNAVAILABLE: the address cannot be bound (in use, not local, or the
  //     name does not resolve); the message names the address.
  //   Errors of WriteStringAtomically for `port_file` (the listener is
  //     closed again).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(
      HttpServerOptions options);

  // Stops (see Stop()).
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound TCP port.
  int port() const { return port_; }
  // True when serving HTTPS.
  bool tls() const { return tls_; }

  // Closes the listener and every open connection and joins the server's
  // threads; returns once the handlers running at the time have returned.
  // Idempotent.
  void Stop();

  // The cpp-httplib side (defined and used only in http_server.cc).
  class Listener;

 private:
  HttpServer(std::unique_ptr<Listener> listener, int port, bool tls);

  std::unique_ptr<Listener> listener_;
  const int port_;
  const bool tls_;
  absl::Mutex stop_mu_;  // Serializes Stop().
  std::thread thread_ ABSL_GUARDED_BY(stop_mu_);
};

}  // namespace fedge

#endif  // FEDGE_SERVER_HTTP_SERVER_H_
