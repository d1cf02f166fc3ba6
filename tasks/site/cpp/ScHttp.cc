// smartcache decision plugin: one plain HTTP/1.1 request on a non-blocking socket, under one deadline.
#include "ScHttp.hh"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "ScCommon.hh"

namespace smartcache {

bool ParseHttpUrl(const std::string &url, const std::string &default_path, HttpTarget &t, std::string &err) {
   const std::string scheme = "http://";
   if (url.compare(0, scheme.size(), scheme) != 0) { err = url + " is not an http:// URL"; return false; }
   std::string rest = url.substr(scheme.size());
   size_t slash = rest.find('/');
   std::string hostport = rest.substr(0, slash);
   t.path = slash == std::string::npos ? default_path : rest.substr(slash);
   std::string host = hostport, port = "80";
   size_t colon = hostport.rfind(':');
   if (colon != std::string::npos) { host = hostport.substr(0, colon); port = hostport.substr(colon + 1); }
   if (host.empty()) { err = url + " has no host"; return false; }
   addrinfo hints{}, *res = nullptr;
   hints.ai_socktype = SOCK_STREAM;
   int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
   if (rc != 0 || !res) { err = std::string("cannot resolve ") + hostport + ": " + gai_strerror(rc); return false; }
   std::memcpy(&t.addr, res->ai_addr, res->ai_addrlen);
   t.addrlen = res->ai_addrlen;
   freeaddrinfo(res);
   t.host = hostport;
   t.ok = true;
   return true;
}

namespace {

int RemainingMs(long long deadline_ns) {
   long long left = (deadline_ns - NowNs()) / 1000000;
   return left > 0 ? static_cast<int>(left) : 0;
}

bool WaitFor(int fd, short events, long long deadline_ns) {
   pollfd p{fd, events, 0};
   int ms = RemainingMs(deadline_ns);
   if (ms <= 0) return false;
   int rc;
   do { rc = poll(&p, 1, ms); } while (rc < 0 && errno == EINTR);
   return rc > 0 && (p.revents & (events | POLLHUP));
}

bool SendAll(int fd, const std::string &data, long long deadline) {
   size_t sent = 0;
   while (sent < data.size()) {
      ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n > 0) { sent += static_cast<size_t>(n); continue; }
      if (n < 0 && (errno == EAGAIN || errno == EINTR) && WaitFor(fd, POLLOUT, deadline)) continue;
      return false;
   }
   return true;
}

}  // namespace

HttpResult HttpRequest(const HttpTarget &t, const char *method, const std::string &path_query,
                       const std::string &headers, const std::string &body, int timeout_ms) {
   HttpResult r;
   const long long deadline = NowNs() + static_cast<long long>(timeout_ms) * 1000000;
   int fd = socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
   if (fd < 0) return r;
   struct Closer { int fd; ~Closer() { close(fd); } } closer{fd};
   if (connect(fd, reinterpret_cast<const sockaddr *>(&t.addr), t.addrlen) != 0) {
      if (errno != EINPROGRESS || !WaitFor(fd, POLLOUT, deadline)) return r;
      int soerr = 0;
      socklen_t len = sizeof(soerr);
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) return r;
   }
   std::string req = std::string(method) + " " + path_query + " HTTP/1.1\r\nHost: " + t.host +
                     "\r\nAccept: application/json\r\nConnection: close\r\n" + headers;
   if (!body.empty() || std::strcmp(method, "GET") != 0) req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
   req += "\r\n";
   req += body;
   if (!SendAll(fd, req, deadline)) return r;
   r.sent = true;
   std::string resp;
   char buf[4096];
   while (resp.size() < 65536) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n > 0) { resp.append(buf, static_cast<size_t>(n)); continue; }
      if (n == 0) break;
      if ((errno == EAGAIN || errno == EINTR) && WaitFor(fd, POLLIN, deadline)) continue;
      return r;
   }
   int status = 0;
   if (std::sscanf(resp.c_str(), "HTTP/%*d.%*d %d", &status) != 1) return r;
   size_t hdr_end = resp.find("\r\n\r\n");
   r.body = hdr_end == std::string::npos ? std::string() : resp.substr(hdr_end + 4);
   r.status = status;
   return r;
}

int ParseStore(const std::string &body) {
   size_t p = body.find("\"store\"");
   if (p == std::string::npos) return -1;
   p += 7;
   while (p < body.size() && (std::isspace(static_cast<unsigned char>(body[p])) || body[p] == ':')) ++p;
   if (body.compare(p, 4, "true") == 0) return 1;
   if (body.compare(p, 5, "false") == 0) return 0;
   return -1;
}

}  // namespace smartcache
