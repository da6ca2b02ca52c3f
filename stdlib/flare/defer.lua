-- flare.defer(fn, name): run fn(reason) when the script ends, however it ends
-- (normal end, error, SIGINT, SIGTERM); last-in first-out. See flare.cleanup.
return require("flare.args").wrap(require("flare.cleanup").defer, "flare.defer",
  {"fn:function|table", "name:nil|string"})
