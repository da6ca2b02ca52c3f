-- flare.data: datasets from JSONL and CSV files, shuffled, split and batched the same
-- way for the same seed, with every file read recorded in the run.
--
--   local ds = flare.data.load("examples/data/addition.jsonl")  -- or .csv; {format =}
--   ds.rows       the rows (tables); ds.path, ds.format, ds.sha256, ds.bytes
--   local train, eval = flare.data.split(ds.rows, {eval = 0.1, seed = 0})  -- or eval = 200
--   for batch, at in flare.data.batches(train, {batch_size = 16, epochs = 2, seed = 0}) do
--     -- at = {epoch =, step =, index =}: step counts batches from 1 across epochs
--   end
--   flare.data.shuffle(rows, seed) -> a new list in a seeded order (rows untouched)
--
-- Files: JSONL is one JSON object per line (blank lines skipped). CSV follows RFC 4180:
-- comma-separated, fields in double quotes may hold commas, line breaks and "" for a
-- quote; CRLF or LF line ends; the first record names the columns (each row is a table
-- of column = text) unless {header = false} (then rows are lists). Errors name the file,
-- the line and the byte offset (0-based).
--
-- Provenance: each file read is recorded as {path, sha256, bytes, rows, format} in the
-- run's config.json under "data_files" (the run given as {run =}, else the flare.recipe run of
-- this script), so the run names exactly the data it trained on. flare.data.files_read()
-- lists them too.
local args = require("flare.args")
local fs = require("flare.fs")
local json = require("flare.json")
local rng = require("flare.tasks").rng

local M = {}
local files = {}

local function fail(path, line, offset, why)
  flare.error{code = "invalid_data",
    message = string.format("%s line %d (byte offset %d): %s", path, line, offset, why)}
end

-- The line number of byte offset `at` (0-based) in text.
local function line_of(text, at)
  local n = 1
  for _ in text:sub(1, at):gmatch("\n") do n = n + 1 end
  return n
end

function M.parse_jsonl(text, path)
  local rows, lines = json.decode_lines(text, {source = path})
  for i, row in ipairs(rows) do
    if type(row) ~= "table" or rawget(row, 1) ~= nil then
      local offset, n = 0, 1
      while n < lines[i] do
        offset = text:find("\n", offset + 1, true)
        n = n + 1
      end
      fail(path, lines[i], offset, "expected a JSON object")
    end
  end
  return rows
end

-- RFC 4180 records: a list of lists of field texts.
function M.parse_csv(text, path, o)
  o = o or {}
  local records, record, pos, n = {}, {}, 1, #text
  local function offset_error(at, why) fail(path, line_of(text, at - 1), at - 1, why) end
  if text:sub(1, 3) == "\239\187\191" then pos = 4 end  -- a UTF-8 byte order mark
  while pos <= n do
    local field
    if text:byte(pos) == 34 then  -- a quoted field
      local parts, at = {}, pos + 1
      while true do
        local q = text:find('"', at, true)
        if not q then offset_error(pos, "a quoted field is not closed") end
        parts[#parts + 1] = text:sub(at, q - 1)
        if text:byte(q + 1) == 34 then
          parts[#parts + 1] = '"'
          at = q + 2
        else
          pos = q + 1
          break
        end
      end
      field = table.concat(parts)
      local c = text:byte(pos)
      if c and c ~= 44 and c ~= 10 and not (c == 13 and text:byte(pos + 1) == 10) then
        offset_error(pos, "unexpected text after a closing quote (a field with a quote " ..
          "must be quoted whole, the quote written twice)")
      end
    else
      local stop = text:find("[,\r\n\"]", pos) or n + 1
      while text:byte(stop) == 13 and text:byte(stop + 1) ~= 10 do
        stop = text:find("[,\r\n\"]", stop + 1) or n + 1
      end
      if text:byte(stop) == 34 then
        offset_error(stop, "a quote inside an unquoted field (quote the field, write \"\")")
      end
      field = text:sub(pos, stop - 1)
      pos = stop
    end
    record[#record + 1] = field
    local c = text:byte(pos)
    if c == 44 then
      pos = pos + 1
      if pos > n then record[#record + 1] = "" end
    else
      if c == 13 then pos = pos + 1 end
      pos = pos + 1
      records[#records + 1] = record
      record = {}
    end
  end
  if #record > 0 then records[#records + 1] = record end
  if o.header == false then return records end
  local header = table.remove(records, 1)
  if not header then return {} end
  local seen = {}
  for _, name in ipairs(header) do
    if seen[name] then fail(path, 1, 0, "column '" .. name .. "' appears twice in the header") end
    seen[name] = true
  end
  local rows = {}
  for i, r in ipairs(records) do
    if #r == 1 and r[1] == "" then goto continue end  -- an empty line
    if #r ~= #header then
      local line = M.csv_record_line(text, i + 1)  -- counted again only for the error
      fail(path, line.line, line.offset, string.format("%d fields, the header has %d", #r,
        #header))
    end
    local row = {}
    for j, name in ipairs(header) do row[name] = r[j] end
    rows[#rows + 1] = row
    ::continue::
  end
  return rows
end

-- {line =, offset =} where CSV record k (1-based, the header is 1) starts.
function M.csv_record_line(text, k)
  local pos, line, record, quoted = 1, 1, 1, false
  while record < k and pos <= #text do
    local c = text:byte(pos)
    if c == 34 then
      quoted = not quoted
    elseif c == 10 then
      line = line + 1
      if not quoted then record = record + 1 end
    end
    pos = pos + 1
  end
  return {line = line, offset = pos - 1}
end

local function record(entry, run)
  files[#files + 1] = entry
  run = run or require("flare.recipe").current()
  if run and run.record_data then run:record_data(entry) end
end

function M.load(path, o)
  o = o or {}
  local format = o.format or (path:match("%.csv$") and "csv") or
    ((path:match("%.jsonl$") or path:match("%.ndjson$")) and "jsonl")
  if format ~= "jsonl" and format ~= "csv" then
    args.invalid("flare.data.load", "cannot tell the format of '" .. path ..
      "' from its name: pass {format = \"jsonl\"} or \"csv\"")
  end
  local text = fs.read_file(path)
  if text == nil then
    flare.error{code = "not_found", message = "flare.data.load: no such file: " .. path}
  end
  local rows = format == "csv" and M.parse_csv(text, path, o) or M.parse_jsonl(text, path)
  local ds = {path = path, format = format, rows = rows, sha256 = fs.sha256(text),
    bytes = #text}
  record({path = path, format = format, sha256 = ds.sha256, bytes = #text, rows = #rows}, o.run)
  return ds
end

function M.read_jsonl(path, o) return M.load(path, {format = "jsonl", run = o and o.run}).rows end

function M.read_csv(path, o)
  o = o or {}
  return M.load(path, {format = "csv", header = o.header, run = o.run}).rows
end

function M.files_read()
  local out = {}
  for i, f in ipairs(files) do out[i] = f end
  return out
end

-- Fisher-Yates with flare.tasks' Park-Miller generator: the same order on every machine.
function M.shuffle(rows, seed)
  local out = {}
  for i, r in ipairs(rows) do out[i] = r end
  local r = rng(seed or 0)
  for i = #out, 2, -1 do
    local j = r:int(1, i)
    out[i], out[j] = out[j], out[i]
  end
  return out
end

-- train, eval: the rows shuffled by seed, the last `eval` of them held out (a fraction
-- below 1, or a count).
function M.split(rows, o)
  o = o or {}
  local eval = o.eval or 0.1
  local n_eval = eval < 1 and math.floor(#rows * eval + 0.5) or math.floor(eval)
  if n_eval < 0 or n_eval > #rows then
    args.invalid("flare.data.split", string.format("option 'eval' asks for %d of %d rows",
      n_eval, #rows))
  end
  local order = o.shuffle == false and rows or M.shuffle(rows, o.seed)
  local train, held = {}, {}
  for i, r in ipairs(order) do
    if i <= #order - n_eval then train[#train + 1] = r else held[#held + 1] = r end
  end
  return train, held
end

-- An iterator of batches over `epochs` passes, each pass in its own seeded order
-- (seed + epoch - 1), so a resumed run can skip to a step and see the same batches.
function M.batches(rows, o)
  o = o or {}
  local size, epochs = o.batch_size or 8, o.epochs or 1
  if size < 1 then args.invalid("flare.data.batches", "option 'batch_size' must be >= 1") end
  local epoch, index, step, order = 1, 1, 0, nil
  return function()
    while epoch <= epochs do
      order = order or (o.shuffle == false and rows or M.shuffle(rows, (o.seed or 0) + epoch - 1))
      local left = #order - index + 1
      if left > 0 and (left >= size or not o.drop_last) then
        local batch = {}
        for i = index, math.min(#order, index + size - 1) do batch[#batch + 1] = order[i] end
        index = index + #batch
        step = step + 1
        return batch, {epoch = epoch, step = step, index = index - #batch}
      end
      epoch, index, order = epoch + 1, 1, nil
    end
    return nil
  end
end

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
return args.checked(M, "flare.data", {
  load = {"path:string", {"opts", {format = "string", header = "boolean", run = "table"}}},
  read_jsonl = {"path:string", {"opts", {run = "table"}}},
  read_csv = {"path:string", {"opts", {header = "boolean", run = "table"}}},
  parse_jsonl = {"text:string", "path:string"},
  parse_csv = {"text:string", "path:string", "opts:nil|table"},
  csv_record_line = {"text:string", "k:number"},
  files_read = {},
  shuffle = {"rows:table", "seed:nil|number"},
  split = {"rows:table", {"opts", {eval = "number", seed = "number", shuffle = "boolean"}}},
  batches = {"rows:table", {"opts", {batch_size = "integer", epochs = "integer", seed = "number",
    shuffle = "boolean", drop_last = "boolean"}}},
})
