// smartcache decision plugin: the access reporter. Every `period_s` the thread takes the queue, asks the
// origin for the sizes it does not know yet, and POSTs {"accesses": [{"site","lfn","size","ts"}, ...]} in
// batches to the service's /access with the bearer token. A batch the service did not take (no answer,
// 5xx, 401/403/408/429) goes back to the front of the queue and is retried next cycle; one it refused as
// bad (another 4xx) is dropped and counted: retrying would not help. The queue is bounded: when full, the
// oldest accesses are dropped and counted, so a dead service costs memory up to the bound and no more.
#include "ScReporter.hh"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "ScOriginSizes.hh"
#include "XrdSys/XrdSysError.hh"

namespace smartcache {

Reporter::Reporter(XrdSysError &log, ReporterConfig cfg, OriginSizes *sizes)
   : m_log(log), m_cfg(std::move(cfg)), m_sizes(sizes) {}

void Reporter::Add(const std::string &lfn, double ts, long long size) {
   std::lock_guard<std::mutex> lock(m_mx);
   if (m_queue.size() >= m_cfg.max_queue) {
      m_queue.pop_front();
      ++m_dropped;
   }
   m_queue.push_back(Access{lfn, ts, size});
}

void Reporter::Start() {
   std::thread([this] {
      const auto period = std::chrono::duration<double>(m_cfg.period_s);
      for (;;) {
         std::this_thread::sleep_for(period);
         Cycle();
      }
   }).detach();
}

void Reporter::Cycle() {
   std::vector<Access> batch;
   uint64_t dropped;
   {
      std::lock_guard<std::mutex> lock(m_mx);
      batch.assign(std::make_move_iterator(m_queue.begin()), std::make_move_iterator(m_queue.end()));
      m_queue.clear();
      dropped = m_dropped;
   }
   if (dropped != m_logged_dropped) {
      m_logged_dropped = dropped;
      Say("report queue full: " + std::to_string(dropped) + " accesses dropped so far", m_failing);
   }
   if (batch.empty()) return;
   if (!LoadToken()) {
      Requeue(batch, 0);
      Say("no token in " + m_cfg.token_file + ": accesses are kept (bounded) until there is one", true);
      return;
   }
   FillSizes(batch);
   const std::string headers = "Content-Type: application/json\r\nAuthorization: Bearer " + m_token + "\r\n";
   for (size_t from = 0; from < batch.size(); from += m_cfg.batch) {
      const size_t to = std::min(batch.size(), from + m_cfg.batch);
      HttpResult r = HttpRequest(m_cfg.target, "POST", m_cfg.target.path, headers, Body(batch, from, to),
                                 m_cfg.timeout_ms);
      const int s = r.status;
      if (s >= 200 && s < 300) {
         m_sent += to - from;
         if (m_failing) Say("reporting accesses works again (" + std::to_string(m_sent) + " sent)", false);
         continue;
      }
      if (s >= 400 && s < 500 && s != 401 && s != 403 && s != 408 && s != 429) {
         m_rejected += to - from;
         Say("the service refused " + std::to_string(to - from) + " accesses (HTTP " + std::to_string(s) +
             "): dropped: " + r.body.substr(0, 200), m_failing);
         continue;
      }
      if (s == 401 || s == 403) m_have_token = false;   // re-read the token file next cycle
      Requeue(batch, from);
      Say(s < 0 ? "reporting accesses failed: no answer within " + std::to_string(m_cfg.timeout_ms) + " ms"
                : "reporting accesses failed: HTTP " + std::to_string(s) + " " + r.body.substr(0, 200),
          true);
      return;
   }
}

// Sizes the queue does not know: ask for all first (the stats run in parallel), then wait for them under
// one deadline.
void Reporter::FillSizes(std::vector<Access> &batch) {
   if (!m_sizes) return;
   for (auto &a : batch) {
      if (a.size < 0) a.size = m_sizes->Get(a.lfn, 0, true);
   }
   const long long deadline = NowNs() + static_cast<long long>(m_cfg.size_wait_ms) * 1000000;
   for (auto &a : batch) {
      if (a.size >= 0) continue;
      const long long left_ms = (deadline - NowNs()) / 1000000;
      a.size = m_sizes->Get(a.lfn, static_cast<int>(std::max(0LL, left_ms)), true);
   }
}

bool Reporter::LoadToken() {
   FileId id;
   if (!StatId(m_cfg.token_file, id)) return m_have_token = false;
   if (m_have_token && id == m_token_id) return true;
   std::string text;
   if (!ReadFile(m_cfg.token_file, text)) return m_have_token = false;
   const size_t b = text.find_first_not_of(" \t\r\n");
   const size_t e = text.find_last_not_of(" \t\r\n");
   m_token = b == std::string::npos ? std::string() : text.substr(b, e - b + 1);
   m_token_id = id;
   return m_have_token = !m_token.empty() && m_token.find_first_of("\r\n") == std::string::npos;
}

std::string Reporter::Body(const std::vector<Access> &batch, size_t from, size_t to) const {
   const std::string site = JsonString(m_cfg.site);
   std::string out = "{\"accesses\": [";
   char num[64];
   for (size_t i = from; i < to; ++i) {
      const Access &a = batch[i];
      if (i > from) out += ", ";
      out += "{\"site\": " + site + ", \"lfn\": " + JsonString(a.lfn);
      std::snprintf(num, sizeof(num), ", \"ts\": %.3f", a.ts);
      out += num;
      if (a.size >= 0) out += ", \"size\": " + std::to_string(a.size);
      out += "}";
   }
   return out + "]}";
}

// Back to the front, oldest first; the bound still holds (the oldest are dropped first).
void Reporter::Requeue(std::vector<Access> &batch, size_t from) {
   std::lock_guard<std::mutex> lock(m_mx);
   m_queue.insert(m_queue.begin(), std::make_move_iterator(batch.begin() + static_cast<long>(from)),
                  std::make_move_iterator(batch.end()));
   while (m_queue.size() > m_cfg.max_queue) {
      m_queue.pop_front();
      ++m_dropped;
   }
}

// Log a change of state once, not every second: the first failure, a recovery, new drops.
void Reporter::Say(const std::string &what, bool failing) {
   const bool changed = failing != m_failing;
   m_failing = failing;
   if (changed || !failing || what.find("dropped") != std::string::npos) {
      m_log.Emsg("SmartcacheDecision", what.c_str());
   }
}

}  // namespace smartcache
