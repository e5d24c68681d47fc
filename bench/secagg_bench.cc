// CPU cost of one secure-aggregation round (common/secagg/) for a 2NN-sized
// vector (199,210 float32 elements), run in-process on one thread.
//
//   secagg_bench [--vector=199210] [--clients=10,50,100]
//
// For each client count n: the complete graph (Bonawitz et al., t = n/2+1),
// with no dropout and with 10% of the clients dropping after ShareKeys,
// and the SecAgg+ graph (k = 2 ceil(log2 n), t = k/2 + 1) without
// dropouts. Prints one line per setting:
//   clients=N vector=D client_ms=.. server_ms=.. graph=.. dropped=..
//   client_ms: mean CPU time per client over its four steps;
//   server_ms: CPU time of every server call of the round.
#include <time.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/secagg/client.h"
#include "common/secagg/server.h"

namespace fedge::secagg {
namespace {

double ThreadCpuMs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Accumulates CPU time of the calls it wraps.
class Stopwatch {
 public:
  template <typename F>
  auto Time(F&& f) {
    const double start = ThreadCpuMs();
    auto result = f();
    total_ms_ += ThreadCpuMs() - start;
    return result;
  }
  double total_ms() const { return total_ms_; }

 private:
  double total_ms_ = 0;
};

template <typename T>
T Check(absl::StatusOr<T> v) {
  FEDGE_CHECK(v.ok()) << v.status();
  return *std::move(v);
}
void Check(const absl::Status& s) { FEDGE_CHECK(s.ok()) << s; }

struct Setting {
  int clients;
  int64_t vector;
  int neighbors;  // 0: complete graph
  int dropped;    // clients that drop after ShareKeys
};

void RunRound(const Setting& s) {
  SecAggConfig config;
  config.session_id = "bench";
  config.num_clients = s.clients;
  config.neighbors = s.neighbors;
  const int hood = s.neighbors == 0 ? s.clients : s.neighbors + 1;
  config.threshold = hood / 2 + 1;
  config.vector_length = s.vector;
  config.max_abs_value = 1.0;
  Stopwatch server_time, client_time;
  auto server =
      Check(server_time.Time([&] { return SecAggServer::Create({config}); }));
  std::vector<std::unique_ptr<SecAggClient>> clients(s.clients + 1);
  for (int id = 1; id <= s.clients; ++id) {
    clients[id] = Check(client_time.Time([&] {
      return SecAggClient::Create({config, id, {}});
    }));
    const std::string msg =
        Check(client_time.Time([&] { return clients[id]->AdvertiseKeys(); }));
    Check(server_time.Time(
        [&] { return server->ReceiveAdvertiseKeys(id, msg); }));
  }
  Check(server_time.Time([&] { return server->CloseAdvertiseKeys(); }));
  for (int id = 1; id <= s.clients; ++id) {
    const std::string dir =
        Check(server_time.Time([&] { return server->KeyDirectoryFor(id); }));
    const std::string msg =
        Check(client_time.Time([&] { return clients[id]->ShareKeys(dir); }));
    Check(server_time.Time([&] { return server->ReceiveShareKeys(id, msg); }));
  }
  Check(server_time.Time([&] { return server->CloseShareKeys(); }));
  std::vector<float> input(s.vector);
  for (int id = s.dropped + 1; id <= s.clients; ++id) {
    DeterministicRng rng(id);
    for (float& x : input) x = static_cast<float>(rng.UniformDouble() - 0.5);
    const std::string shares =
        Check(server_time.Time([&] { return server->EncryptedSharesFor(id); }));
    const std::string msg = Check(client_time.Time(
        [&] { return clients[id]->MaskInput(shares, input); }));
    Check(
        server_time.Time([&] { return server->ReceiveMaskedInput(id, msg); }));
  }
  Check(server_time.Time([&] { return server->CloseMaskedInputs(); }));
  for (int id = s.dropped + 1; id <= s.clients; ++id) {
    const std::string request = Check(
        server_time.Time([&] { return server->UnmaskingRequestFor(id); }));
    const std::string msg =
        Check(client_time.Time([&] { return clients[id]->Unmask(request); }));
    Check(server_time.Time(
        [&] { return server->ReceiveUnmaskingResponse(id, msg); }));
  }
  const SecAggResult result =
      Check(server_time.Time([&] { return server->Finish(); }));
  FEDGE_CHECK(result.clients.size() ==
              static_cast<size_t>(s.clients - s.dropped));
  std::printf(
      "clients=%d vector=%lld client_ms=%.1f server_ms=%.1f graph=%s "
      "neighbors=%d threshold=%d dropped=%d\n",
      s.clients, static_cast<long long>(s.vector),
      client_time.total_ms() / s.clients, server_time.total_ms(),
      s.neighbors == 0 ? "complete" : "k_regular",
      s.neighbors == 0 ? s.clients - 1 : s.neighbors, config.threshold,
      s.dropped);
  std::fflush(stdout);
}

std::vector<int> ParseList(const char* text) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int v;
    FEDGE_CHECK(absl::SimpleAtoi(part, &v) && v >= 2) << "bad count " << part;
    out.push_back(v);
  }
  return out;
}

int Main(int argc, char** argv) {
  int64_t vector = 199210;
  std::vector<int> counts = {10, 50, 100};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--vector=", 0) == 0) {
      FEDGE_CHECK(absl::SimpleAtoi(arg.substr(9), &vector) && vector > 0)
          << arg;
    } else if (arg.rfind("--clients=", 0) == 0) {
      counts = ParseList(arg.c_str() + 10);
    } else {
      std::fprintf(stderr, "usage: %s [--vector=D] [--clients=N,N,...]\n",
                   argv[0]);
      return 2;
    }
  }
  for (int n : counts) {
    RunRound({n, vector, 0, 0});
    RunRound({n, vector, 0, n / 10});
    const int k = 2 * static_cast<int>(std::ceil(std::log2(n)));
    if (k < n - 1) RunRound({n, vector, k, 0});
  }
  return 0;
}

}  // namespace
}  // namespace fedge::secagg

int main(int argc, char** argv) { return fedge::secagg::Main(argc, argv); }
