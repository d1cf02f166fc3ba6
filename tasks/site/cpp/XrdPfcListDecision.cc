// smartcache XCache decision plugin: admit the files of the site's placement list.
//
// Loaded by XCache with
//   pfc.decisionlib /path/libXrdPfcListDecision.so list=/path/site.txt [reload=5] [default=0]
//                   [decide=http://127.0.0.1:8083/decide site=T2_XX_Site timeout_ms=250 ttl=300 retry=30
//                    max_answers=100000]
//
// Decide(lfn) runs synchronously on every file open, so it answers from memory:
// - the placement list (text: '#' header lines, then one LFN per line) is held as a hash set behind a
//   shared_ptr that is swapped atomically. A background thread checks the list file's inode/size/mtime
//   every `reload` seconds and rebuilds the set only when they change (a 500k-LFN list takes seconds to
//   load, which must not delay an open); reload=0 checks on every open instead (tests, tiny lists). A
//   push replaces the list by rename, so a new inode means a new list; readers keep the old set until
//   the swap.
// - an LFN not on the list is admitted by `default` (0/1), or, when `decide` is set, by asking the
//   inference service's GET /decide?site=S&lfn=L -> {"store": bool, ...} over plain HTTP/1.1 on a
//   socket with one deadline (`timeout_ms`) for connect+send+receive. Answers are cached for `ttl`
//   seconds; after a failure (timeout, refused, bad reply) the service is not asked again for `retry`
//   seconds and `default` answers meanwhile, so a dead service cannot slow every open down.
//
// Build: smartcache site build-plugin   (or: make -C tasks/site/cpp)

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "XrdPfc/XrdPfcDecision.hh"
#include "XrdSys/XrdSysError.hh"
#include "XrdVersion.hh"

namespace {

using Clock = std::chrono::steady_clock;
using LfnSet = std::unordered_set<std::string>;

long long NowNs() {
   return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// The key both the list and Decide() use: no opaque CGI, no duplicate slashes, no trailing blanks.
std::string Normalize(const std::string &path) {
   std::string out;
   out.reserve(path.size());
   for (char c : path) {
      if (c == '?') break;
      if (c == '/' && !out.empty() && out.back() == '/') continue;
      out.push_back(c);
   }
   while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
   return out;
}

struct FileId {
   dev_t dev = 0;
   ino_t ino = 0;
   off_t size = -1;
   long long mtime_ns = -1;
   bool operator==(const FileId &o) const {
      return dev == o.dev && ino == o.ino && size == o.size && mtime_ns == o.mtime_ns;
   }
};

bool StatId(const std::string &path, FileId &id) {
   struct stat st;
   if (stat(path.c_str(), &st) != 0) return false;
   id.dev = st.st_dev;
   id.ino = st.st_ino;
   id.size = st.st_size;
   id.mtime_ns = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
   return true;
}

// One LFN per line (first word); blank lines and '#' comments are skipped.
bool LoadList(const std::string &path, LfnSet &out) {
   std::ifstream in(path, std::ios::binary);
   if (!in) return false;
   std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
   if (in.bad()) return false;
   out.reserve(text.size() / 64 + 16);   // CMS LFNs are ~100 bytes: fewer rehashes
   size_t pos = 0;
   while (pos < text.size()) {
      size_t eol = text.find('\n', pos);
      if (eol == std::string::npos) eol = text.size();
      size_t b = text.find_first_not_of(" \t\r", pos);
      if (b < eol && text[b] != '#') {
         size_t e = text.find_first_of(" \t\r\n", b);
         out.insert(Normalize(text.substr(b, std::min(e, eol) - b)));
      }
      pos = eol + 1;
   }
   return true;
}

std::string UrlEncode(const std::string &s) {
   static const char hex[] = "0123456789ABCDEF";
   std::string out;
   for (unsigned char c : s) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
         out.push_back(static_cast<char>(c));
      } else {
         out.push_back('%');
         out.push_back(hex[c >> 4]);
         out.push_back(hex[c & 15]);
      }
   }
   return out;
}

// {"store": true, ...} -> 1, false -> 0, anything else -> -1. A substring scan is enough for the
// service's flat object and also works on a chunked body.
int ParseStore(const std::string &body) {
   size_t p = body.find("\"store\"");
   if (p == std::string::npos) return -1;
   p += 7;
   while (p < body.size() && (std::isspace(static_cast<unsigned char>(body[p])) || body[p] == ':')) ++p;
   if (body.compare(p, 4, "true") == 0) return 1;
   if (body.compare(p, 5, "false") == 0) return 0;
   return -1;
}

struct HttpTarget {
   sockaddr_storage addr{};
   socklen_t addrlen = 0;
   std::string host;   // Host: header
   std::string path;   // e.g. /decide
   bool ok = false;
};

// http://host[:port][/path]; the host is resolved once here, never in Decide().
bool ParseHttpUrl(const std::string &url, HttpTarget &t, std::string &err) {
   const std::string scheme = "http://";
   if (url.compare(0, scheme.size(), scheme) != 0) { err = "decide must be an http:// URL"; return false; }
   std::string rest = url.substr(scheme.size());
   size_t slash = rest.find('/');
   std::string hostport = rest.substr(0, slash);
   t.path = slash == std::string::npos ? "/decide" : rest.substr(slash);
   std::string host = hostport, port = "80";
   size_t colon = hostport.rfind(':');
   if (colon != std::string::npos) { host = hostport.substr(0, colon); port = hostport.substr(colon + 1); }
   if (host.empty()) { err = "decide URL has no host"; return false; }
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

// GET target; returns the HTTP status (and the body), or -1 on any failure or timeout.
int HttpGet(const HttpTarget &t, const std::string &path_query, int timeout_ms, std::string &body) {
   long long deadline = NowNs() + static_cast<long long>(timeout_ms) * 1000000;
   int fd = socket(t.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
   if (fd < 0) return -1;
   struct Closer { int fd; ~Closer() { close(fd); } } closer{fd};
   if (connect(fd, reinterpret_cast<const sockaddr *>(&t.addr), t.addrlen) != 0) {
      if (errno != EINPROGRESS || !WaitFor(fd, POLLOUT, deadline)) return -1;
      int soerr = 0;
      socklen_t len = sizeof(soerr);
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) return -1;
   }
   std::string req = "GET " + path_query + " HTTP/1.1\r\nHost: " + t.host +
                     "\r\nAccept: application/json\r\nConnection: close\r\n\r\n";
   size_t sent = 0;
   while (sent < req.size()) {
      ssize_t n = send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n > 0) { sent += static_cast<size_t>(n); continue; }
      if (n < 0 && (errno == EAGAIN || errno == EINTR) && WaitFor(fd, POLLOUT, deadline)) continue;
      return -1;
   }
   std::string resp;
   char buf[4096];
   while (resp.size() < 65536) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n > 0) { resp.append(buf, static_cast<size_t>(n)); continue; }
      if (n == 0) break;
      if ((errno == EAGAIN || errno == EINTR) && WaitFor(fd, POLLIN, deadline)) continue;
      return -1;
   }
   int status = 0;
   if (std::sscanf(resp.c_str(), "HTTP/%*d.%*d %d", &status) != 1) return -1;
   size_t hdr_end = resp.find("\r\n\r\n");
   body = hdr_end == std::string::npos ? std::string() : resp.substr(hdr_end + 4);
   return status;
}

struct Params {
   std::string list;
   double reload_s = 5;
   bool default_answer = false;
   std::string decide;
   std::string site;
   int timeout_ms = 250;
   double ttl_s = 300;
   double retry_s = 30;
   size_t max_answers = 100000;
};

bool ParseParams(const char *text, Params &p, std::string &err) {
   std::istringstream in(text ? text : "");
   std::string word;
   while (in >> word) {
      size_t eq = word.find('=');
      if (eq == std::string::npos) { err = "expected key=value, got '" + word + "'"; return false; }
      std::string k = word.substr(0, eq), v = word.substr(eq + 1);
      try {
         if (k == "list") p.list = v;
         else if (k == "reload") p.reload_s = std::stod(v);
         else if (k == "default") p.default_answer = (v == "1" || v == "true" || v == "yes");
         else if (k == "decide") p.decide = v;
         else if (k == "site") p.site = v;
         else if (k == "timeout_ms") p.timeout_ms = std::stoi(v);
         else if (k == "ttl") p.ttl_s = std::stod(v);
         else if (k == "retry") p.retry_s = std::stod(v);
         else if (k == "max_answers") p.max_answers = static_cast<size_t>(std::stoul(v));
         else { err = "unknown parameter '" + k + "'"; return false; }
      } catch (const std::exception &) {
         err = "bad value for '" + k + "': '" + v + "'";
         return false;
      }
   }
   if (p.list.empty() && p.decide.empty()) { err = "give list=PATH and/or decide=URL"; return false; }
   return true;
}

class ListDecision : public XrdPfc::Decision {
public:
   explicit ListDecision(XrdSysError &log) : m_log(log), m_set(std::make_shared<const LfnSet>()) {}

   bool ConfigDecision(const char *params) override {
      std::string err;
      if (!ParseParams(params, m_p, err)) {
         m_log.Emsg("SmartcacheDecision", "bad pfc.decisionlib parameters:", err.c_str());
         m_p = Params();
         return false;
      }
      if (!m_p.decide.empty() && !ParseHttpUrl(m_p.decide, m_target, err)) {
         m_log.Emsg("SmartcacheDecision", "fallback disabled:", err.c_str());
      }
      if (!m_p.list.empty()) {
         Reload(true);
         if (m_p.reload_s > 0) {
            // the plugin lives as long as the server: a detached thread is never left dangling
            std::thread([this] {
               const auto period = std::chrono::duration<double>(m_p.reload_s);
               for (;;) {
                  std::this_thread::sleep_for(period);
                  std::lock_guard<std::mutex> lock(m_reload_mx);
                  Reload(false);
               }
            }).detach();
         }
      }
      std::ostringstream s;
      s << "list=" << (m_p.list.empty() ? "-" : m_p.list) << " reload=" << m_p.reload_s
        << "s default=" << m_p.default_answer << " decide=" << (m_target.ok ? m_p.decide : "-");
      m_log.Emsg("SmartcacheDecision", "configured:", s.str().c_str());
      return true;
   }

   bool Decide(const std::string &lfn, XrdOss &) const override {
      if (!m_p.list.empty() && m_p.reload_s <= 0) CheckNow();
      std::shared_ptr<const LfnSet> set;
      {
         std::lock_guard<std::mutex> lock(m_set_mx);
         set = m_set;
      }
      const std::string key = Normalize(lfn);
      if (set->count(key)) return true;
      if (!m_target.ok) return m_p.default_answer;
      return AskService(key);
   }

private:
   // reload=0: check the list on this open (a stat; a changed list is loaded here, in this open).
   void CheckNow() const {
      std::unique_lock<std::mutex> lock(m_reload_mx, std::try_to_lock);
      if (!lock.owns_lock()) return;  // another open is reloading; use the current set meanwhile
      Reload(false);
   }

   // Callers hold m_reload_mx (or are single-threaded at configuration).
   void Reload(bool first) const {
      FileId id;
      if (!StatId(m_p.list, id)) {
         // Keep the last good set: a push replaces the file by rename, so absence is an operator's doing.
         if (first || m_have_id) m_log.Emsg("SmartcacheDecision", "placement list missing:", m_p.list.c_str());
         m_have_id = false;
         return;
      }
      if (m_have_id && id == m_loaded) return;
      auto fresh = std::make_shared<LfnSet>();
      if (!LoadList(m_p.list, *fresh)) {
         m_log.Emsg("SmartcacheDecision", "cannot read placement list:", m_p.list.c_str());
         return;
      }
      m_loaded = id;
      m_have_id = true;
      const std::string n = std::to_string(fresh->size());
      std::shared_ptr<const LfnSet> old = std::move(fresh);
      {
         std::lock_guard<std::mutex> lock(m_set_mx);
         m_set.swap(old);
      }
      old.reset();   // free the previous set here, outside the lock Decide() takes
      m_log.Emsg("SmartcacheDecision", "loaded", n.c_str(), ("LFNs from " + m_p.list).c_str());
   }

   bool AskService(const std::string &key) const {
      const long long now = NowNs();
      {
         std::lock_guard<std::mutex> lock(m_ans_mx);
         auto it = m_answers.find(key);
         if (it != m_answers.end() && it->second.second > now) return it->second.first;
      }
      if (now < m_down_until_ns.load(std::memory_order_relaxed)) return m_p.default_answer;
      std::string body;
      const std::string q = m_target.path + "?site=" + UrlEncode(m_p.site) + "&lfn=" + UrlEncode(key);
      const int status = HttpGet(m_target, q, m_p.timeout_ms, body);
      const int store = status == 200 ? ParseStore(body) : -1;
      if (store < 0) {
         m_down_until_ns.store(now + static_cast<long long>(m_p.retry_s * 1e9), std::memory_order_relaxed);
         const std::string why = status < 0 ? "no answer within " + std::to_string(m_p.timeout_ms) + " ms"
                                            : "HTTP " + std::to_string(status) + " without a store field";
         m_log.Emsg("SmartcacheDecision", "decide service failed:", why.c_str(), "; using the default answer");
         return m_p.default_answer;
      }
      std::lock_guard<std::mutex> lock(m_ans_mx);
      if (m_answers.size() >= m_p.max_answers) m_answers.clear();
      m_answers[key] = {store == 1, now + static_cast<long long>(m_p.ttl_s * 1e9)};
      return store == 1;
   }

   XrdSysError &m_log;
   Params m_p;
   HttpTarget m_target;

   mutable std::mutex m_set_mx;                 // guards the pointer swap only
   mutable std::shared_ptr<const LfnSet> m_set;
   mutable std::mutex m_reload_mx;              // one reloader at a time
   mutable FileId m_loaded;                     // guarded by m_reload_mx
   mutable bool m_have_id = false;              // guarded by m_reload_mx

   mutable std::mutex m_ans_mx;                 // guards m_answers
   mutable std::unordered_map<std::string, std::pair<bool, long long>> m_answers;
   mutable std::atomic<long long> m_down_until_ns{0};
};

}  // namespace

XrdVERSIONINFO(XrdPfcGetDecision, SmartcacheList);

extern "C" {
XrdPfc::Decision *XrdPfcGetDecision(XrdSysError &log) { return new ListDecision(log); }
}
