// libFuzzer entry point for the coordinator's identity inputs
// (server/credential_store.h, server/audit_log.h): the credential journal
// replayed at start, join tokens and agent keys as Joins carry them, and
// the audit log's JSON escaping of what agents send.
//
// The input is a mode byte, then per mode:
//   0  the rest: a credential journal, ReplayCredentialJournal under small
//      limits (must not exceed them), then CredentialStore::Open of a file
//      holding it (the same verdict for a journal of whole lines).
//   1  the rest: ParseJoinToken; a token that parses has a 19-character id
//      and a 64-hex secret.
//   2  record agent id, record agent key, rest join token:
//      Authenticate against a store holding one fleet token and one
//      enrolled agent: never OK unless the credential is one of theirs.
//   3  the rest: JsonQuote; the output is one line of printable ASCII
//      between quotes.
// A crash, a sanitizer report or a broken property (abort) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/audit_log.h"
#include "server/credential_store.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

using fuzz::Check;
using fuzz::InputReader;
using fuzz::InputWriter;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

void FuzzJournal(absl::string_view bytes) {
  CredentialLimits limits;
  limits.max_journal_bytes = 1 << 16;
  limits.max_tokens = 8;
  limits.max_label_bytes = 32;
  CredentialState state;
  absl::Status s = ReplayCredentialJournal(bytes, limits, state);
  fuzz::Trace("replay", s);
  Check(static_cast<int64_t>(state.tokens.size()) <= limits.max_tokens,
        "replay kept more tokens than max_tokens");
  for (const auto& [id, t] : state.tokens) {
    Check(t.enrollments >= 0, "negative enrollments");
  }
  if (bytes.size() > static_cast<size_t>(limits.max_journal_bytes)) return;
  static const fuzz::ScratchDir* const dir = new fuzz::ScratchDir();
  const std::string path = dir->WriteFile("credentials", bytes);
  auto store = CredentialStore::Open(path, limits);
  if (!bytes.empty() && bytes.back() == '\n') {
    Check(store.ok() == s.ok(), "Open and Replay disagree on whole lines");
  }
}

void FuzzToken(absl::string_view bytes) {
  auto parsed = ParseJoinToken(bytes);
  if (!parsed.ok()) return;
  Check(parsed->id.size() == 19 && parsed->secret.size() == 64,
        "a parsed token has the wrong shape");
}

void FuzzAuthenticate(InputReader& in) {
  const std::string agent(in.Record());
  const std::string key(in.Record());
  const std::string token(in.Rest());
  static const fuzz::ScratchDir* const dir = new fuzz::ScratchDir();
  dir->Clear();
  auto store = CredentialStore::Open(dir->Path("credentials"));
  Check(store.ok(), "cannot open an empty journal");
  auto fleet = (*store)->CreateToken("", absl::Hours(1), "", kNow);
  Check(fleet.ok(), "cannot create a token");
  auto enrolled = (*store)->Authenticate("agent-1", "", fleet->token, kNow);
  Check(enrolled.ok(), "the fleet token does not enroll");
  auto grant = (*store)->Authenticate(agent, key, token, kNow);
  if (grant.ok()) {
    Check(token == fleet->token || key == enrolled->agent_key,
          "a credential that is not the store's was accepted");
  }
}

void FuzzJson(absl::string_view bytes) {
  const std::string q = JsonQuote(bytes);
  Check(q.size() >= 2 && q.front() == '"' && q.back() == '"',
        "JsonQuote is not quoted");
  for (char c : q) {
    Check(c >= 0x20 && c < 0x7f, "JsonQuote left a byte outside ASCII");
  }
}

void FuzzOne(absl::string_view data) {
  InputReader in(data);
  switch (in.Byte() % 4) {
    case 0: return FuzzJournal(in.Rest());
    case 1: return FuzzToken(in.Rest());
    case 2: return FuzzAuthenticate(in);
    default: return FuzzJson(in.Rest());
  }
}

std::vector<std::string> Seeds() {
  const std::string hash(64, 'a');
  std::vector<std::string> seeds;
  seeds.push_back(InputWriter()
                      .Byte(0)
                      .Bytes(absl::StrCat(
                          "T jt-0123456789abcdef ", hash,
                          " * 1 9999999999999 6c6162\nE agent-1 ", hash,
                          " jt-0123456789abcdef\nR jt-0123456789abcdef\n"))
                      .str());
  seeds.push_back(InputWriter()
                      .Byte(1)
                      .Bytes(absl::StrCat("jt-0123456789abcdef.", hash))
                      .str());
  seeds.push_back(InputWriter()
                      .Byte(2)
                      .Record("agent-2")
                      .Record("ak-00")
                      .Bytes(absl::StrCat("jt-0123456789abcdef.", hash))
                      .str());
  seeds.push_back(InputWriter().Byte(3).Bytes("a\"b\\\n\x01\xff").str());
  return seeds;
}

}  // namespace
}  // namespace fedge

FEDGE_FUZZ_TARGET(fedge::Seeds, fedge::FuzzOne)
