// smartcache decision plugin: opens the service did not see (answered from memory) are queued and POSTed
// in batches to its /access route by a background thread.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "ScCommon.hh"
#include "ScHttp.hh"

class XrdSysError;

namespace smartcache {

class OriginSizes;

struct ReporterConfig {
   HttpTarget target;            // POST target (the service's /access)
   std::string site;
   std::string token_file;       // holds the bearer token; re-read when the file changes
   size_t max_queue = 100000;    // a full queue drops its oldest access (counted)
   size_t batch = 1000;          // accesses per POST
   double period_s = 1.0;
   int timeout_ms = 5000;        // one POST
   int size_wait_ms = 2000;      // how long one cycle waits for the origin's sizes
};

struct Access {
   std::string lfn;
   double ts;
   long long size;               // -1: not known yet (the reporter asks the origin)
};

class Reporter {
public:
   Reporter(XrdSysError &log, ReporterConfig cfg, OriginSizes *sizes);

   // Queue one access; never blocks on I/O (Decide() calls it).
   void Add(const std::string &lfn, double ts, long long size);

   // The background thread (detached: the plugin lives as long as the server).
   void Start();

private:
   void Cycle();
   void FillSizes(std::vector<Access> &batch);
   bool LoadToken();
   std::string Body(const std::vector<Access> &batch, size_t from, size_t to) const;
   void Requeue(std::vector<Access> &batch, size_t from);
   void Say(const std::string &what, bool failing);

   XrdSysError &m_log;
   const ReporterConfig m_cfg;
   OriginSizes *m_sizes;         // may be null (no origin= given: no sizes)

   std::mutex m_mx;              // guards m_queue and m_dropped
   std::deque<Access> m_queue;
   uint64_t m_dropped = 0;

   // the thread's own
   std::string m_token;
   FileId m_token_id;
   bool m_have_token = false;
   bool m_failing = false;
   uint64_t m_logged_dropped = 0;
   uint64_t m_sent = 0, m_rejected = 0;
};

}  // namespace smartcache
