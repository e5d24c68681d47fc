#include "common/host_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/fl_config.h"
#include "fedge/v1/config.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

TEST(HostPortTest, ParsesHostsAndPorts) {
  std::string host;
  int port = -1;
  ASSERT_TRUE(ParseHostPort("127.0.0.1:9464", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 9464);
  ASSERT_TRUE(ParseHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 0);
  ASSERT_TRUE(ParseHostPort("coordinator.example:65535", &host, &port).ok());
  EXPECT_EQ(port, 65535);
}

TEST(HostPortTest, RefusesWhatIsNotHostPort) {
  std::string host;
  int port;
  for (const char* bad :
       {"127.0.0.1", ":80", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:-1",
        "127.0.0.1:65536", "::1:80", "[::1:80", "127.0.0.1:99999"}) {
    const absl::Status s = ParseHostPort(bad, &host, &port);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr(bad));
  }
}

// The coordinator's listen_address: a port out of range was taken modulo
// 65536 by gRPC (99999 listened on 34463).
TEST(HostPortTest, CoordinatorListenAddress_PortOutOfRangeRefused) {
  v1::CoordinatorConfig c;
  c.set_state_dir("state");
  c.mutable_tls()->set_insecure(true);
  c.set_listen_address("127.0.0.1:0");
  EXPECT_TRUE(ValidateCoordinatorConfig(c).ok());
  c.set_listen_address("unix:/run/fedge.sock");
  EXPECT_TRUE(ValidateCoordinatorConfig(c).ok());
  c.set_listen_address("0.0.0.0:99999");
  const absl::Status s = ValidateCoordinatorConfig(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("config field 'listen_address' must be HOST:PORT or "
                        "unix:PATH: bad port in '0.0.0.0:99999' (0-65535"));
}

// A port another socket listens on is named as in use; a free one and
// port 0 pass.
TEST(CheckAddressFreeTest, ListeningPortInUse_FreePortAndZeroPass) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  const absl::Status in_use = CheckAddressFree(address);
  EXPECT_EQ(in_use.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(in_use.message()),
              HasSubstr("'" + address + "' is in use"));
  close(fd);
  EXPECT_EQ(CheckAddressFree(address), absl::OkStatus());
  EXPECT_EQ(CheckAddressFree("127.0.0.1:0"), absl::OkStatus());
}

}  // namespace
}  // namespace fedge
