// smartcache decision plugin: file sizes from the origin (an asynchronous XrdCl stat, waited for up to a
// deadline), kept in a bounded map. The stat is asynchronous so that Decide() waits only as long as it
// chooses: XrdCl's own timeout is whole seconds, and an open must not wait that long for a feature.
#include "ScOriginSizes.hh"

#include <algorithm>
#include <chrono>

#include "ScCommon.hh"
#include "XrdCl/XrdClURL.hh"
#include "XrdCl/XrdClXRootDResponses.hh"

namespace smartcache {

namespace {

class StatHandler : public XrdCl::ResponseHandler {
public:
   StatHandler(OriginSizes *owner, std::string lfn) : m_owner(owner), m_lfn(std::move(lfn)) {}

   void HandleResponse(XrdCl::XRootDStatus *status, XrdCl::AnyObject *response) override {
      long long size = -1;
      if (status && status->IsOK() && response) {
         XrdCl::StatInfo *info = nullptr;
         response->Get(info);
         if (info) size = static_cast<long long>(info->GetSize());
      }
      delete status;
      delete response;
      m_owner->Done(m_lfn, size);   // the plugin (owner) lives as long as the server
      delete this;
   }

private:
   OriginSizes *m_owner;
   std::string m_lfn;
};

}  // namespace

OriginSizes::OriginSizes(const std::string &hostport, int stat_timeout_s, size_t max_entries, double retry_s)
   : m_fs(XrdCl::URL("root://" + hostport)),
     m_stat_timeout_s(static_cast<uint16_t>(std::max(1, std::min(stat_timeout_s, 600)))),
     m_max(std::max<size_t>(max_entries, 1)),
     m_retry_s(retry_s) {}

long long OriginSizes::Get(const std::string &lfn, int wait_ms, bool patient) {
   std::shared_ptr<Pending> pending;
   bool ask = false;
   {
      std::lock_guard<std::mutex> lock(m_mx);
      auto known = m_sizes.find(lfn);
      if (known != m_sizes.end()) return known->second;
      auto &slot = m_pending[lfn];
      if (!slot) {
         slot = std::make_shared<Pending>();
         ask = true;
      }
      pending = slot;
   }
   if (ask) {
      auto *handler = new StatHandler(this, lfn);
      XrdCl::XRootDStatus st = m_fs.Stat(lfn, handler, m_stat_timeout_s);
      if (!st.IsOK()) {          // not sent: the handler will never be called
         delete handler;
         Done(lfn, -1);
      }
   }
   const long long now = NowNs();
   if (wait_ms <= 0 || (!patient && now < m_slow_until_ns.load(std::memory_order_relaxed))) return -1;
   std::unique_lock<std::mutex> lock(m_mx);
   const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
   if (m_cv.wait_until(lock, until, [&] { return pending->done; })) return pending->size;
   if (!patient) m_slow_until_ns.store(now + static_cast<long long>(m_retry_s * 1e9), std::memory_order_relaxed);
   return -1;
}

void OriginSizes::Done(const std::string &lfn, long long size) {
   {
      std::lock_guard<std::mutex> lock(m_mx);
      auto it = m_pending.find(lfn);
      if (it != m_pending.end()) {
         it->second->done = true;
         it->second->size = size;
         m_pending.erase(it);
      }
      if (size >= 0) {
         // bounded: make room by forgetting an arbitrary entry (it is asked again if it comes back)
         if (m_sizes.size() >= m_max && !m_sizes.count(lfn)) m_sizes.erase(m_sizes.begin());
         m_sizes[lfn] = size;
      }
   }
   m_cv.notify_all();
}

size_t OriginSizes::Known() {
   std::lock_guard<std::mutex> lock(m_mx);
   return m_sizes.size();
}

}  // namespace smartcache
