#include "config/address.h"

#include <arpa/inet.h>

#include <string>

#include "gtest/gtest.h"

namespace skproxy {
namespace {

std::string ErrorOf(std::string_view text, bool allow_port_zero = false) {
  absl::StatusOr<SocketAddress> address = ParseSocketAddress(text, allow_port_zero);
  EXPECT_FALSE(address.ok()) << text << " parsed as " << address->ToString();
  return std::string(address.status().message());
}

TEST(ParseSocketAddress, Ipv4) {
  absl::StatusOr<SocketAddress> address = ParseSocketAddress("1.2.3.4:80");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->family(), AF_INET);
  EXPECT_EQ(address->length, sizeof(sockaddr_in));
  EXPECT_EQ(address->port(), 80);
  const auto* v4 = reinterpret_cast<const sockaddr_in*>(address->sockaddr_ptr());
  EXPECT_EQ(ntohl(v4->sin_addr.s_addr), 0x01020304u);
  EXPECT_EQ(address->ToString(), "1.2.3.4:80");
}

TEST(ParseSocketAddress, Ipv6) {
  absl::StatusOr<SocketAddress> address = ParseSocketAddress("[::1]:80");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->family(), AF_INET6);
  EXPECT_EQ(address->length, sizeof(sockaddr_in6));
  EXPECT_EQ(address->port(), 80);
  const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address->sockaddr_ptr());
  EXPECT_TRUE(IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr));
  EXPECT_EQ(address->ToString(), "[::1]:80");
}

TEST(ParseSocketAddress, ToStringIsTheInverse) {
  for (const char* text :
       {"0.0.0.0:10000", "[::]:10000", "255.255.255.255:65535", "[2001:db8::1]:1", "[::ffff:10.0.0.1]:443"}) {
    absl::StatusOr<SocketAddress> address = ParseSocketAddress(text);
    ASSERT_TRUE(address.ok()) << text << ": " << address.status();
    EXPECT_EQ(address->ToString(), text);
  }
}

TEST(ParseSocketAddress, ToStringIsCanonical) {
  absl::StatusOr<SocketAddress> address = ParseSocketAddress("[2001:DB8:0:0:0:0:0:1]:08080");
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->ToString(), "[2001:db8::1]:8080");
}

TEST(ParseSocketAddress, PortZeroOnlyWhenAllowed) {
  EXPECT_EQ(ErrorOf("127.0.0.1:0"), "port 0 is not allowed");
  absl::StatusOr<SocketAddress> address = ParseSocketAddress("127.0.0.1:0", /*allow_port_zero=*/true);
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->port(), 0);
}

TEST(ParseSocketAddress, Rejects) {
  EXPECT_EQ(ErrorOf(""), "empty address");
  EXPECT_EQ(ErrorOf("localhost:80"), "'localhost' is not an IP address (hostnames are not resolved)");
  EXPECT_EQ(ErrorOf("1.2.3:80"), "'1.2.3' is not an IP address (hostnames are not resolved)");
  EXPECT_EQ(ErrorOf("1.2.3.4"), "missing port in '1.2.3.4' (expected IP:PORT)");
  EXPECT_EQ(ErrorOf("1.2.3.4:"), "missing port in '1.2.3.4:'");
  EXPECT_EQ(ErrorOf(":80"), "missing IP address in ':80'");
  EXPECT_EQ(ErrorOf("1.2.3.4:70000"), "port 70000 out of range");
  EXPECT_EQ(ErrorOf("1.2.3.4:99999999999999999999"), "port 99999999999999999999 out of range");
  EXPECT_EQ(ErrorOf("1.2.3.4:http"), "invalid port 'http'");
  EXPECT_EQ(ErrorOf("1.2.3.4:-1"), "invalid port '-1'");
  EXPECT_EQ(ErrorOf("1.2.3.4: 80"), "invalid port ' 80'");
  EXPECT_EQ(ErrorOf("::1:80"), "IPv6 address in '::1:80' needs brackets, as in [::1]:80");
  EXPECT_EQ(ErrorOf("[::1]"), "missing port in '[::1]' (expected [IPv6]:PORT)");
  EXPECT_EQ(ErrorOf("[::1:80"), "missing ']' in '[::1:80'");
  EXPECT_EQ(ErrorOf("[::1]80"), "missing port in '[::1]80' (expected [IPv6]:PORT)");
  EXPECT_EQ(ErrorOf("[1.2.3.4]:80"), "'1.2.3.4' is not an IPv6 address");
  EXPECT_EQ(ErrorOf("[fe80::1%eth0]:80"), "'fe80::1%eth0' is not an IPv6 address");
  EXPECT_EQ(ErrorOf("[::1]:65536"), "port 65536 out of range");
}

TEST(SocketAddress, Equality) {
  auto parse = [](std::string_view text) { return *ParseSocketAddress(text); };
  EXPECT_EQ(parse("10.0.0.1:80"), parse("10.0.0.1:80"));
  EXPECT_EQ(parse("[::1]:80"), parse("[0:0:0:0:0:0:0:1]:80"));
  EXPECT_FALSE(parse("10.0.0.1:80") == parse("10.0.0.1:81"));
  EXPECT_FALSE(parse("10.0.0.1:80") == parse("10.0.0.2:80"));
  EXPECT_FALSE(parse("0.0.0.0:80") == parse("[::]:80"));
  EXPECT_EQ(SocketAddress{}, SocketAddress{});
}

TEST(SocketAddressFrom, CopiesWhatTheKernelReturned) {
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(443);
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::2", &v6.sin6_addr), 1);
  SocketAddress address = SocketAddressFrom(reinterpret_cast<const sockaddr*>(&v6), sizeof(v6));
  EXPECT_EQ(address.length, sizeof(v6));
  EXPECT_EQ(address, *ParseSocketAddress("[2001:db8::2]:443"));
  EXPECT_EQ(address.ToString(), "[2001:db8::2]:443");

  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = htons(8080);
  v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(SocketAddressFrom(reinterpret_cast<const sockaddr*>(&v4), sizeof(v4)).ToString(), "127.0.0.1:8080");
}

TEST(SocketAddressFrom, ClampsAnOversizedLength) {
  sockaddr_storage big{};
  big.ss_family = AF_INET;
  SocketAddress address = SocketAddressFrom(reinterpret_cast<const sockaddr*>(&big), sizeof(big) + 100);
  EXPECT_EQ(address.length, sizeof(sockaddr_storage));
  EXPECT_EQ(SocketAddressFrom(nullptr, 16).length, 0u);
}

TEST(LoopbackAddress, BothFamilies) {
  SocketAddress v4 = LoopbackAddress(AF_INET, 8080);
  EXPECT_EQ(v4.family(), AF_INET);
  EXPECT_EQ(v4.length, sizeof(sockaddr_in));
  EXPECT_EQ(v4.ToString(), "127.0.0.1:8080");
  EXPECT_EQ(v4, *ParseSocketAddress("127.0.0.1:8080"));

  SocketAddress v6 = LoopbackAddress(AF_INET6, 0);
  EXPECT_EQ(v6.family(), AF_INET6);
  EXPECT_EQ(v6.length, sizeof(sockaddr_in6));
  EXPECT_EQ(v6.ToString(), "[::1]:0");
  EXPECT_EQ(v6, *ParseSocketAddress("[::1]:0", /*allow_port_zero=*/true));
}

TEST(SocketAddress, SetPortKeepsTheHost) {
  SocketAddress v4 = *ParseSocketAddress("10.1.2.3:1");
  v4.set_port(65535);
  EXPECT_EQ(v4.ToString(), "10.1.2.3:65535");
  SocketAddress v6 = *ParseSocketAddress("[fe80::1]:1");
  v6.set_port(0);
  EXPECT_EQ(v6.port(), 0);
  EXPECT_EQ(v6.ToString(), "[fe80::1]:0");
  SocketAddress none;  // no family: nothing to set, and nothing breaks
  none.set_port(80);
  EXPECT_EQ(none.port(), 0);
}

}  // namespace
}  // namespace skproxy
