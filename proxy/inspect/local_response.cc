#include "proxy/inspect/local_response.h"

namespace skproxy {

std::string_view LocalResponse(int status) {
  // Content-Length is spelled out per body (the preprocessor cannot count): each body is "reason\n".
  switch (status) {
    case 400:
      return "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
             "Connection: close\r\nServer: skproxy\r\n\r\nBad Request\n";
    case 404:
      return "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n"
             "Connection: close\r\nServer: skproxy\r\n\r\nNot Found\n";
    case 408:
      return "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
             "Connection: close\r\nServer: skproxy\r\n\r\nRequest Timeout\n";
    case 431:
      return "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 32\r\n"
             "Connection: close\r\nServer: skproxy\r\n\r\nRequest Header Fields Too Large\n";
    case 502:
      return "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
             "Connection: close\r\nServer: skproxy\r\n\r\nBad Gateway\n";
    case 503:
      return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
             "Connection: close\r\nServer: skproxy\r\n\r\nService Unavailable\n";
    case 504:
      return "HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
             "Connection: close\r\nServer: skproxy\r\n\r\nGateway Timeout\n";
    default:
      return "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n"
             "Connection: close\r\nServer: skproxy\r\n\r\nInternal Server Error\n";
  }
}

}  // namespace skproxy
