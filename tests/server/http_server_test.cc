#include "server/http_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/scratch_dir.h"

namespace fedge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kSourceDir = FEDGE_SOURCE_DIR;

// Runs `fn` and aborts the test binary when it has not returned after
// `limit`: a guard against a hang, not a timing assertion.
void RunWithHangGuard(const std::string& what, std::function<void()> fn,
                      std::chrono::seconds limit = std::chrono::seconds(60)) {
  std::packaged_task<void()> task(std::move(fn));
  std::future<void> done = task.get_future();
  std::thread thread(std::move(task));
  if (done.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "%s did not return within %llds; aborting\n",
                 what.c_str(), static_cast<long long>(limit.count()));
    std::abort();
  }
  thread.join();
}

// Certificates from deploy/make-certs.sh, made once per test binary.
const std::string& CertDir() {
  static const std::string dir = [] {
    const std::string d =
        absl::StrCat(::testing::TempDir(), "/fedge_http_certs_", getpid());
    const std::string command = absl::StrCat(
        kSourceDir, "/deploy/make-certs.sh ", d, " --agents 1 >/dev/null");
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    fedge::testing::RemoveAtExit(d);
    return d;
  }();
  return dir;
}

HttpResponse Text(std::string body) {
  HttpResponse response;
  response.body = std::move(body);
  return response;
}

HttpServerOptions PlainOptions() {
  HttpServerOptions options;
  options.insecure = true;
  options.routes["/hello"] = [](const HttpRequest& request) {
    std::vector<std::string> query;
    for (const auto& [name, value] : request.query) {
      query.push_back(absl::StrCat(name, "=", value));
    }
    return Text(absl::StrCat("hello ", request.remote_address, " ",
                             absl::StrJoin(query, "&")));
  };
  options.routes["/json"] = [](const HttpRequest&) {
    return HttpResponse{201, "application/json", "{\"a\":1}", {}};
  };
  return options;
}

std::unique_ptr<HttpServer> StartOrDie(HttpServerOptions options) {
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Create(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

int ConnectTcp(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
            0);
  return fd;
}

// Reads from `fd` until end-of-file or an error; returns what was read.
std::string ReadToEnd(int fd) {
  std::string out;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) out.append(buffer, n);
  return out;
}

TEST(HttpServerTest, Plain_KnownPath_CallsHandler) {
  std::unique_ptr<HttpServer> server = StartOrDie(PlainOptions());
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  EXPECT_FALSE(server->tls());
  httplib::Client client("127.0.0.1", server->port());
  httplib::Result hello = client.Get("/hello?b=2&a=x%20y");
  ASSERT_TRUE(hello) << httplib::to_string(hello.error());
  EXPECT_EQ(hello->status, 200);
  EXPECT_EQ(hello->body, "hello 127.0.0.1 a=x y&b=2");
  EXPECT_EQ(hello->get_header_value("Content-Type"),
            "text/plain; charset=utf-8");
  EXPECT_EQ(hello->get_header_value("Cache-Control"), "no-store");
  httplib::Result json = client.Get("/json");
  ASSERT_TRUE(json);
  EXPECT_EQ(json->status, 201);
  EXPECT_EQ(json->body, "{\"a\":1}");
  EXPECT_EQ(json->get_header_value("Content-Type"), "application/json");
}

TEST(HttpServerTest, Plain_UnknownPathAndOtherMethods_Refused) {
  std::unique_ptr<HttpServer> server = StartOrDie(PlainOptions());
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());
  httplib::Result missing = client.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  httplib::Result prefix = client.Get("/hello/more");
  ASSERT_TRUE(prefix);
  EXPECT_EQ(prefix->status, 404);
  httplib::Result post = client.Post("/hello", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->get_header_value("Allow"), "GET, HEAD");
  httplib::Result head = client.Head("/hello");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->body, "");
}

TEST(HttpServerTest, RequestBodyOverLimit_Gets413) {
  HttpServerOptions options = PlainOptions();
  options.max_request_bytes = 10;
  std::unique_ptr<HttpServer> server = StartOrDie(std::move(options));
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());
  httplib::Result post = client.Post("/hello", std::string(100, 'x'), "a/b");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 413);
}

TEST(HttpServerTest, HandlerThrows_Gets500) {
  HttpServerOptions options = PlainOptions();
  options.routes["/throw"] = [](const HttpRequest&) -> HttpResponse {
    throw std::runtime_error("secret detail");
  };
  std::unique_ptr<HttpServer> server = StartOrDie(std::move(options));
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());
  httplib::Result result = client.Get("/throw");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 500);
  EXPECT_THAT(result->body, Not(HasSubstr("secret")));
  EXPECT_FALSE(result->has_header("EXCEPTION_WHAT"));
}

TEST(HttpServerTest, PortFile_HoldsBoundPort) {
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/fedge_http_port_", getpid());
  fs::create_directories(dir);
  HttpServerOptions options = PlainOptions();
  options.port_file = dir + "/http.port";
  std::unique_ptr<HttpServer> server = StartOrDie(std::move(options));
  ASSERT_NE(server, nullptr);
  absl::StatusOr<std::string> contents = ReadSmallFile(dir + "/http.port", 64);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(*contents, absl::StrCat(server->port(), "\n"));
  EXPECT_FALSE(fs::exists(dir + "/http.port.tmp"));
  fs::remove_all(dir);
}

TEST(HttpServerTest, PortFileUnwritable_FailsAndReleasesPort) {
  HttpServerOptions options = PlainOptions();
  options.port_file = "/nonexistent-dir/http.port";
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Create(std::move(options));
  EXPECT_EQ(server.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(server.status().message(), HasSubstr("/nonexistent-dir"));
}

TEST(HttpServerTest, Tls_ServesHttpsWithVerifiedCertificate) {
  HttpServerOptions options = PlainOptions();
  options.insecure = false;
  options.tls_cert_path = CertDir() + "/coordinator.pem";
  options.tls_key_path = CertDir() + "/coordinator.key";
  std::unique_ptr<HttpServer> server = StartOrDie(std::move(options));
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->tls());
  httplib::SSLClient client("127.0.0.1", server->port());
  client.set_ca_cert_path((CertDir() + "/ca.pem").c_str());
  client.enable_server_certificate_verification(true);
  httplib::Result hello = client.Get("/hello");
  ASSERT_TRUE(hello) << httplib::to_string(hello.error());
  EXPECT_EQ(hello->status, 200);
  EXPECT_EQ(hello->body, "hello 127.0.0.1 ");
  httplib::Result missing = client.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);

  // Plain HTTP to the HTTPS port gets no HTTP response.
  httplib::Client plain("127.0.0.1", server->port());
  plain.set_read_timeout(5, 0);
  httplib::Result refused = plain.Get("/hello");
  EXPECT_TRUE(!refused || refused->status != 200);
}

TEST(HttpServerTest, Options_RefusedNamingTheField) {
  HttpServerOptions no_tls;  // Neither TLS nor insecure.
  absl::Status status = HttpServer::Create(no_tls).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("tls_cert_path"));

  HttpServerOptions no_key;
  no_key.tls_cert_path = "cert.pem";
  status = HttpServer::Create(no_key).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("tls_key_path"));

  HttpServerOptions both = PlainOptions();
  both.tls_cert_path = "cert.pem";
  status = HttpServer::Create(both).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("insecure"));

  for (const char* address : {"127.0.0.1", "127.0.0.1:", "127.0.0.1:70000",
                              "127.0.0.1:x", "::1:80", "[::1:80", ":80"}) {
    HttpServerOptions bad = PlainOptions();
    bad.address = address;
    status = HttpServer::Create(bad).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(status.message(), HasSubstr("address")) << address;
  }

  HttpServerOptions bad_route = PlainOptions();
  bad_route.routes["metrics"] = [](const HttpRequest&) { return Text(""); };
  status = HttpServer::Create(bad_route).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("routes"));

  HttpServerOptions bad_limit = PlainOptions();
  bad_limit.keep_alive_timeout = absl::Milliseconds(10);
  status = HttpServer::Create(bad_limit).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("keep_alive_timeout"));
}

TEST(HttpServerTest, TlsFiles_MissingOrMismatched) {
  HttpServerOptions missing;
  missing.tls_cert_path = CertDir() + "/absent.pem";
  missing.tls_key_path = CertDir() + "/coordinator.key";
  absl::Status status = HttpServer::Create(missing).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("tls_cert_path"));
  EXPECT_THAT(status.message(), HasSubstr("absent.pem"));

  HttpServerOptions mismatched;
  mismatched.tls_cert_path = CertDir() + "/coordinator.pem";
  mismatched.tls_key_path = CertDir() + "/agent-1.key";
  status = HttpServer::Create(mismatched).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("agent-1.key"));
}

TEST(HttpServerTest, AddressInUse_Unavailable) {
  std::unique_ptr<HttpServer> first = StartOrDie(PlainOptions());
  ASSERT_NE(first, nullptr);
  HttpServerOptions options = PlainOptions();
  options.address = absl::StrCat("127.0.0.1:", first->port());
  absl::Status status = HttpServer::Create(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr(options.address));
}

TEST(HttpServerTest, ConcurrentClients_AllServed) {
  HttpServerOptions options = PlainOptions();
  options.num_threads = 3;
  std::unique_ptr<HttpServer> server = StartOrDie(std::move(options));
  ASSERT_NE(server, nullptr);
  std::vector<std::thread> clients;
  std::vector<int> ok(8, 0);
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", server->port());
      for (int i = 0; i < 20; ++i) {
        httplib::Result r = client.Get("/json");
        if (r && r->status == 201) ++ok[c];
      }
    });
  }
  for (std::thread& t : clients) t.join();
  for (int c = 0; c < 8; ++c) EXPECT_EQ(ok[c], 20) << c;
}

TEST(HttpServerTest, Stop_WhileClientsConnected_ReturnsAndClosesThem) {
  HttpServerOptions options = PlainOptions();
  // Long timeouts: only Stop() closing the connections can end them.
  options.read_timeout = absl::Hours(1);
  options.write_timeout = absl::Hours(1);
  options.keep_alive_timeout = absl::Hours(1);
  std::unique_ptr<HttpServer> server = StartOrDie(std::move(options));
  ASSERT_NE(server, nullptr);

  // An idle keep-alive connection after one request.
  const int idle = ConnectTcp(server->port());
  const std::string request =
      "GET /json HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
  ASSERT_EQ(send(idle, request.data(), request.size(), 0),
            static_cast<ssize_t>(request.size()));
  char buffer[1024];
  std::string response;
  while (response.find("{\"a\":1}") == std::string::npos) {
    const ssize_t n = recv(idle, buffer, sizeof(buffer), 0);
    ASSERT_GT(n, 0);
    response.append(buffer, n);
  }
  // A connection in the middle of sending its request.
  const int partial = ConnectTcp(server->port());
  const std::string half = "GET /json HTTP/1.1\r\nHost:";
  ASSERT_EQ(send(partial, half.data(), half.size(), 0),
            static_cast<ssize_t>(half.size()));
  // A connection that has sent nothing yet.
  const int silent = ConnectTcp(server->port());

  RunWithHangGuard("HttpServer::Stop", [&] { server->Stop(); });
  for (int fd : {idle, partial, silent}) {
    EXPECT_EQ(ReadToEnd(fd), "");  // End-of-file: the server closed it.
    close(fd);
  }
  // The listener is gone too.
  httplib::Client client("127.0.0.1", server->port());
  EXPECT_FALSE(client.Get("/json"));
  server->Stop();  // Idempotent.
}

TEST(HttpServerTest, StopRightAfterCreate_Returns) {
  for (int i = 0; i < 20; ++i) {
    std::unique_ptr<HttpServer> server = StartOrDie(PlainOptions());
    ASSERT_NE(server, nullptr);
    RunWithHangGuard("HttpServer::Stop", [&] { server->Stop(); });
  }
}

TEST(HttpServerTest, Tls_StopWithHandshakePending_Returns) {
  HttpServerOptions options = PlainOptions();
  options.insecure = false;
  options.tls_cert_path = CertDir() + "/coordinator.pem";
  options.tls_key_path = CertDir() + "/coordinator.key";
  options.read_timeout = absl::Hours(1);
  std::unique_ptr<HttpServer> server = StartOrDie(std::move(options));
  ASSERT_NE(server, nullptr);
  const int silent = ConnectTcp(server->port());  // No ClientHello.
  RunWithHangGuard("HttpServer::Stop", [&] { server->Stop(); });
  EXPECT_EQ(ReadToEnd(silent), "");
  close(silent);
}

TEST(HttpServerTest, Destructor_StopsWithClientConnected) {
  HttpServerOptions options = PlainOptions();
  options.read_timeout = absl::Hours(1);
  std::unique_ptr<HttpServer> server = StartOrDie(std::move(options));
  ASSERT_NE(server, nullptr);
  const int silent = ConnectTcp(server->port());
  RunWithHangGuard("~HttpServer", [&] { server.reset(); });
  EXPECT_EQ(ReadToEnd(silent), "");
  close(silent);
}

}  // namespace
}  // namespace fedge
