// smartcache decision plugin: the parameters of `pfc.decisionlib <lib> <params>`.
#pragma once

#include <cstddef>
#include <string>

namespace smartcache {

struct Params {
   // the placement list
   std::string list;
   double reload_s = 5;
   bool default_answer = false;
   // the decide service
   std::string decide;
   std::string site;
   int timeout_ms = 250;
   double ttl_s = 300;
   double retry_s = 30;
   size_t max_answers = 100000;
   // file sizes from the origin (XrdCl stat)
   std::string origin;           // host:port
   int origin_timeout_ms = 100;  // how long an open waits for a size it does not know
   size_t max_sizes = 100000;
   // reporting opens answered from memory
   std::string token_file;       // reporting is on when this is given
   std::string report;           // URL of /access; default: decide's URL with /access for /decide
   double report_every_s = 1;
   size_t report_batch = 1000;
   size_t max_queue = 100000;
   int report_timeout_ms = 5000;
};

// Parse `key=value ...`; false with `err` on an unknown key, a bad value or a missing companion.
bool ParseParams(const char *text, Params &p, std::string &err);

// The /access URL reports go to (report=, else derived from decide=), or "" with `err`.
std::string ReportUrl(const Params &p, std::string &err);

}  // namespace smartcache
