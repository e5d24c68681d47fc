// Owning pointers for OpenSSL 3 objects, a read-only memory BIO and the
// error queue as text: one home for what the signing, secure-aggregation
// and certificate-revocation code all need. Header only.
//
// Thread-safe (OpenSSL's error queue is per thread).
#ifndef FEDGE_COMMON_OPENSSL_UTIL_H_
#define FEDGE_COMMON_OPENSSL_UTIL_H_

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <climits>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace fedge::openssl {

// Calls OpenSSL's free function `Free` (whatever it returns).
template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};

using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using CipherCtxPtr =
    std::unique_ptr<EVP_CIPHER_CTX, Deleter<EVP_CIPHER_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using X509CrlPtr = std::unique_ptr<X509_CRL, Deleter<X509_CRL_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;

// A read-only memory BIO over `bytes` (which must outlive it); null when
// it is larger than an int can say.
inline BioPtr MemoryBio(absl::string_view bytes) {
  if (bytes.size() > static_cast<size_t>(INT_MAX)) return nullptr;
  return BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

// The oldest error of this thread's OpenSSL error queue as text ("no
// detail" when it is empty); the queue is cleared.
inline std::string ErrorString() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no detail";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace fedge::openssl

#endif  // FEDGE_COMMON_OPENSSL_UTIL_H_
