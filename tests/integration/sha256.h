// SHA-256 through OpenSSL EVP, for comparing whole streams.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace skproxy::itest {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, size_t n);
  std::string FinalRaw();  // 32 bytes
  std::string FinalHex();

 private:
  void* ctx_;  // EVP_MD_CTX, kept opaque so the header does not pull in OpenSSL
};
std::string HexEncode(std::string_view raw);

}  // namespace skproxy::itest
