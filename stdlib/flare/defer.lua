-- flare.defer(fn, name): run fn(reason) when the script ends, however it ends
-- (normal end, error, SIGINT, SIGTERM); last-in first-out. See flare.cleanup.
return require("flare.cleanup").defer
