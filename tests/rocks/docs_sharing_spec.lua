-- docs/sharing.md, run: every ```sh block in order in one bash session in an empty
-- folder (a block fenced ```sh exit=N must exit N), every ```lua block whose first line
-- is `-- file: NAME` written to NAME where the session stands at that point.
package.path = (os.getenv("FLARE_SOURCE_DIR") or ".") .. "/tests/rocks/?.lua;" .. package.path
local h = require("rocks_helpers")

local DOC = (os.getenv("FLARE_SOURCE_DIR") or ".") .. "/docs/sharing.md"

-- {{kind = "sh", text =, exit =} | {kind = "file", name =, text =}, ...}
local function blocks(doc)
  local out, cur = {}, nil
  for line in (doc .. "\n"):gmatch("([^\n]*)\n") do
    if cur then
      if line:match("^```%s*$") then
        local text = table.concat(cur.lines, "\n") .. "\n"
        if cur.kind == "sh" then
          out[#out + 1] = {kind = "sh", text = text, exit = cur.exit}
        elseif cur.kind == "lua" and cur.lines[1] and cur.lines[1]:match("^%-%- file: ") then
          out[#out + 1] = {kind = "file", name = cur.lines[1]:match("^%-%- file: (%S+)"),
            text = text}
        end
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    else
      local lang, info = line:match("^```(%w*)(.*)$")
      if lang then
        cur = {kind = lang, lines = {}, exit = tonumber(info:match("exit=(%d+)")) or 0}
      end
    end
  end
  assert(cur == nil, DOC .. ": a code block is not closed")
  return out
end

-- One bash script: sh blocks as they are (one expected to fail in a subshell that checks
-- its exit status), files by here-documents.
local function script(list)
  local parts = {"set -eo pipefail"}
  for i, b in ipairs(list) do
    if b.kind == "file" then
      parts[#parts + 1] = "cat > " .. h.quote(b.name) .. " <<'FLARE_DOC_FILE'\n" .. b.text ..
        "FLARE_DOC_FILE"
    elseif b.exit == 0 then
      -- In the session itself, so that a `cd` carries over; set -e stops at a failure.
      parts[#parts + 1] = string.format("echo '### docs/sharing.md block %d' >&2\n%s", i, b.text)
    else
      parts[#parts + 1] = string.format("echo '### docs/sharing.md block %d' >&2\nset +e\n" ..
        "(set -eo pipefail\n%s)\nstatus=$?\nset -e\nif [ \"$status\" != %d ]; then echo " ..
        "\"block %d exited $status, expected %d\" >&2; exit 1; fi", i, b.text, b.exit, i, b.exit)
    end
  end
  return table.concat(parts, "\n") .. "\n"
end

describe("docs/sharing.md", function()
  h.require_luarocks()
  local list = blocks(h.read(DOC))

  it("has the commands of each step", function()
    local sh = 0
    for _, b in ipairs(list) do if b.kind == "sh" then sh = sh + 1 end end
    assert.truthy(sh >= 8, "only " .. sh .. " sh blocks")
    local text = h.read(DOC)
    for _, needed in ipairs({"flare new module",
      "luarocks%-admin %-%-lua%-version 5%.1 make%-manifest", "%-%-pin", "flare run %-%-replay",
      "config%.json"}) do
      assert.matches(needed, text)
    end
  end)

  it("runs every command on the page", function()
    local ws = h.workspace()
    local work = ws .. "/work"
    h.write(work .. "/.keep", "")
    local status, out, err = h.sh(ws, work, script(list), false)
    assert.equal(0, status, "the page's commands failed:\nstdout:\n" .. out .. "\nstderr:\n" .. err)
    -- What the page says the commands print.
    assert.matches("require searches, in order:", out)
    assert.matches("flare%-evals 1%.0\n", out)
    assert.matches("flare%-evals 1%.1\n", out)
    assert.matches("flare%-evals\t1%.0%-1\n", out)
    assert.matches('%["flare%-evals"%] = "1%.0%-1"', out)
    assert.matches("flare: warning: luarocks%.lock pins flare%-evals 1%.0%-1, but 1%.1%-1 is " ..
      "installed", err)
    assert.matches("module flare_evals changed", err)
    assert.matches("replaying runs/eval/", out)
  end)
end)
