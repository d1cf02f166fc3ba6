// smartcache decision plugin: the parameters of `pfc.decisionlib <lib> <params>`.
#include "ScParams.hh"

#include <sstream>
#include <stdexcept>

namespace smartcache {

namespace {

bool Flag(const std::string &v) { return v == "1" || v == "true" || v == "yes"; }

size_t Count(const std::string &v) {
   const unsigned long n = std::stoul(v);
   if (n == 0) throw std::invalid_argument("must be positive");
   return static_cast<size_t>(n);
}

bool Set(Params &p, const std::string &k, const std::string &v) {
   if (k == "list") p.list = v;
   else if (k == "reload") p.reload_s = std::stod(v);
   else if (k == "default") p.default_answer = Flag(v);
   else if (k == "decide") p.decide = v;
   else if (k == "site") p.site = v;
   else if (k == "timeout_ms") p.timeout_ms = std::stoi(v);
   else if (k == "ttl") p.ttl_s = std::stod(v);
   else if (k == "retry") p.retry_s = std::stod(v);
   else if (k == "max_answers") p.max_answers = Count(v);
   else if (k == "origin") p.origin = v;
   else if (k == "origin_timeout_ms") p.origin_timeout_ms = std::stoi(v);
   else if (k == "max_sizes") p.max_sizes = Count(v);
   else if (k == "token_file") p.token_file = v;
   else if (k == "report") p.report = v;
   else if (k == "report_every") p.report_every_s = std::stod(v);
   else if (k == "report_batch") p.report_batch = Count(v);
   else if (k == "max_queue") p.max_queue = Count(v);
   else if (k == "report_timeout_ms") p.report_timeout_ms = std::stoi(v);
   else return false;
   return true;
}

}  // namespace

bool ParseParams(const char *text, Params &p, std::string &err) {
   std::istringstream in(text ? text : "");
   std::string word;
   while (in >> word) {
      size_t eq = word.find('=');
      if (eq == std::string::npos) { err = "expected key=value, got '" + word + "'"; return false; }
      std::string k = word.substr(0, eq), v = word.substr(eq + 1);
      try {
         if (!Set(p, k, v)) { err = "unknown parameter '" + k + "'"; return false; }
      } catch (const std::exception &) {
         err = "bad value for '" + k + "': '" + v + "'";
         return false;
      }
   }
   if (p.list.empty() && p.decide.empty()) { err = "give list=PATH and/or decide=URL"; return false; }
   if (!p.origin.empty() && p.origin.find(':') == std::string::npos) {
      err = "origin must be HOST:PORT, got '" + p.origin + "'";
      return false;
   }
   if (!p.report.empty() && p.token_file.empty()) { err = "report=URL needs token_file=PATH"; return false; }
   if (!p.token_file.empty() && p.site.empty()) { err = "reporting accesses needs site=NAME"; return false; }
   if (p.report_every_s <= 0) { err = "report_every must be positive"; return false; }
   return true;
}

std::string ReportUrl(const Params &p, std::string &err) {
   if (!p.report.empty()) return p.report;
   const std::string tail = "/decide";
   const std::string &d = p.decide;
   if (d.size() > tail.size() && d.compare(d.size() - tail.size(), tail.size(), tail) == 0) {
      return d.substr(0, d.size() - tail.size()) + "/access";
   }
   err = d.empty() ? "token_file without decide=URL needs report=URL"
                   : "cannot derive the /access URL from decide=" + d + ": give report=URL";
   return "";
}

}  // namespace smartcache
