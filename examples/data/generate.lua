-- Writes the example data sets of this folder from flare.tasks' seeded generators (the
-- same bytes on every machine; nothing is downloaded):
--
--   build/flare run examples/data/generate.lua [DIR]      # DIR defaults to examples/data
local dir = arg and arg[1] or "examples/data"
local sets = {
  {"vowels", 2000, {}},
  {"addition", 1000, {digits = 1}},
  {"reverse", 1000, {min_len = 3, max_len = 5}},
}
for _, s in ipairs(sets) do
  local opts = {n = s[2], seed = 0}
  for k, v in pairs(s[3]) do opts[k] = v end
  local r = flare.tasks.export(s[1], dir .. "/" .. s[1] .. ".jsonl", opts)
  print(string.format("%-28s %5d rows  sha256 %s", r.path, r.rows, r.sha256))
end
-- The same addition problems as CSV (RFC 4180), for flare.data.read_csv.
local rows = flare.data.read_jsonl(dir .. "/addition.jsonl")
local lines = {"prompt,completion"}
for i = 1, 200 do lines[#lines + 1] = string.format('"%s",%s', rows[i].prompt,
  rows[i].completion) end
flare.fs.write_file_atomic(dir .. "/addition.csv", table.concat(lines, "\r\n") .. "\r\n")
print(string.format("%-28s %5d rows", dir .. "/addition.csv", 200))
