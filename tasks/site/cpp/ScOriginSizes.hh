// smartcache decision plugin: file sizes from the origin (an XrdCl stat), kept in a bounded map.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "XrdCl/XrdClFileSystem.hh"

namespace smartcache {

class OriginSizes {
public:
   // hostport: the origin the cache reads from; stat_timeout_s: XrdCl's own timeout for one stat (a late
   // answer still fills the map); max_entries bounds the map; after a stat that did not answer within
   // the caller's wait, callers do not wait for `retry_s` seconds (the stat is still sent).
   OriginSizes(const std::string &hostport, int stat_timeout_s, size_t max_entries, double retry_s);

   // The size of lfn in bytes, or -1 when the origin has not said within wait_ms (or says it has none).
   // `patient` callers (off the open path) wait even while the origin is deemed slow.
   long long Get(const std::string &lfn, int wait_ms, bool patient = false);

   // Called when a stat answers (size -1: it failed).
   void Done(const std::string &lfn, long long size);

   size_t Known();

private:
   struct Pending {
      bool done = false;
      long long size = -1;
   };

   XrdCl::FileSystem m_fs;
   const uint16_t m_stat_timeout_s;
   const size_t m_max;
   const double m_retry_s;
   std::mutex m_mx;                     // guards the maps and every Pending
   std::condition_variable m_cv;        // notified when any stat answers
   std::unordered_map<std::string, long long> m_sizes;
   std::unordered_map<std::string, std::shared_ptr<Pending>> m_pending;   // one stat in flight per file
   std::atomic<long long> m_slow_until_ns{0};
};

}  // namespace smartcache
