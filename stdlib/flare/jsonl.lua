-- flare.jsonl: JSON-lines files as flare.recipe writes them (metrics.jsonl, checkpoints.jsonl).
--
--   jsonl.read(path) -> list of objects, or nil when the file does not exist
--   jsonl.drop_torn_tail(path) -> true when it removed a torn last line
--
-- One rule for damage: a last line with no newline that is not a whole JSON object is
-- torn (a run killed mid-write leaves one) and is skipped. Any other line that is not a
-- JSON object raises "PATH line N: why".
local M = {}

local json = require("flare.json")
local fs = require("flare.fs")

local function decode_object(line)
  local ok, value = pcall(json.decode, line)
  if not ok then return nil, tostring(value) end
  if type(value) ~= "table" or rawget(value, 1) ~= nil then return nil, "expected a JSON object" end
  return value
end

-- The byte offset where a torn last line starts, or nil when the text has none.
local function torn_tail_start(text)
  if text == "" or text:sub(-1) == "\n" then return nil end
  local start = (text:match("^.*()\n") or 0) + 1
  local line = text:sub(start)
  if not line:match("%S") or decode_object(line) then return nil end
  return start
end

function M.read(path)
  local text = fs.read_file(path)
  if text == nil then return nil end
  local torn = torn_tail_start(text)
  if torn then text = text:sub(1, torn - 1) end
  local rows, lines = json.decode_lines(text, {source = path})
  for i, row in ipairs(rows) do
    if type(row) ~= "table" or rawget(row, 1) ~= nil then
      error(string.format("%s line %d: expected a JSON object", path, lines[i]), 0)
    end
  end
  return rows
end

-- Before appending to a file that may end in a torn line: without this the next line
-- would be glued to the torn one and the file could no longer be read.
function M.drop_torn_tail(path)
  local text = fs.read_file(path)
  local torn = text and torn_tail_start(text)
  if not torn then return false end
  fs.write_file_atomic(path, text:sub(1, torn - 1))
  return true
end

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
return require("flare.args").checked(M, "flare.jsonl", {
  read = {"path:string"},
  drop_torn_tail = {"path:string"},
})
