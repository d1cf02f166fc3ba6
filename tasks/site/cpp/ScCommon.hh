// smartcache decision plugin: small helpers shared by its parts (header only).
#pragma once

#include <sys/stat.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

namespace smartcache {

using Clock = std::chrono::steady_clock;

inline long long NowNs() {
   return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Epoch seconds: the time of an access as the service records it (ts=).
inline double WallSeconds() {
   return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The key both the list and Decide() use: no opaque CGI, no duplicate slashes, no trailing blanks.
inline std::string Normalize(const std::string &path) {
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

inline std::string UrlEncode(const std::string &s) {
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

// A JSON string literal (quotes included): LFNs are bytes from clients, so escape everything JSON asks.
inline std::string JsonString(const std::string &s) {
   std::string out = "\"";
   for (unsigned char c : s) {
      if (c == '"' || c == '\\') {
         out.push_back('\\');
         out.push_back(static_cast<char>(c));
      } else if (c < 0x20) {
         char buf[8];
         std::snprintf(buf, sizeof(buf), "\\u%04x", c);
         out += buf;
      } else {
         out.push_back(static_cast<char>(c));
      }
   }
   out.push_back('"');
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

inline bool StatId(const std::string &path, FileId &id) {
   struct stat st;
   if (stat(path.c_str(), &st) != 0) return false;
   id.dev = st.st_dev;
   id.ino = st.st_ino;
   id.size = st.st_size;
   id.mtime_ns = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
   return true;
}

inline bool ReadFile(const std::string &path, std::string &out) {
   std::ifstream in(path, std::ios::binary);
   if (!in) return false;
   out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
   return !in.bad();
}

}  // namespace smartcache
