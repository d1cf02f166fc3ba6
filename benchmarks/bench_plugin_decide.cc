// Times XrdPfc::Decision::Decide() of the smartcache plugin, loaded the way XCache loads it (dlopen,
// XrdPfcGetDecision, ConfigDecision), on this thread. Driven by bench_plugin_decide.py.
//
//   bench_plugin_decide LIB 'PARAMS' MODE N LFN
//     MODE same:   Decide(LFN) N times (list hits, or one question and N-1 cached answers)
//     MODE unique: Decide(LFN + i) for i < N (a question per call, unless the service is deemed down)
// Prints one JSON line: calls, admitted, p50/p90/p99/mean/max in microseconds.
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "XrdOss/XrdOss.hh"
#include "XrdPfc/XrdPfcDecision.hh"
#include "XrdSys/XrdSysError.hh"
#include "XrdSys/XrdSysLogger.hh"

// Decide() gets the cache's storage but the plugin never touches it: a storage that refuses everything.
class NoOss : public XrdOss {
public:
   XrdOssDF *newDir(const char *) override { return nullptr; }
   XrdOssDF *newFile(const char *) override { return nullptr; }
   int Chmod(const char *, mode_t, XrdOucEnv *) override { return -ENOTSUP; }
   int Create(const char *, const char *, mode_t, XrdOucEnv &, int) override { return -ENOTSUP; }
   int Init(XrdSysLogger *, const char *) override { return 0; }
   int Mkdir(const char *, mode_t, int, XrdOucEnv *) override { return -ENOTSUP; }
   int Remdir(const char *, int, XrdOucEnv *) override { return -ENOTSUP; }
   int Rename(const char *, const char *, XrdOucEnv *, XrdOucEnv *) override { return -ENOTSUP; }
   int Stat(const char *, struct stat *, int, XrdOucEnv *) override { return -ENOTSUP; }
   int Truncate(const char *, unsigned long long, XrdOucEnv *) override { return -ENOTSUP; }
   int Unlink(const char *, int, XrdOucEnv *) override { return -ENOTSUP; }
};

int main(int argc, char **argv) {
   if (argc != 6) {
      std::fprintf(stderr, "usage: %s LIB PARAMS same|unique N LFN\n", argv[0]);
      return 2;
   }
   void *h = dlopen(argv[1], RTLD_NOW);
   if (!h) { std::fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
   using Factory = XrdPfc::Decision *(*)(XrdSysError &);
   auto factory = reinterpret_cast<Factory>(dlsym(h, "XrdPfcGetDecision"));
   if (!factory) { std::fprintf(stderr, "no XrdPfcGetDecision\n"); return 1; }
   XrdSysLogger logger(STDERR_FILENO, 0);
   XrdSysError log(&logger, "bench_");
   XrdPfc::Decision *d = factory(log);
   d->ConfigDecision(argv[2]);
   const bool unique = std::string(argv[3]) == "unique";
   const int n = std::atoi(argv[4]);
   const std::string lfn = argv[5];
   NoOss oss;
   std::vector<double> us;
   us.reserve(n);
   int admitted = 0;
   for (int i = 0; i < n; ++i) {
      const std::string name = unique ? lfn + std::to_string(i) + ".root" : lfn;
      const auto t0 = std::chrono::steady_clock::now();
      admitted += d->Decide(name, oss) ? 1 : 0;
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
   }
   std::vector<double> s = us;
   std::sort(s.begin(), s.end());
   auto q = [&](double f) { return s[std::min(s.size() - 1, static_cast<size_t>(f * s.size()))]; };
   double mean = 0;
   for (double x : us) mean += x;
   mean /= us.size();
   std::printf("{\"calls\": %d, \"admitted\": %d, \"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, "
               "\"mean_us\": %.2f, \"max_us\": %.2f}\n", n, admitted, q(0.5), q(0.9), q(0.99), mean, s.back());
   std::fflush(stdout);
   std::_Exit(0);   // the plugin's threads live as long as the process, as in XCache
}
