// flare report [--term] [--out FILE] RUN_DIR: a run's curves as a self-contained
// HTML page (RUN_DIR/report.html) or, with --term, a chart on the terminal.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "report_runner.hpp"
#include "subcommand.hpp"

namespace {

int usage(const char* problem) {
  std::fprintf(stderr, "flare: report: %s\nusage: flare report [--term] [--out FILE] RUN_DIR\n",
               problem);
  return 2;
}

int report_main(int argc, char** argv) {
  flare::lua::ReportRequest request;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::printf(
          "usage: flare report [--term] [--out FILE] RUN_DIR\n\n"
          "Reads RUN_DIR/config.json and RUN_DIR/metrics.jsonl (as written by flare.recipe)\n"
          "and writes RUN_DIR/report.html: a plot per numeric metric against step, the\n"
          "config and the timings, in one file with no network access.\n\n"
          "  --term      print a Unicode chart of the main metric instead\n"
          "  --out FILE  write the HTML to FILE\n");
      return 0;
    }
    if (a == "--term") {
      request.term = true;
    } else if (a == "--out") {
      if (i + 1 >= argc) return usage("--out needs a file name");
      request.out_path = argv[++i];
    } else if (a.rfind("--out=", 0) == 0) {
      request.out_path = a.substr(6);
    } else if (!a.empty() && a[0] == '-') {
      return usage(("unknown option '" + a + "'").c_str());
    } else if (request.run_dir.empty()) {
      request.run_dir = a;
    } else {
      return usage(("unexpected argument '" + a + "'").c_str());
    }
  }
  if (request.run_dir.empty()) return usage("a run directory is required");
  const char* no_color = std::getenv("NO_COLOR");
  request.color = isatty(STDOUT_FILENO) && (no_color == nullptr || *no_color == '\0');
  return flare::lua::run_report(request);
}

}  // namespace

FLARE_SUBCOMMAND(report, "plot a run's metrics: flare report [--term] RUN_DIR", report_main);
