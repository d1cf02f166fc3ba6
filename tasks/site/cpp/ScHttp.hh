// smartcache decision plugin: one plain HTTP/1.1 request on a socket, under one deadline.
#pragma once

#include <sys/socket.h>

#include <string>

namespace smartcache {

struct HttpTarget {
   sockaddr_storage addr{};
   socklen_t addrlen = 0;
   std::string host;   // Host: header
   std::string path;   // e.g. /decide
   bool ok = false;
};

struct HttpResult {
   int status = -1;     // the HTTP status, -1 when no reply came (refused, timeout, garbage)
   bool sent = false;   // the whole request was written: the server may have acted on it
   std::string body;
};

// http://host[:port][/path] (path defaults to `default_path`); the host is resolved here, once,
// never on the open path.
bool ParseHttpUrl(const std::string &url, const std::string &default_path, HttpTarget &t, std::string &err);

// `method path_query` with `headers` (each line ending in \r\n) and `body`, `Connection: close`;
// connect + send + receive share one deadline of `timeout_ms`.
HttpResult HttpRequest(const HttpTarget &t, const char *method, const std::string &path_query,
                       const std::string &headers, const std::string &body, int timeout_ms);

// {"store": true, ...} -> 1, false -> 0, anything else -> -1. A substring scan is enough for the
// service's flat object.
int ParseStore(const std::string &body);

}  // namespace smartcache
