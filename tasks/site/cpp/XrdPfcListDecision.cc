// smartcache XCache decision plugin: admit the files of the site's placement list, ask the inference
// service about the others, and tell it about every open.
//
// Loaded by XCache with
//   pfc.decisionlib /path/libXrdPfcListDecision.so list=/path/site.txt [reload=5] [default=0]
//                   [decide=http://127.0.0.1:8083/decide site=T2_XX_Site timeout_ms=250 ttl=300 retry=30
//                    max_answers=100000]
//                   [origin=HOST:PORT origin_timeout_ms=100 max_sizes=100000]
//                   [token_file=/path/token report=http://.../access report_every=1 report_batch=1000
//                    max_queue=100000 report_timeout_ms=5000]
//
// Decide(lfn) runs synchronously on every file open, so it answers from memory:
// - the placement list (text: '#' header lines, then one LFN per line) is held as a hash set behind a
//   shared_ptr that is swapped atomically. A background thread checks the list file's inode/size/mtime
//   every `reload` seconds and rebuilds the set only when they change (a 500k-LFN list takes seconds to
//   load, which must not delay an open); reload=0 checks on every open instead (tests, tiny lists). A
//   push replaces the list by rename, so a new inode means a new list; readers keep the old set until
//   the swap.
// - an LFN not on the list is admitted by `default` (0/1), or, when `decide` is set, by asking the
//   inference service's GET /decide?site=S&lfn=L&ts=T[&size=B] -> {"store": bool, ...} over plain
//   HTTP/1.1 on a socket with one deadline (`timeout_ms`) for connect+send+receive. Answers are cached
//   for `ttl` seconds; after a failure (timeout, refused, bad reply) the service is not asked again for
//   `retry` seconds and `default` answers meanwhile, so a dead service cannot slow every open down.
// - the service's model scores an open from the site's access history and the file's size, so the plugin
//   sends both: ts= is the time of the open, size= comes from the origin (`origin`; an asynchronous XrdCl
//   stat, waited for at most `origin_timeout_ms`, sizes kept in a map of at most `max_sizes` files).
// - every open the service does not see through /decide (on the list, a cached answer, the default while
//   the service is down) is queued and a background thread POSTs the queue every `report_every` seconds to
//   the service's /access (`report`, by default decide's URL ending in /access) with the bearer token read
//   from `token_file` (see ScReporter.cc); the queue holds at most `max_queue` accesses (oldest dropped,
//   counted in the log). Without `token_file` nothing is reported.
//
// Build: smartcache site build-plugin   (or: make -C tasks/site/cpp)

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "ScCommon.hh"
#include "ScHttp.hh"
#include "ScOriginSizes.hh"
#include "ScParams.hh"
#include "ScReporter.hh"
#include "XrdPfc/XrdPfcDecision.hh"
#include "XrdSys/XrdSysError.hh"
#include "XrdVersion.hh"

namespace {

using namespace smartcache;
using LfnSet = std::unordered_set<std::string>;

// One LFN per line (first word); blank lines and '#' comments are skipped.
bool LoadList(const std::string &path, LfnSet &out) {
   std::string text;
   if (!ReadFile(path, text)) return false;
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
      if (!m_p.decide.empty() && !ParseHttpUrl(m_p.decide, "/decide", m_target, err)) {
         m_log.Emsg("SmartcacheDecision", "fallback disabled:", err.c_str());
      }
      if (!m_p.origin.empty()) {
         m_sizes.reset(new OriginSizes(m_p.origin, 5, m_p.max_sizes, m_p.retry_s));
      }
      std::string report = "-";
      if (!m_p.token_file.empty()) report = StartReporter();
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
        << "s default=" << m_p.default_answer << " decide=" << (m_target.ok ? m_p.decide : "-")
        << " origin=" << (m_sizes ? m_p.origin : "-") << " report=" << report;
      m_log.Emsg("SmartcacheDecision", "configured:", s.str().c_str());
      return true;
   }

   // Every open: on the list -> admit; else ask the service (or the default). An open the service does
   // not see through /decide (answered from memory) is queued for /access.
   bool Decide(const std::string &lfn, XrdOss &) const override {
      if (!m_p.list.empty() && m_p.reload_s <= 0) CheckNow();
      std::shared_ptr<const LfnSet> set;
      {
         std::lock_guard<std::mutex> lock(m_set_mx);
         set = m_set;
      }
      const std::string key = Normalize(lfn);
      const double ts = WallSeconds();
      if (set->count(key)) {
         Report(key, ts);
         return true;
      }
      if (!m_target.ok) {
         Report(key, ts);
         return m_p.default_answer;
      }
      return AskService(key, ts);
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

   std::string StartReporter() {
      std::string err;
      ReporterConfig rc;
      const std::string url = ReportUrl(m_p, err);
      if (url.empty() || !ParseHttpUrl(url, "/access", rc.target, err)) {
         m_log.Emsg("SmartcacheDecision", "reporting accesses disabled:", err.c_str());
         return "-";
      }
      rc.site = m_p.site;
      rc.token_file = m_p.token_file;
      rc.max_queue = m_p.max_queue;
      rc.batch = m_p.report_batch;
      rc.period_s = m_p.report_every_s;
      rc.timeout_ms = m_p.report_timeout_ms;
      m_reporter.reset(new Reporter(m_log, rc, m_sizes.get()));
      m_reporter->Start();
      return url;
   }

   // The reporter asks the origin for the size later, off the open path.
   void Report(const std::string &key, double ts) const {
      if (m_reporter) m_reporter->Add(key, ts, -1);
   }

   bool AskService(const std::string &key, double ts) const {
      const long long now = NowNs();
      {
         std::lock_guard<std::mutex> lock(m_ans_mx);
         auto it = m_answers.find(key);
         if (it != m_answers.end() && it->second.second > now) {
            Report(key, ts);
            return it->second.first;
         }
      }
      if (now < m_down_until_ns.load(std::memory_order_relaxed)) {
         Report(key, ts);
         return m_p.default_answer;
      }
      const long long size = m_sizes ? m_sizes->Get(key, m_p.origin_timeout_ms) : -1;
      char tail[96];
      std::snprintf(tail, sizeof(tail), "&ts=%.3f", ts);
      std::string q = m_target.path + "?site=" + UrlEncode(m_p.site) + "&lfn=" + UrlEncode(key) + tail;
      if (size >= 0) q += "&size=" + std::to_string(size);
      const HttpResult r = HttpRequest(m_target, "GET", q, "", "", m_p.timeout_ms);
      const int store = r.status == 200 ? ParseStore(r.body) : -1;
      if (store < 0) {
         m_down_until_ns.store(now + static_cast<long long>(m_p.retry_s * 1e9), std::memory_order_relaxed);
         // a request that never reached the service is an open it did not see; one it got, it may have kept
         if (!r.sent) Report(key, ts);
         const std::string why = r.status < 0 ? "no answer within " + std::to_string(m_p.timeout_ms) + " ms"
                                              : "HTTP " + std::to_string(r.status) + " without a store field";
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

   std::unique_ptr<OriginSizes> m_sizes;        // set at configuration; thread-safe
   std::unique_ptr<Reporter> m_reporter;        // set at configuration; thread-safe
};

}  // namespace

XrdVERSIONINFO(XrdPfcGetDecision, SmartcacheList);

extern "C" {
XrdPfc::Decision *XrdPfcGetDecision(XrdSysError &log) { return new ListDecision(log); }
}
