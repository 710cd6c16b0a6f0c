#include "tests/inspect/client_hello.h"

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <memory>
#include <vector>

namespace skproxy::itest {
namespace {

int AddPadding(SSL*, unsigned, unsigned, const unsigned char** out, size_t* outlen, X509*, size_t, int*,
               void* arg) {
  auto* padding = static_cast<std::vector<unsigned char>*>(arg);
  *out = padding->data();
  *outlen = padding->size();
  return 1;
}

}  // namespace

std::string OpenSslClientHello(const std::string& sni, size_t padding) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  std::vector<unsigned char> pad(padding, 'p');
  if (padding > 0) {
    // A private-use extension type, sent in the ClientHello only.
    SSL_CTX_add_custom_ext(ctx.get(), 0xff01 - 0x100, SSL_EXT_CLIENT_HELLO, AddPadding, nullptr, &pad, nullptr,
                           nullptr);
  }
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // the SSL owns both now
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
  SSL_connect(ssl.get());  // wants to read the ServerHello: returns after writing the hello
  char* data = nullptr;
  const long n = BIO_get_mem_data(out, &data);
  return std::string(data, static_cast<size_t>(n));
}

}  // namespace skproxy::itest
