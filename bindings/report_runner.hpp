#pragma once
// `flare report`: runs flare.report for one run directory. No Lua header here.
#include <string>

namespace flare::lua {

struct ReportRequest {
  std::string run_dir;
  std::string out_path;  // "" = RUN_DIR/report.html
  bool term = false;     // print the terminal chart instead of writing HTML
  bool color = false;
};

// Returns the exit status: 0, or 1 with the error on stderr.
int run_report(const ReportRequest& request);

}  // namespace flare::lua
