-- flare.chat against the fixtures the C++ chat template test reads
-- (tests/text/chat_template_fixtures.json): training text and sampling prompts
-- are formatted by the same code in Lua and in the emulator.
local chat = flare.chat
local json = flare.json

local FIXTURES = "tests/text/chat_template_fixtures.json"
local cases = json.decode(assert(flare.fs.read_file(FIXTURES))).cases

-- Fixture errors count messages from 0; flare.chat counts them from 1.
local function lua_indices(message)
  return (message:gsub("messages%[(%d+)%]", function(i) return "messages[" .. (i + 1) .. "]" end))
end

local function error_text(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(type(err) == "table" and err.message or err)
end

describe("flare.chat", function()
  it("formats every fixture as the C++ template does", function()
    local checked = 0
    for _, c in ipairs(cases) do
      if c.prompt then
        assert.equal(c.prompt, chat.format(c.messages), c.name)
        assert.equal(c.prompt, chat.format(c.messages, {add_generation_prompt = true}), c.name)
        assert.equal(c.text, chat.format(c.messages, {add_generation_prompt = false}), c.name)
        checked = checked + 1
      end
      if c.split then
        local ex = chat.split(c.messages)
        assert.equal(c.split.prompt, ex.prompt, c.name)
        assert.equal(c.split.completion, ex.completion, c.name)
      end
    end
    assert.equal(4, checked)
  end)

  it("refuses what the template cannot render, naming messages[i].field from 1", function()
    local checked = 0
    for _, c in ipairs(cases) do
      if c.error then
        local want = lua_indices(c.error)
        local got = error_text(chat.format, c.messages)
        assert.truthy(got:find(want, 1, true), c.name .. ": " .. got .. " lacks " .. want)
        checked = checked + 1
      elseif c.split_error then
        local got = error_text(chat.split, c.messages)
        assert.truthy(got:find(lua_indices(c.split_error), 1, true), got)
        checked = checked + 1
      end
    end
    assert.equal(11, checked)
  end)

  it("ends a turn with chat.stop, which a training completion ends with", function()
    assert.equal("<|end|>", chat.stop)
    local ex = chat.split{{role = "user", content = "hi"}, {role = "assistant", content = "yo"}}
    assert.equal("yo" .. chat.stop, ex.completion)
    local wrong = error_text(chat.format, "text")
    assert.truthy(wrong:find("argument 'messages' must be a table", 1, true), wrong)
    local one = {{role = "user", content = "a"}}
    assert.truthy(error_text(chat.format, one, {add_generation_prompt = 1})
      :find("option 'add_generation_prompt' must be a boolean", 1, true))
  end)
end)
