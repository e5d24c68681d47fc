// Tests of common/secagg/: Shamir sharing, quantization, the mask PRG, the
// message decoders, and whole protocol rounds run in-process (complete and
// k-regular graphs, dropouts, tampering, the "never both" rule).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "common/secagg/client.h"
#include "common/secagg/config.h"
#include "common/secagg/crypto.h"
#include "common/secagg/messages.h"
#include "common/secagg/prg.h"
#include "common/secagg/quantization.h"
#include "common/secagg/server.h"
#include "common/secagg/shamir.h"
#include "common/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::secagg {
namespace {

using ::testing::HasSubstr;

// A reproducible RandomSource (tests only).
RandomSource SeededRandom(uint64_t seed) {
  auto rng = std::make_shared<DeterministicRng>(seed);
  return [rng](absl::Span<uint8_t> out) {
    for (uint8_t& b : out) b = static_cast<uint8_t>(rng->NextBits());
  };
}

Secret RandomSecret(uint64_t seed) {
  Secret s;
  FillRandom(SeededRandom(seed), absl::MakeSpan(s));
  return s;
}

// ---------------------------------------------------------------- Shamir --

TEST(ShamirTest, FieldArithmetic) {
  EXPECT_EQ(FieldMul(kFieldPrime - 1, kFieldPrime - 1), 1u);  // (-1)^2
  EXPECT_EQ(FieldAdd(kFieldPrime - 1, 1), 0u);
  EXPECT_EQ(FieldSub(0, 1), kFieldPrime - 1);
  DeterministicRng rng(1);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t a = 1 + rng.UniformInt(kFieldPrime - 1);
    EXPECT_EQ(FieldMul(a, FieldInv(a)), 1u) << a;
  }
}

TEST(ShamirTest, AnyThresholdSubsetReconstructs) {
  const Secret secret = RandomSecret(7);
  auto shares = ShamirSplit(secret, 3, 6, SeededRandom(8));
  ASSERT_TRUE(shares.ok()) << shares.status();
  ASSERT_EQ(shares->size(), 6u);
  int subsets = 0;
  for (int a = 0; a < 6; ++a) {
    for (int b = a + 1; b < 6; ++b) {
      for (int c = b + 1; c < 6; ++c) {
        std::vector<ShamirShare> subset = {(*shares)[c], (*shares)[a],
                                           (*shares)[b]};
        auto got = ShamirReconstruct(subset, 3);
        ASSERT_TRUE(got.ok()) << got.status();
        EXPECT_EQ(*got, secret);
        ++subsets;
      }
    }
  }
  EXPECT_EQ(subsets, 20);
  // More than t shares: the first t are used.
  EXPECT_EQ(*ShamirReconstruct(*shares, 3), secret);
}

TEST(ShamirTest, SplitAtSparseIndices) {
  const Secret secret = RandomSecret(9);
  const std::vector<int> indices = {4, 17, 2, 900, 31};
  auto shares = ShamirSplitAt(secret, 3, indices);
  ASSERT_TRUE(shares.ok());
  for (size_t i = 0; i < indices.size(); ++i) {
    EXPECT_EQ((*shares)[i].index, indices[i]);
  }
  std::vector<ShamirShare> last3(shares->end() - 3, shares->end());
  EXPECT_EQ(*ShamirReconstruct(last3, 3), secret);
  EXPECT_FALSE(ShamirSplitAt(secret, 2, std::vector<int>{1, 1, 2}).ok());
  EXPECT_FALSE(ShamirSplitAt(secret, 2, std::vector<int>{0, 1}).ok());
}

// The value at `x` of the polynomial of lowest degree through `points`.
uint64_t Interpolate(const std::vector<std::pair<uint64_t, uint64_t>>& points,
                     uint64_t x) {
  uint64_t y = 0;
  for (size_t i = 0; i < points.size(); ++i) {
    uint64_t num = 1, den = 1;
    for (size_t j = 0; j < points.size(); ++j) {
      if (j == i) continue;
      num = FieldMul(num, FieldSub(x, points[j].first));
      den = FieldMul(den, FieldSub(points[i].first, points[j].first));
    }
    y = FieldAdd(y, FieldMul(points[i].second, FieldMul(num, FieldInv(den))));
  }
  return y;
}

// Perfect secrecy by construction: for t - 1 shares of one secret and ANY
// candidate secret, there is a t-th share completing them to the candidate.
TEST(ShamirTest, ThresholdMinusOneSharesFitEverySecret) {
  const int t = 4;
  const Secret secret = RandomSecret(11);
  auto shares = ShamirSplit(secret, t, 7, SeededRandom(12));
  ASSERT_TRUE(shares.ok());
  const std::vector<ShamirShare> known(shares->begin(), shares->begin() + 3);
  Secret zeros{}, ones;
  ones.fill(0xff);
  for (const Secret& candidate :
       {zeros, ones, RandomSecret(13), RandomSecret(14), secret}) {
    // The candidate's chunks, as ShamirSplit encodes them (7-byte chunks).
    auto encoded = ShamirSplit(candidate, 1, 1);  // degree 0: the chunks
    ASSERT_TRUE(encoded.ok());
    ShamirShare forged;
    forged.index = 7;
    for (int c = 0; c < kShareElements; ++c) {
      std::vector<std::pair<uint64_t, uint64_t>> points = {
          {0, (*encoded)[0].values[c]}};
      for (const ShamirShare& s : known)
        points.push_back({s.index, s.values[c]});
      forged.values[c] = Interpolate(points, 7);
    }
    std::vector<ShamirShare> completed = known;
    completed.push_back(forged);
    auto got = ShamirReconstruct(completed, t);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, candidate);
  }
}

TEST(ShamirTest, BadSharesRefused) {
  const Secret secret = RandomSecret(15);
  auto shares = *ShamirSplit(secret, 3, 5);
  EXPECT_EQ(ShamirReconstruct(absl::MakeSpan(shares).subspan(0, 2), 3)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<ShamirShare> dup = {shares[0], shares[0], shares[1]};
  EXPECT_EQ(ShamirReconstruct(dup, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<ShamirShare> out_of_field = {shares[0], shares[1], shares[2]};
  out_of_field[1].values[0] = kFieldPrime;
  EXPECT_EQ(ShamirReconstruct(out_of_field, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<ShamirShare> zero_index = {shares[0], shares[1], shares[2]};
  zero_index[2].index = 0;
  EXPECT_FALSE(ShamirReconstruct(zero_index, 3).ok());
  // A wrong share never yields the secret (and usually is not an encoding).
  std::vector<ShamirShare> wrong = {shares[0], shares[1], shares[2]};
  wrong[0].values[3] = FieldAdd(wrong[0].values[3], 1);
  auto got = ShamirReconstruct(wrong, 3);
  if (got.ok()) {
    EXPECT_NE(*got, secret);
  }
  EXPECT_FALSE(ShamirSplit(secret, 0, 3).ok());
  EXPECT_FALSE(ShamirSplit(secret, 4, 3).ok());
}

// ---------------------------------------------------------- Quantization --

TEST(QuantizerTest, ScaleAndPrecisionBound) {
  const int n = 100;
  const double c = 2.0;
  auto q = Quantizer::Create({n, c});
  ASSERT_TRUE(q.ok());
  EXPECT_DOUBLE_EQ(q->scale(), (2147483647.0 - n) / (n * c));
  DeterministicRng rng(3);
  const int d = 2000;
  std::vector<uint32_t> ring(d, 0);
  std::vector<double> exact(d, 0.0);
  std::vector<float> x(d);
  std::vector<uint32_t> qx(d);
  for (int k = 0; k < n; ++k) {
    for (int i = 0; i < d; ++i) {
      x[i] = static_cast<float>((2 * rng.UniformDouble() - 1) * 1.2 * c);
      exact[i] += std::clamp(static_cast<double>(x[i]), -c, c);
    }
    ASSERT_TRUE(q->Quantize(x, absl::MakeSpan(qx)).ok());
    for (int i = 0; i < d; ++i) ring[i] += qx[i];
  }
  std::vector<float> sum(d);
  q->Dequantize(ring, absl::MakeSpan(sum));
  for (int i = 0; i < d; ++i) {
    const double bound =
        q->MaxSumError(n) + std::abs(exact[i]) * std::ldexp(1.0, -24);
    EXPECT_LE(std::abs(sum[i] - exact[i]), bound) << i;
  }
}

TEST(QuantizerTest, ExtremeSumsDoNotWrap) {
  const int n = 1000;
  auto q = Quantizer::Create({n, 0.5});
  ASSERT_TRUE(q.ok());
  for (float v : {0.5f, -0.5f, 1e30f, -INFINITY}) {
    uint32_t ring = 0;
    for (int k = 0; k < n; ++k) ring += q->QuantizeOne(v);
    const float expected = v > 0 ? 0.5f * n : -0.5f * n;
    float sum;
    q->Dequantize(absl::MakeConstSpan(&ring, 1), absl::MakeSpan(&sum, 1));
    EXPECT_NEAR(sum, expected, q->MaxSumError(n) + 1e-3) << v;
    // The int32 reading is the true integer sum.
    const int64_t one = static_cast<int32_t>(q->QuantizeOne(v));
    EXPECT_EQ(static_cast<int32_t>(ring), one * n);
  }
}

TEST(QuantizerTest, NanAndBadOptionsRefused) {
  auto q = Quantizer::Create({10, 1.0});
  std::vector<float> x = {0.f, 1.f, NAN};
  std::vector<uint32_t> out(3);
  absl::Status status = q->Quantize(x, absl::MakeSpan(out));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("element 2"));
  EXPECT_FALSE(Quantizer::Create({0, 1.0}).ok());
  EXPECT_FALSE(Quantizer::Create({10, 0.0}).ok());
  EXPECT_FALSE(Quantizer::Create({10, INFINITY}).ok());
  EXPECT_FALSE(Quantizer::Create({kMaxQuantizedInputs + 1, 1.0}).ok());
}

// ------------------------------------------------------------------- PRG --

TEST(MaskGeneratorTest, KnownAnswerAes256CtrZeroKey) {
  MaskGenerator g(Seed{});
  uint32_t w[8];
  g.Next(absl::MakeSpan(w));
  // AES-256(key 0) of counter blocks 0 and 1, read as little-endian words.
  EXPECT_EQ(w[0], 0x78c095dcu);
  EXPECT_EQ(w[1], 0x898940a2u);
  EXPECT_EQ(w[3], 0x87208492u);
  EXPECT_EQ(w[4], 0xfb8a0f53u);
}

TEST(MaskGeneratorTest, StreamingMatchesOneShot) {
  Seed seed;
  seed.fill(5);
  std::vector<uint32_t> whole(20000);
  MaskGenerator(seed).Next(absl::MakeSpan(whole));
  MaskGenerator g(seed);
  std::vector<uint32_t> parts(20000);
  size_t at = 0;
  for (size_t n : {1, 3, 4096, 5000, 7, 10000}) {
    g.Next(absl::MakeSpan(parts.data() + at, std::min(n, parts.size() - at)));
    at += std::min(n, parts.size() - at);
  }
  g.Next(absl::MakeSpan(parts.data() + at, parts.size() - at));
  EXPECT_EQ(parts, whole);
  EXPECT_EQ(g.position(), 20000u);
  MaskGenerator skipper(seed);
  skipper.Skip(12345);
  uint32_t w;
  skipper.Next(absl::MakeSpan(&w, 1));
  EXPECT_EQ(w, whole[12345]);
  // AddTo then SubtractFrom of the same stream is the identity.
  std::vector<uint32_t> acc(9999, 42);
  MaskGenerator(seed).AddTo(absl::MakeSpan(acc));
  EXPECT_NE(acc[0], 42u);
  MaskGenerator(seed).SubtractFrom(absl::MakeSpan(acc));
  EXPECT_EQ(acc, std::vector<uint32_t>(9999, 42));
  Seed other = seed;
  other[31] ^= 1;
  std::vector<uint32_t> different(100);
  MaskGenerator(other).Next(absl::MakeSpan(different));
  EXPECT_NE(different,
            std::vector<uint32_t>(whole.begin(), whole.begin() + 100));
}

// ---------------------------------------------------------------- Crypto --

TEST(CryptoTest, AgreementIsSymmetricAndAeadAuthenticates) {
  X25519KeyPair a = GenerateX25519({});
  X25519KeyPair b = GenerateX25519({});
  auto ab = X25519Agree(a.private_key, b.public_key);
  auto ba = X25519Agree(b.private_key, a.public_key);
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_EQ(*ab, *ba);
  EXPECT_FALSE(X25519Agree(a.private_key, X25519Key{}).ok());  // low order
  const auto key = HkdfSha256(*ab, "info");
  const std::string sealed = AeadSeal(key, "aad", "secret shares", {});
  EXPECT_EQ(*AeadOpen(key, "aad", sealed), "secret shares");
  EXPECT_FALSE(AeadOpen(key, "aaD", sealed).ok());
  EXPECT_FALSE(AeadOpen(HkdfSha256(*ab, "other"), "aad", sealed).ok());
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string bad = sealed;
    bad[i] ^= 0x20;
    EXPECT_FALSE(AeadOpen(key, "aad", bad).ok()) << i;
  }
  EXPECT_FALSE(AeadOpen(key, "aad", sealed.substr(0, 27)).ok());
}

// ---------------------------------------------------------------- Config --

SecAggConfig MakeConfig(int n, int t, int64_t d, int neighbors = 0) {
  SecAggConfig c;
  c.session_id = absl::StrCat("test-session-", n, "-", t);
  c.num_clients = n;
  c.threshold = t;
  c.vector_length = d;
  c.max_abs_value = 1.0;
  c.neighbors = neighbors;
  return c;
}

TEST(SecAggConfigTest, Validation) {
  EXPECT_TRUE(ValidateConfig(MakeConfig(10, 6, 5)).ok());
  EXPECT_THAT(ValidateConfig(MakeConfig(10, 5, 5)).message(),
              HasSubstr("threshold"));  // 2t must exceed n
  EXPECT_FALSE(ValidateConfig(MakeConfig(10, 11, 5)).ok());
  EXPECT_FALSE(ValidateConfig(MakeConfig(1, 1, 5)).ok());
  EXPECT_FALSE(ValidateConfig(MakeConfig(10, 6, 0)).ok());
  EXPECT_FALSE(ValidateConfig(MakeConfig(10, 6, 5, 3)).ok());   // odd k
  EXPECT_FALSE(ValidateConfig(MakeConfig(10, 6, 5, 10)).ok());  // k > n - 1
  EXPECT_TRUE(ValidateConfig(MakeConfig(10, 3, 5, 4)).ok());    // |N[u]| 5
  EXPECT_FALSE(ValidateConfig(MakeConfig(10, 2, 5, 4)).ok());
  SecAggConfig c = MakeConfig(10, 6, 5);
  c.session_id = "";
  EXPECT_THAT(ValidateConfig(c).message(), HasSubstr("session_id"));
  c = MakeConfig(2000, 1001, 5);  // complete graph too large
  EXPECT_THAT(ValidateConfig(c).message(), HasSubstr("neighbors > 0"));
  c = MakeConfig(10, 6, 5);
  SecAggConfig other = c;
  other.max_abs_value = 2.0;
  EXPECT_NE(ConfigDigest(c), ConfigDigest(other));
}

TEST(CommunicationGraphTest, KRegularSymmetricAndComplete) {
  const CommunicationGraph graph(MakeConfig(50, 6, 1, 10));
  EXPECT_EQ(graph.neighbourhood_size(), 11);
  for (int u = 1; u <= 50; ++u) {
    const std::vector<int> nb = graph.Neighbours(u);
    ASSERT_EQ(nb.size(), 10u) << u;
    for (int v : nb) {
      EXPECT_TRUE(graph.AreNeighbours(v, u));
      EXPECT_NE(v, u);
    }
    int count = 0;
    for (int v = 1; v <= 50; ++v) count += graph.AreNeighbours(u, v);
    EXPECT_EQ(count, 10);
  }
  const CommunicationGraph complete(MakeConfig(7, 4, 1));
  EXPECT_EQ(complete.Neighbours(3), (std::vector<int>{1, 2, 4, 5, 6, 7}));
}

// -------------------------------------------------------------- Messages --

TEST(SecAggMessagesTest, DecodersRefuseMalformedInput) {
  const SecAggConfig config = MakeConfig(5, 3, 4);
  const MessageContext ctx{ConfigDigest(config), 5, 4};
  KeyDirectoryMessage dir;
  for (int id : {1, 2, 4}) dir.clients.push_back({id, {}, {}});
  const std::string good = Encode(ctx, dir);
  ASSERT_TRUE(DecodeKeyDirectory(ctx, good).ok());
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(DecodeKeyDirectory(ctx, good.substr(0, n)).ok()) << n;
  }
  EXPECT_THAT(DecodeKeyDirectory(ctx, good + "x").status().message(),
              HasSubstr("trailing"));
  EXPECT_THAT(DecodeShareKeys(ctx, good).status().message(),
              HasSubstr("KeyDirectory message"));
  MessageContext other = ctx;
  other.config_digest[0] ^= 1;
  EXPECT_THAT(DecodeKeyDirectory(other, good).status().message(),
              HasSubstr("another session"));
  // Out of order, repeated and out-of-range ids.
  for (std::vector<int> ids :
       {std::vector<int>{2, 1}, std::vector<int>{2, 2}, std::vector<int>{6}}) {
    KeyDirectoryMessage bad;
    for (int id : ids) bad.clients.push_back({id, {}, {}});
    EXPECT_EQ(DecodeKeyDirectory(ctx, Encode(ctx, bad)).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  // A count far above num_clients is refused before any allocation.
  std::string huge = good;
  huge[kHeaderBytes + 3] = '\x7f';
  EXPECT_THAT(DecodeKeyDirectory(ctx, huge).status().message(),
              HasSubstr("exceeds"));
  // A masked input of the wrong length.
  std::string masked = EncodeMaskedInputHeader(ctx, 1) + std::string(16, 'a');
  EXPECT_TRUE(DecodeMaskedInput(ctx, masked).ok());
  EXPECT_FALSE(DecodeMaskedInput(ctx, masked + "abcd").ok());
  EXPECT_FALSE(
      DecodeMaskedInput(ctx, masked.substr(0, masked.size() - 4)).ok());
  // A share value outside the field.
  UnmaskingResponseMessage response;
  response.client_id = 1;
  response.self_mask_shares.push_back({2, {}});
  response.self_mask_shares[0].values[4] = kFieldPrime;
  EXPECT_THAT(
      DecodeUnmaskingResponse(ctx, Encode(ctx, response)).status().message(),
      HasSubstr("not a field element"));
}

// -------------------------------------------------------------- Protocol --

// Runs whole sessions in-process, delivering every message through the
// server's API as a transport would.
class Session {
 public:
  explicit Session(SecAggConfig config, uint64_t seed = 1) : config_(config) {
    server_ = std::move(*SecAggServer::Create({config}));
    for (int id = 1; id <= config.num_clients; ++id) {
      clients_[id] = std::move(*SecAggClient::Create(
          {config, id, SeededRandom(MixSeed({seed, uint64_t(id)}))}));
    }
    DeterministicRng rng(seed);
    inputs_.resize(config.num_clients + 1);
    for (int id = 1; id <= config.num_clients; ++id) {
      inputs_[id].resize(config.vector_length);
      for (float& x : inputs_[id]) {
        x = static_cast<float>(2 * rng.UniformDouble() - 1);
      }
    }
  }

  SecAggServer& server() { return *server_; }
  SecAggClient& client(int id) { return *clients_[id]; }
  std::vector<float>& input(int id) { return inputs_[id]; }
  const std::string& masked(int id) { return masked_[id]; }

  // Rounds 0 and 1 for every client not in `skip_advertise` /
  // `skip_share`; then closes them.
  absl::Status ShareKeys(const std::set<int>& skip_advertise = {},
                         const std::set<int>& skip_share = {}) {
    for (auto& [id, client] : clients_) {
      if (skip_advertise.count(id)) continue;
      auto msg = client->AdvertiseKeys();
      if (!msg.ok()) return msg.status();
      RETURN_IF_ERROR(server_->ReceiveAdvertiseKeys(id, *msg));
    }
    RETURN_IF_ERROR(server_->CloseAdvertiseKeys());
    for (int id : server_->KeysAdvertised()) {
      if (skip_share.count(id)) continue;
      auto msg = clients_[id]->ShareKeys(*server_->KeyDirectoryFor(id));
      if (!msg.ok()) return msg.status();
      RETURN_IF_ERROR(server_->ReceiveShareKeys(id, *msg));
    }
    return server_->CloseShareKeys();
  }

  // Round 2 for the clients of U2 not in `drop`; closes it.
  absl::Status MaskInputs(const std::set<int>& drop = {}) {
    for (int id : server_->SharesReceived()) {
      if (drop.count(id)) continue;
      auto msg = clients_[id]->MaskInput(*server_->EncryptedSharesFor(id),
                                         inputs_[id]);
      if (!msg.ok()) return msg.status();
      masked_[id] = *msg;
      RETURN_IF_ERROR(server_->ReceiveMaskedInput(id, *msg));
    }
    return server_->CloseMaskedInputs();
  }

  // Round 3 for the clients of U3 not in `silent`; then Finish.
  absl::StatusOr<SecAggResult> Unmask(const std::set<int>& silent = {}) {
    for (int id : server_->InputsReceived()) {
      if (silent.count(id)) continue;
      auto msg = clients_[id]->Unmask(*server_->UnmaskingRequestFor(id));
      if (!msg.ok()) return msg.status();
      RETURN_IF_ERROR(server_->ReceiveUnmaskingResponse(id, *msg));
    }
    return server_->Finish();
  }

  // The exact ring sum and the float sum of the clipped inputs of `ids`.
  void PlainSums(const std::vector<int>& ids, std::vector<uint32_t>& ring,
                 std::vector<double>& exact) const {
    const Quantizer q =
        *Quantizer::Create({config_.num_clients, config_.max_abs_value});
    ring.assign(config_.vector_length, 0);
    exact.assign(config_.vector_length, 0.0);
    for (int id : ids) {
      for (int64_t i = 0; i < config_.vector_length; ++i) {
        ring[i] += q.QuantizeOne(inputs_[id][i]);
        exact[i] += std::clamp<double>(inputs_[id][i], -config_.max_abs_value,
                                       config_.max_abs_value);
      }
    }
  }

  // Checks `result` against the plain sums of `expected_ids`.
  void ExpectSum(const SecAggResult& result,
                 const std::vector<int>& expected_ids) const {
    EXPECT_EQ(result.clients, expected_ids);
    std::vector<uint32_t> ring;
    std::vector<double> exact;
    PlainSums(expected_ids, ring, exact);
    ASSERT_EQ(result.ring_sum, ring);  // exact, element by element
    const Quantizer q =
        *Quantizer::Create({config_.num_clients, config_.max_abs_value});
    for (int64_t i = 0; i < config_.vector_length; ++i) {
      const double bound = q.MaxSumError(expected_ids.size()) +
                           std::abs(exact[i]) * std::ldexp(1.0, -24);
      ASSERT_LE(std::abs(result.sum[i] - exact[i]), bound) << i;
    }
  }

 private:
  SecAggConfig config_;
  std::unique_ptr<SecAggServer> server_;
  std::map<int, std::unique_ptr<SecAggClient>> clients_;
  std::vector<std::vector<float>> inputs_;
  std::map<int, std::string> masked_;
};

std::vector<int> Range(int from, int to, const std::set<int>& except = {}) {
  std::vector<int> out;
  for (int i = from; i <= to; ++i) {
    if (!except.count(i)) out.push_back(i);
  }
  return out;
}

class SecAggRoundTest : public testing::TestWithParam<int> {};

TEST_P(SecAggRoundTest, NoDropouts_SumIsExact) {
  const int n = GetParam();
  Session session(MakeConfig(n, n / 2 + 1, 777));
  ASSERT_TRUE(session.ShareKeys().ok());
  ASSERT_TRUE(session.MaskInputs().ok());
  auto result = session.Unmask();
  ASSERT_TRUE(result.ok()) << result.status();
  session.ExpectSum(*result, Range(1, n));
  EXPECT_EQ(session.server().state(), ServerState::kDone);
}

TEST_P(SecAggRoundTest, DropoutsAfterShareKeys_Recovered) {
  const int n = GetParam();
  const int t = n / 2 + 1;
  for (int drops : {1, n - t}) {
    Session session(MakeConfig(n, t, 300), /*seed=*/drops);
    std::set<int> dropped;
    for (int i = 0; i < drops; ++i)
      dropped.insert(n - 2 * i > 0 ? n - 2 * i : i + 1);
    ASSERT_EQ(dropped.size(), static_cast<size_t>(drops));
    ASSERT_TRUE(session.ShareKeys().ok());
    ASSERT_TRUE(session.MaskInputs(dropped).ok());
    auto result = session.Unmask();
    ASSERT_TRUE(result.ok()) << result.status();
    session.ExpectSum(*result, Range(1, n, dropped));
  }
}

TEST_P(SecAggRoundTest, TooManyDropouts_FailWithoutSum) {
  const int n = GetParam();
  const int t = n / 2 + 1;
  Session session(MakeConfig(n, t, 50));
  ASSERT_TRUE(session.ShareKeys().ok());
  const std::vector<int> dropped = Range(1, n - t + 1);
  absl::Status status =
      session.MaskInputs(std::set<int>(dropped.begin(), dropped.end()));
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(status.message(), HasSubstr("below the threshold"));
  EXPECT_EQ(session.server().state(), ServerState::kFailed);
  EXPECT_EQ(session.server().Finish().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

INSTANTIATE_TEST_SUITE_P(Clients, SecAggRoundTest, testing::Values(3, 10, 50));

TEST(SecAggProtocolTest, DropoutsInEveryRound) {
  // 12 clients, t = 7: 12 never advertises, 11 advertises but does not
  // share keys, 9 and 10 drop before masking, 3 sends its input but not its
  // unmasking response.
  Session session(MakeConfig(12, 7, 1000));
  ASSERT_TRUE(session.ShareKeys({12}, {11}).ok());
  EXPECT_EQ(session.server().KeysAdvertised(), Range(1, 11));
  EXPECT_EQ(session.server().SharesReceived(), Range(1, 10));
  ASSERT_TRUE(session.MaskInputs({9, 10}).ok());
  auto result = session.Unmask({3});
  ASSERT_TRUE(result.ok()) << result.status();
  session.ExpectSum(*result, Range(1, 8));
}

TEST(SecAggProtocolTest, TooFewUnmaskingResponses_Abort) {
  Session session(MakeConfig(10, 6, 100));
  ASSERT_TRUE(session.ShareKeys().ok());
  ASSERT_TRUE(session.MaskInputs({10}).ok());
  auto result = session.Unmask({1, 2, 3, 4});  // 5 answer, t = 6
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(result.status().message(), HasSubstr("shares"));
}

TEST(SecAggProtocolTest, TooFewKeys_Abort) {
  Session session(MakeConfig(10, 6, 10));
  absl::Status status = session.ShareKeys({1, 2, 3, 4, 5});
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(status.message(), HasSubstr("5 of 10 clients"));
}

TEST(SecAggProtocolTest, InputAsPieces_SameSum) {
  SecAggConfig config = MakeConfig(4, 3, 10000);
  Session session(config);
  ASSERT_TRUE(session.ShareKeys().ok());
  for (int id = 1; id <= 4; ++id) {
    const std::vector<float>& x = session.input(id);
    const absl::Span<const float> all(x);
    const absl::Span<const float> pieces[] = {
        all.subspan(0, 1), all.subspan(1, 5000), all.subspan(5001, 0),
        all.subspan(5001)};
    auto msg = session.client(id).MaskInputPieces(
        *session.server().EncryptedSharesFor(id), pieces);
    ASSERT_TRUE(msg.ok()) << msg.status();
    ASSERT_TRUE(session.server().ReceiveMaskedInput(id, *msg).ok());
  }
  ASSERT_TRUE(session.server().CloseMaskedInputs().ok());
  auto result = session.Unmask();
  ASSERT_TRUE(result.ok()) << result.status();
  session.ExpectSum(*result, Range(1, 4));
}

TEST(SecAggProtocolTest, ClippedInputs_SumOfClipped) {
  SecAggConfig config = MakeConfig(5, 3, 64);
  config.max_abs_value = 0.25;
  Session session(config);
  for (int id = 1; id <= 5; ++id) {
    for (float& x : session.input(id)) x *= 3;  // many beyond 0.25
  }
  ASSERT_TRUE(session.ShareKeys().ok());
  ASSERT_TRUE(session.MaskInputs().ok());
  auto result = session.Unmask();
  ASSERT_TRUE(result.ok());
  session.ExpectSum(*result, Range(1, 5));
}

TEST(SecAggProtocolTest, SparseGraph_SecAggPlus) {
  // 60 clients, each paired with 12 others; t = 7 of each neighbourhood.
  SecAggConfig config = MakeConfig(60, 7, 500, /*neighbors=*/12);
  Session session(config);
  ASSERT_TRUE(session.ShareKeys().ok());
  // Each client hears only from its neighbourhood.
  const CommunicationGraph graph(config);
  const MessageContext ctx{ConfigDigest(config), 60, 500};
  auto shares =
      DecodeEncryptedShares(ctx, *session.server().EncryptedSharesFor(5));
  ASSERT_TRUE(shares.ok());
  std::vector<int> senders;
  for (const auto& s : shares->shares) senders.push_back(s.peer_id);
  EXPECT_EQ(senders, graph.Neighbours(5));
  EXPECT_EQ(senders.size(), 12u);
  const std::set<int> dropped = {3, 17, 40, 41};
  ASSERT_TRUE(session.MaskInputs(dropped).ok());
  auto result = session.Unmask({8, 22});
  ASSERT_TRUE(result.ok()) << result.status();
  session.ExpectSum(*result, Range(1, 60, dropped));
}

TEST(SecAggProtocolTest, SparseGraph_IsolatedSurvivorAborts) {
  // |N[u]| = 5, t = 3: if 3 of client 1's 4 neighbours drop, its input
  // would be unmasked with a single partner; the round refuses to go on.
  SecAggConfig config = MakeConfig(10, 3, 16, /*neighbors=*/4);
  Session session(config);
  ASSERT_TRUE(session.ShareKeys().ok());
  const std::vector<int> nb = CommunicationGraph(config).Neighbours(1);
  absl::Status status = session.MaskInputs({nb[0], nb[1], nb[2]});
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_THAT(status.message(), HasSubstr("client 1 has 2"));
}

TEST(SecAggProtocolTest, RandBytesDefaultSource) {
  const SecAggConfig config = MakeConfig(3, 2, 10);
  auto server = *SecAggServer::Create({config});
  std::vector<std::unique_ptr<SecAggClient>> clients;
  for (int id = 1; id <= 3; ++id) {
    clients.push_back(*SecAggClient::Create({config, id, {}}));
    ASSERT_TRUE(
        server->ReceiveAdvertiseKeys(id, *clients.back()->AdvertiseKeys())
            .ok());
  }
  ASSERT_TRUE(server->CloseAdvertiseKeys().ok());
  for (int id = 1; id <= 3; ++id) {
    ASSERT_TRUE(server
                    ->ReceiveShareKeys(id, *clients[id - 1]->ShareKeys(
                                               *server->KeyDirectoryFor(id)))
                    .ok());
  }
  ASSERT_TRUE(server->CloseShareKeys().ok());
  const std::vector<float> x(10, 0.5f);
  for (int id = 1; id <= 3; ++id) {
    ASSERT_TRUE(
        server
            ->ReceiveMaskedInput(id, *clients[id - 1]->MaskInput(
                                         *server->EncryptedSharesFor(id), x))
            .ok());
  }
  ASSERT_TRUE(server->CloseMaskedInputs().ok());
  for (int id = 1; id <= 3; ++id) {
    ASSERT_TRUE(
        server
            ->ReceiveUnmaskingResponse(
                id, *clients[id - 1]->Unmask(*server->UnmaskingRequestFor(id)))
            .ok());
  }
  auto result = server->Finish();
  ASSERT_TRUE(result.ok());
  for (float s : result->sum) EXPECT_NEAR(s, 1.5f, 1e-6);
}

// Pearson correlation of two equally long sequences.
double Correlation(const std::vector<double>& a, const std::vector<double>& b) {
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += a[i], mb += b[i];
  ma /= a.size();
  mb /= b.size();
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

TEST(SecAggProtocolTest, MaskedInputLooksUniformAndUncorrelated) {
  const int d = 40000;
  std::vector<std::string> masked;
  std::vector<std::vector<float>> plain;
  for (int run = 0; run < 2; ++run) {
    Session session(MakeConfig(3, 2, d), /*seed=*/100 + run);
    std::vector<float>& x = session.input(1);
    for (int i = 0; i < d; ++i) {
      // Run 0: a smooth ramp; run 1: constant zeros.
      x[i] = run == 0 ? -1.0f + 2.0f * i / d : 0.0f;
    }
    ASSERT_TRUE(session.ShareKeys().ok());
    ASSERT_TRUE(session.MaskInputs().ok());
    masked.push_back(session.masked(1).substr(kHeaderBytes + 12));
    plain.push_back(x);
  }
  for (int run = 0; run < 2; ++run) {
    const std::string& bytes = masked[run];
    ASSERT_EQ(bytes.size(), 4u * d);
    // Byte histogram: chi-square with 255 degrees of freedom.
    std::vector<double> counts(256, 0);
    for (char c : bytes) counts[static_cast<uint8_t>(c)] += 1;
    const double expected = bytes.size() / 256.0;
    double chi2 = 0;
    for (double c : counts) chi2 += (c - expected) * (c - expected) / expected;
    EXPECT_LT(chi2, 400) << "run " << run;  // p < 1e-7 beyond 400
    // Masked words versus plaintext: no linear relation.
    std::vector<double> words(d), xs(d);
    for (int i = 0; i < d; ++i) {
      uint32_t w;
      std::memcpy(&w, bytes.data() + 4 * i, 4);
      words[i] = static_cast<int32_t>(w);
      xs[i] = run == 0 ? plain[0][i] : i;  // run 1: against the index
    }
    EXPECT_LT(std::abs(Correlation(words, xs)), 0.03) << "run " << run;
  }
  // The two runs' masked vectors share no structure either.
  std::vector<double> a(d), b(d);
  for (int i = 0; i < d; ++i) {
    uint32_t wa, wb;
    std::memcpy(&wa, masked[0].data() + 4 * i, 4);
    std::memcpy(&wb, masked[1].data() + 4 * i, 4);
    a[i] = static_cast<int32_t>(wa);
    b[i] = static_cast<int32_t>(wb);
  }
  EXPECT_LT(std::abs(Correlation(a, b)), 0.03);
}

// ------------------------------------------- Refusals and the "never both" --

TEST(SecAggProtocolTest, TamperedShareCiphertext_Refused) {
  Session session(MakeConfig(5, 3, 20));
  ASSERT_TRUE(session.ShareKeys().ok());
  const std::string good = *session.server().EncryptedSharesFor(1);
  // Flip one byte inside the first ciphertext (sender 2).
  std::string bad = good;
  bad[kHeaderBytes + 4 + 4 + 4 + 30] ^= 1;
  auto refused = session.client(1).MaskInput(bad, session.input(1));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("client 2"));
  EXPECT_EQ(session.client(1).state(), ClientState::kKeysShared);
  // A ciphertext moved to another sender's slot fails too (AAD binding).
  const MessageContext ctx{ConfigDigest(MakeConfig(5, 3, 20)), 5, 20};
  auto decoded = *DecodeEncryptedShares(ctx, good);
  std::swap(decoded.shares[0].ciphertext, decoded.shares[1].ciphertext);
  EXPECT_FALSE(
      session.client(1).MaskInput(Encode(ctx, decoded), session.input(1)).ok());
  // The untouched message still works.
  EXPECT_TRUE(session.client(1).MaskInput(good, session.input(1)).ok());
}

TEST(SecAggProtocolTest, TamperedUnmaskingShare_RoundFailsNoWrongSum) {
  for (bool self_mask : {true, false}) {
    Session session(MakeConfig(5, 3, 20));
    ASSERT_TRUE(session.ShareKeys().ok());
    ASSERT_TRUE(session.MaskInputs({5}).ok());
    const SecAggConfig config = MakeConfig(5, 3, 20);
    const MessageContext ctx{ConfigDigest(config), 5, 20};
    for (int id = 1; id <= 4; ++id) {
      std::string msg =
          *session.client(id).Unmask(*session.server().UnmaskingRequestFor(id));
      if (id == 1) {  // the lowest id: its shares are always used
        auto response = *DecodeUnmaskingResponse(ctx, msg);
        auto& shares =
            self_mask ? response.self_mask_shares : response.masking_key_shares;
        // (Not chunk 0: a small change there may only touch the bits
        // X25519 clamps away, leaving an equivalent, correct key.)
        shares[0].values[2] = FieldAdd(shares[0].values[2], 1);
        msg = Encode(ctx, response);
      }
      ASSERT_TRUE(session.server().ReceiveUnmaskingResponse(id, msg).ok());
    }
    auto result = session.server().Finish();
    EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted);
    EXPECT_THAT(result.status().message(), HasSubstr("wrong share"));
  }
}

TEST(SecAggProtocolTest, ServerAsksForOneKindOfSharePerPeer) {
  Session session(MakeConfig(10, 6, 20));
  ASSERT_TRUE(session.ShareKeys({}, {7}).ok());
  ASSERT_TRUE(session.MaskInputs({2, 5}).ok());
  const MessageContext ctx{ConfigDigest(MakeConfig(10, 6, 20)), 10, 20};
  for (int id : session.server().InputsReceived()) {
    auto request =
        *DecodeUnmaskingRequest(ctx, *session.server().UnmaskingRequestFor(id));
    std::set<int> survivors(request.survivors.begin(), request.survivors.end());
    std::set<int> dropped(request.dropped.begin(), request.dropped.end());
    EXPECT_EQ(dropped, (std::set<int>{2, 5})) << id;
    for (int v : survivors) EXPECT_EQ(dropped.count(v), 0u);
    EXPECT_EQ(survivors.size() + dropped.size(), 9u);  // U2: all but 7
    EXPECT_EQ(survivors.count(7) + dropped.count(7), 0u);
  }
  // A client that dropped is never asked anything.
  EXPECT_EQ(session.server().UnmaskingRequestFor(2).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SecAggProtocolTest, ClientRevealsOneKindPerPeerAndAnswersOnce) {
  const SecAggConfig config = MakeConfig(5, 3, 20);
  const MessageContext ctx{ConfigDigest(config), 5, 20};
  Session session(config);
  ASSERT_TRUE(session.ShareKeys().ok());
  ASSERT_TRUE(session.MaskInputs({4}).ok());
  SecAggClient& client = session.client(1);
  const auto refuse = [&](const UnmaskingRequestMessage& forged,
                          absl::string_view why) {
    auto r = client.Unmask(Encode(ctx, forged));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << why;
    EXPECT_EQ(client.state(), ClientState::kInputSent) << why;
  };
  // Peer 3 listed as both survived and dropped.
  refuse({{1, 2, 3, 5}, {3, 4}}, "both");
  // This client listed as dropped (would reveal its own masking key).
  refuse({{2, 3, 5}, {1, 4}}, "self dropped");
  // A peer it holds left out, or one it does not hold added.
  refuse({{1, 2, 3}, {4}}, "omits 5");
  // Fewer than t survivors.
  refuse({{1, 2}, {3, 4, 5}}, "below threshold");
  // The genuine request is answered once; any second request is refused.
  const std::string genuine = *session.server().UnmaskingRequestFor(1);
  auto response = client.Unmask(genuine);
  ASSERT_TRUE(response.ok()) << response.status();
  auto decoded = *DecodeUnmaskingResponse(ctx, *response);
  EXPECT_EQ(decoded.self_mask_shares.size(), 4u);
  ASSERT_EQ(decoded.masking_key_shares.size(), 1u);
  EXPECT_EQ(decoded.masking_key_shares[0].owner_id, 4);
  EXPECT_EQ(client.Unmask(genuine).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      client.Unmask(Encode(ctx, UnmaskingRequestMessage{{1, 2, 3, 5, 4}, {}}))
          .status()
          .code(),
      absl::StatusCode::kFailedPrecondition);
}

TEST(SecAggProtocolTest, ServerRefusesOutOfTurnRepeatedAndForeignMessages) {
  const SecAggConfig config = MakeConfig(4, 3, 8);
  Session session(config);
  SecAggServer& server = session.server();
  EXPECT_EQ(server.CloseMaskedInputs().code(),
            absl::StatusCode::kFailedPrecondition);
  const std::string keys1 = *session.client(1).AdvertiseKeys();
  EXPECT_EQ(server.ReceiveAdvertiseKeys(2, keys1).code(),
            absl::StatusCode::kInvalidArgument);  // claims another id
  EXPECT_EQ(server.ReceiveAdvertiseKeys(9, keys1).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(server.ReceiveAdvertiseKeys(1, keys1).ok());
  EXPECT_EQ(server.ReceiveAdvertiseKeys(1, keys1).code(),
            absl::StatusCode::kAlreadyExists);
  // A client of another session.
  SecAggConfig foreign = config;
  foreign.session_id = "other";
  auto stranger = *SecAggClient::Create({foreign, 2, {}});
  EXPECT_THAT(
      server.ReceiveAdvertiseKeys(2, *stranger->AdvertiseKeys()).message(),
      HasSubstr("another session"));
  // A repeated key.
  auto decoded_keys = *DecodeAdvertiseKeys({ConfigDigest(config), 4, 8}, keys1);
  decoded_keys.client_id = 3;
  EXPECT_THAT(server
                  .ReceiveAdvertiseKeys(
                      3, Encode({ConfigDigest(config), 4, 8}, decoded_keys))
                  .message(),
              HasSubstr("repeats a public key"));
  for (int id : {2, 3, 4}) {
    ASSERT_TRUE(
        server.ReceiveAdvertiseKeys(id, *session.client(id).AdvertiseKeys())
            .ok());
  }
  ASSERT_TRUE(server.CloseAdvertiseKeys().ok());
  EXPECT_EQ(server.ReceiveAdvertiseKeys(1, keys1).code(),
            absl::StatusCode::kFailedPrecondition);  // round closed
  for (int id = 1; id <= 4; ++id) {
    const std::string msg =
        *session.client(id).ShareKeys(*server.KeyDirectoryFor(id));
    ASSERT_TRUE(server.ReceiveShareKeys(id, msg).ok());
    EXPECT_EQ(server.ReceiveShareKeys(id, msg).code(),
              absl::StatusCode::kAlreadyExists);
  }
  ASSERT_TRUE(server.CloseShareKeys().ok());
  const std::string m1 = *session.client(1).MaskInput(
      *server.EncryptedSharesFor(1), session.input(1));
  EXPECT_EQ(server.ReceiveMaskedInput(1, m1.substr(0, m1.size() - 1)).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(server.ReceiveMaskedInput(1, m1).ok());
  EXPECT_EQ(server.ReceiveMaskedInput(1, m1).code(),
            absl::StatusCode::kAlreadyExists);  // not added twice
  for (int id : {2, 3}) {
    ASSERT_TRUE(server
                    .ReceiveMaskedInput(id, *session.client(id).MaskInput(
                                                *server.EncryptedSharesFor(id),
                                                session.input(id)))
                    .ok());
  }
  // Client 4 masks its input but it arrives after the round closed: it is
  // refused (never added to the sum), and 4 is recovered as dropped.
  const std::string late = *session.client(4).MaskInput(
      *server.EncryptedSharesFor(4), session.input(4));
  ASSERT_TRUE(server.CloseMaskedInputs().ok());
  EXPECT_EQ(server.ReceiveMaskedInput(4, late).code(),
            absl::StatusCode::kFailedPrecondition);
  auto result = session.Unmask();
  ASSERT_TRUE(result.ok()) << result.status();
  session.ExpectSum(*result, {1, 2, 3});
}

TEST(SecAggProtocolTest, ClientRefusesOutOfTurnAndInconsistentMessages) {
  const SecAggConfig config = MakeConfig(4, 3, 8);
  const MessageContext ctx{ConfigDigest(config), 4, 8};
  Session session(config);
  SecAggClient& client = session.client(1);
  EXPECT_EQ(client.ShareKeys("").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client.Unmask("").status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::vector<AdvertiseKeysMessage> keys;
  for (int id = 1; id <= 4; ++id) {
    keys.push_back(
        *DecodeAdvertiseKeys(ctx, *session.client(id).AdvertiseKeys()));
  }
  EXPECT_EQ(client.AdvertiseKeys().status().code(),
            absl::StatusCode::kFailedPrecondition);
  const auto refuse = [&](const KeyDirectoryMessage& dir,
                          absl::string_view expect) {
    auto r = client.ShareKeys(Encode(ctx, dir));
    EXPECT_THAT(r.status().message(), HasSubstr(expect));
    EXPECT_EQ(client.state(), ClientState::kKeysAdvertised);
  };
  refuse({{keys[1], keys[2], keys[3]}}, "lacks this client");
  KeyDirectoryMessage swapped{{keys[0], keys[1], keys[2]}};
  swapped.clients[0].masking_key = keys[3].masking_key;
  refuse(swapped, "other public keys");
  KeyDirectoryMessage repeated{{keys[0], keys[1], keys[2]}};
  repeated.clients[2].encryption_key = keys[1].encryption_key;
  refuse(repeated, "repeats a public key");
  refuse({{keys[0], keys[1]}}, "below the threshold");
  KeyDirectoryMessage low_order{{keys[0], keys[1], keys[2]}};
  low_order.clients[1].masking_key = X25519Key{};
  refuse(low_order, "unusable public key");
  EXPECT_TRUE(client.ShareKeys(Encode(ctx, KeyDirectoryMessage{keys})).ok());
  // Input of the wrong length, NaN input, shares for another client.
  EncryptedSharesMessage empty{1, {}};
  EXPECT_THAT(client.MaskInput(Encode(ctx, empty), std::vector<float>(7))
                  .status()
                  .message(),
              HasSubstr("7 elements"));
  EXPECT_THAT(client
                  .MaskInput(Encode(ctx, EncryptedSharesMessage{2, {}}),
                             std::vector<float>(8))
                  .status()
                  .message(),
              HasSubstr("for client 2"));
  EXPECT_THAT(client.MaskInput(Encode(ctx, empty), std::vector<float>(8))
                  .status()
                  .message(),
              HasSubstr("below the threshold"));
  EXPECT_EQ(client.state(), ClientState::kKeysShared);
}

}  // namespace
}  // namespace fedge::secagg
