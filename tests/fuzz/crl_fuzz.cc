// libFuzzer entry point for certificate revocation (server/crl_checker.h):
// the CRL file and the CA it is verified with (tls.crl_path, tls.ca_path),
// and the peer certificates checked against it.
//
// The input is a mode byte, then per mode:
//   0  record CA PEM, rest CRL PEM: CrlChecker::Create from those files;
//      when it loads, the fixed revoked certificate's Check is OK or
//      UNAUTHENTICATED, and a reload of the unchanged file is OK.
//   1  rest peer certificate PEM: Check against a checker of the fixed CA
//      and CRL (agent-2 revoked): OK or UNAUTHENTICATED, never another
//      code; the fixed certificates keep their answers.
// The fixed CA, CRL and certificates were made with deploy/make-certs.sh.
// A crash, a sanitizer report or a broken property (abort) is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/crl_checker.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

using fuzz::Check;
using fuzz::InputReader;
using fuzz::InputWriter;

const char kCa[] = R"pem(-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUJTvv2kJkC1gdSIsE87k4OHuDw30wCgYIKoZIzj0EAwIw
EzERMA8GA1UEAwwIZmVkZ2UgQ0EwHhcNMjYxMTMwMDcyNjE1WhcNMzYxMTI3MDcy
NjE1WjATMREwDwYDVQQDDAhmZWRnZSBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABOoxQPkuxXK9Bwinytt3fQoRkua3PZhwKksKr4Ogu7r8tRd7E7yx7VJfox+5
k2cWnRiWs05FOQ9fi6nc4/QMq6SjYzBhMB0GA1UdDgQWBBSkpHOUPqxyM0ackh1c
tFXj+p4qUTAfBgNVHSMEGDAWgBSkpHOUPqxyM0ackh1ctFXj+p4qUTAPBgNVHRMB
Af8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNIADBFAiBPeVNP
ECvVVjZe1AyiztpwyT5ot/+9n28LeO5z4js99QIhAOn4HTQ/NONX+EUxggDodyo5
KBk+HQtUjqK/jo6uI0Op
-----END CERTIFICATE-----
)pem";
const char kCrl[] = R"pem(-----BEGIN X509 CRL-----
MIHPMHcCAQEwCgYIKoZIzj0EAwIwEzERMA8GA1UEAwwIZmVkZ2UgQ0EXDTI2MTEz
MDA3MjYxNloXDTM2MTEyNzA3MjYxNlowIzAhAhAaLUYd/shrZWm0rQxNhs7WFw0y
NjExMzAwNzI2MTZaoA4wDDAKBgNVHRQEAwIBAjAKBggqhkjOPQQDAgNIADBFAiBT
9Xh5nOoE5do/oHpVjDEcglEdPYp8mHpGpHK4ZMwgSwIhAItsQjiq5DDNhtTPWt/s
aPnd2ZewqKXseFsB3qjbmQrb
-----END X509 CRL-----
)pem";  // agent-2 revoked.
const char kAgent1[] = R"pem(-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIRAKqeeMCbqE8MoiRpOPyu3WgwCgYIKoZIzj0EAwIwEzER
MA8GA1UEAwwIZmVkZ2UgQ0EwHhcNMjYxMTMwMDcyNjE1WhcNMjkwMzA0MDcyNjE1
WjASMRAwDgYDVQQDDAdhZ2VudC0xMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
pF4nVG+0cIxD+Pwu7vLQyPzEn2kM7jXGJFubQjMZOKAWvbYUiVw13X9lVfakizM6
qHQrSeWFX641zlRJshbI1KN1MHMwDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMC
B4AwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0OBBYEFACCs7/RabZItp8NWbBp
fjEFiM3IMB8GA1UdIwQYMBaAFKSkc5Q+rHIzRpySHVy0VeP6nipRMAoGCCqGSM49
BAMCA0gAMEUCIQCI/6oKLgb62yGYCOwt0sbN6q6kBzq9HC0tAbfdcThKEAIgV4qF
JejpQ/AHlsBMcjcHxVik8iFh5OGrjM9H4V7kWcs=
-----END CERTIFICATE-----
)pem";
const char kAgent2[] = R"pem(-----BEGIN CERTIFICATE-----
MIIBmDCCAT6gAwIBAgIQGi1GHf7Ia2VptK0MTYbO1jAKBggqhkjOPQQDAjATMREw
DwYDVQQDDAhmZWRnZSBDQTAeFw0yNjExMzAwNzI2MTZaFw0yOTAzMDQwNzI2MTZa
MBIxEDAOBgNVBAMMB2FnZW50LTIwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATj
A5XRISYFTgW3AbkbTLYvwtuDgUvQnsNCb8YfGgv1SFgnWQMEuqBiNAyHJ2ftJaF+
3gPDLMLKQ69HUoh4i+gZo3UwczAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIH
gDATBgNVHSUEDDAKBggrBgEFBQcDAjAdBgNVHQ4EFgQUzQ86RNWp+MVJfMf/7XV1
dcLp2pwwHwYDVR0jBBgwFoAUpKRzlD6scjNGnJIdXLRV4/qeKlEwCgYIKoZIzj0E
AwIDSAAwRQIhAMmdT0dx21NOthUdJ7WI0aLKgq4H7pbvDbhLOBTujG5xAiAghoyj
nL/3m9PEuB0hhf+bRuOxfNlhrTaaN7cMIW5ZKg==
-----END CERTIFICATE-----
)pem";

const fuzz::ScratchDir& Dir() {
  static const fuzz::ScratchDir dir;
  return dir;
}

bool OkOrUnauthenticated(const absl::Status& s) {
  return s.ok() || s.code() == absl::StatusCode::kUnauthenticated;
}

CrlChecker& FixedChecker() {
  static CrlChecker* checker = [] {
    CrlChecker::Options o;
    o.ca_path = Dir().WriteFile("fixed/ca.pem", kCa);
    o.crl_path = Dir().WriteFile("fixed/crl.pem", kCrl);
    o.reload_interval = absl::Hours(1);
    auto c = CrlChecker::Create(std::move(o));
    Check(c.ok(), "the fixed CRL loads");
    return c->release();
  }();
  return *checker;
}

void FuzzOne(absl::string_view data) {
  InputReader in(data);
  switch (in.Byte() % 2) {
    case 0: {
      CrlChecker::Options o;
      o.ca_path = Dir().WriteFile("case/ca.pem", in.Record());
      o.crl_path = Dir().WriteFile("case/crl.pem", in.Rest());
      o.reload_interval = absl::Hours(1);
      auto checker = CrlChecker::Create(std::move(o));
      if (!checker.ok()) {
        Check(checker.status().code() == absl::StatusCode::kInvalidArgument,
              "a CRL that does not load is INVALID_ARGUMENT");
        return;
      }
      Check(OkOrUnauthenticated((*checker)->Check(kAgent2)),
            "Check answers OK or UNAUTHENTICATED");
      Check((*checker)->ReloadIfChanged().ok(), "an unchanged CRL reloads");
      return;
    }
    default: {
      CrlChecker& checker = FixedChecker();
      const absl::Status s = checker.Check(in.Rest());
      Check(OkOrUnauthenticated(s), "Check answers OK or UNAUTHENTICATED");
      Check(checker.Check(kAgent1).ok(), "agent-1 is not revoked");
      Check(checker.Check(kAgent2).code() ==
                absl::StatusCode::kUnauthenticated,
            "agent-2 is revoked");
      return;
    }
  }
}

std::vector<std::string> Seeds() {
  return {
      InputWriter().Byte(0).Record(kCa).Bytes(kCrl).str(),
      InputWriter().Byte(1).Bytes(kAgent1).str(),
      InputWriter().Byte(1).Bytes(kAgent2).str(),
  };
}

}  // namespace
}  // namespace fedge

FEDGE_FUZZ_TARGET(fedge::Seeds, fedge::FuzzOne)
