-- flare.report.cli: `flare report [--term] [--out FILE] RUN_DIR`; returns the text to print.
local load = require("flare.report.load")

return function(opts)
  local run = load.load(opts.dir)
  if opts.term then
    return require("flare.report.term").term_summary(run, { color = opts.color })
  end
  return "wrote " .. require("flare.report.html").write_html(run, opts.out)
end
