-- The documentation: the man pages render with no groff warning, the
-- luaisolate(1) page names every option the command line's argparse
-- parsers define (and every command), and the LDoc API reference builds
-- with no warning. ctest passes the programs as ISOLATE_GROFF and
-- ISOLATE_LDOC (cmake/tests.cmake).
local support = require "support"
local cli = require "isolate.cli"

local SOURCE_DIR = os.getenv("ISOLATE_SOURCE_DIR") or "."
local GROFF = os.getenv("ISOLATE_GROFF") or "groff"
local LDOC = os.getenv("ISOLATE_LDOC") or "ldoc"
local q = support.quote

local PAGES = { "doc/luaisolate.1", "doc/luaisolate-policy.5" }

-- exit code and everything the command printed (stdout and stderr).
local function shell(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

-- The page's text as a reader sees the words: escapes undone, fonts gone.
local function page_words(path)
  local src = assert(support.slurp(SOURCE_DIR .. "/" .. path))
  src = src:gsub("\\f[BIRP]", ""):gsub("\\%-", "-"):gsub("\\%(aq", "'")
  return " " .. src:gsub("\n", " ") .. " "
end

-- Does the option appear as a word of its own ("-e" is not in "--explain")?
local function names(text, word)
  return text:find("[^%w%-]" .. word:gsub("%p", "%%%0") .. "[^%w%-]") ~= nil
end

describe("the man pages", function()
  for _, page in ipairs(PAGES) do
    it("render with no groff warning: " .. page, function()
      local code, out = shell(string.format("%s -ww -z -man %s", q(GROFF),
                                            q(SOURCE_DIR .. "/" .. page)))
      assert.are.equal(0, code, out)
      assert.are.equal("", out)
    end)
  end

  it("name every option of every command in luaisolate(1)", function()
    local text = page_words("doc/luaisolate.1")
    local count = 0
    for command, parser in pairs(cli.parsers()) do
      for _, option in ipairs(parser._options) do
        for _, alias in ipairs(option._aliases) do
          assert.is_true(names(text, alias), (command .. " " .. alias):gsub("^ ", ""))
          count = count + 1
        end
      end
    end
    assert.is_true(count >= 12, "found only " .. count .. " options")
    for _, command in ipairs(cli.COMMANDS) do
      assert.is_true(names(text, command), command)
    end
  end)

  it("are checked by a test that can fail", function()
    local text = page_words("doc/luaisolate.1")
    assert.is_false(names(text, "--no-such-option"))
    assert.is_false(names(text, "-x")) -- not a word of its own in "--explain"
  end)

  it("describe every policy field and template in luaisolate-policy(5)", function()
    local text = page_words("doc/luaisolate-policy.5")
    for _, field in ipairs({ "version", "extends", "imports", "fs", "net", "capabilities",
                             "limits", "syscalls", "read", "write", "allow", "deny",
                             "connect", "bind" }) do
      assert.is_true(names(text, field), field)
    end
    for _, limit in ipairs(require("isolate.rules").LIMIT_KEYS) do
      assert.is_true(names(text, limit), limit)
    end
    local dir = io.popen("ls " .. q(SOURCE_DIR .. "/policies"))
    for file in dir:lines() do
      local name = file:match("^(.*)%.lua$")
      if name then assert.is_true(names(text, name), name) end
    end
    dir:close()
  end)
end)

describe("the API reference", function()
  it("builds with LDoc and no warning", function()
    local out_dir = os.tmpname()
    os.remove(out_dir)
    local code, out = shell(string.format("cd %s && %s --fatalwarnings -c doc/config.ld -d %s doc",
                                          q(SOURCE_DIR), q(LDOC), q(out_dir)))
    local html = support.slurp(out_dir .. "/index.html")
    os.execute("rm -rf " .. q(out_dir))
    assert.are.equal(0, code, out)
    assert.is_falsy(out:lower():find("warning", 1, true), out)
    assert.is_truthy(html and html:find("Cell:exec", 1, true))
  end)
end)
