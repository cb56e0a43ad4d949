-- `luaisolate check`: exit codes, text and JSON output, --explain; and the
-- JSON it prints with (lua-cjson, through cli.json_encode). The CLI is called in-process with io.stdout
-- and io.stderr swapped for collectors.
local cli = require "isolate.cli"
local policy = require "isolate.policy"
local support = require "support"
local decode = support.decode_json

-- ---- helpers ----------------------------------------------------------------

-- code, stdout, stderr of cli.check(argv)
local function run(argv)
  local ok, code, out, err = support.captured(cli.check, argv)
  assert(ok, code)
  return code, out, err
end

local function lines(s)
  local out = {}
  for line in s:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

local function tmpfile(text)
  local base = os.tmpname() -- created empty; the policy goes next to it
  os.remove(base)
  local path = base .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- ---- exit codes and text ------------------------------------------------------

describe("luaisolate check", function()
  local bad, broken
  before_each(function()
    bad = tmpfile('return {\n  fs = { { read = 3 } },\n  limits = { mem = "1.5GiB" },\n}\n')
    broken = tmpfile("return {\n  x = io.stdout,\n}\n")
  end)
  after_each(function()
    os.remove(bad)
    os.remove(broken)
  end)

  it("exits 0 and prints OK for valid policies, names or paths", function()
    local path = policy.load("web-scraper").source
    local code, out, err = run({ "compute-only", path })
    assert.are.equal(0, code)
    assert.are.same({ "OK compute-only", "OK " .. path }, lines(out))
    assert.are.equal("", err)
  end)

  it("exits 1 and prints every problem as <file>: <path>: <message>", function()
    local code, out = run({ "compute-only", bad })
    assert.are.equal(1, code)
    local l = lines(out)
    assert.are.equal(4, #l)
    assert.are.equal("OK compute-only", l[1])
    assert.are.equal("FAIL " .. bad, l[2])
    local escaped = bad:gsub("%p", "%%%0")
    local seen = {}
    for i = 3, 4 do
      local path, message = l[i]:match("^" .. escaped .. ": ([%w_.%[%]]+): (.+)$")
      assert.is_truthy(path, l[i])
      assert.is_true(#message > 0)
      seen[#seen + 1] = path
    end
    table.sort(seen)
    assert.are.same({ "fs[1].read", "limits.mem" }, seen)
  end)

  it("fails unknown names and files that do not load, saying where", function()
    local code, out = run({ "no-such-policy", broken })
    assert.are.equal(1, code)
    local l = lines(out)
    assert.are.equal("FAIL no-such-policy", l[1])
    assert.are.equal("no-such-policy: ", l[2]:sub(1, 16))
    assert.are.equal("FAIL " .. broken, l[3])
    assert.are.equal(broken .. ":2:", l[4]:sub(1, #broken + 3))
  end)

  it("exits 2 on usage errors, with the usage on stderr", function()
    for _, argv in ipairs({ {}, { "--bogus", "compute-only" }, { "--explain" },
                            { "--backend", "nope", "compute-only" }, { "--backend" },
                            { "--backend=vm", "compute-only" }, { 1 } }) do
      local code, out, err = run(argv)
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.is_truthy(err:find("usage:", 1, true))
    end
    assert.are.equal(2, (run("compute-only")))
  end)

  it("prints help on --help and exits 0", function()
    local code, out, err = run({ "--help" })
    assert.are.equal(0, code)
    assert.is_truthy(out:find("usage:", 1, true))
    assert.are.equal("", err)
  end)

  it("treats everything after -- as a target", function()
    local code, out = run({ "--", "--explain" })
    assert.are.equal(1, code)
    assert.are.equal("FAIL --explain", lines(out)[1])
  end)
end)

describe("luaisolate check --explain", function()
  it("prints each rule with its layer under a valid target", function()
    local code, out = run({ "--explain", "readonly-fs" })
    assert.are.equal(0, code)
    local l = lines(out)
    assert.are.equal("OK readonly-fs", l[1])
    local rows = policy.load("readonly-fs"):explain()
    for _, row in ipairs(rows) do
      local found = false
      for _, line in ipairs(l) do
        if line:find(row.rule, 1, true) and line:find(row.layer, 1, true) then found = true end
      end
      -- a long rule sits on its own line, with layer and note below it
      if not found then
        for i, line in ipairs(l) do
          if line == "  " .. row.rule and l[i + 1]:find(row.layer, 1, true) then found = true end
        end
      end
      assert.is_true(found, row.rule)
    end
  end)

  it("uses --backend and prints no table for invalid targets", function()
    local bad = tmpfile("return { fss = 1 }")
    local code, out = run({ "--explain", "--backend=process", "ml-inference", bad })
    os.remove(bad)
    assert.are.equal(1, code)
    local l = lines(out)
    assert.are.equal("OK ml-inference", l[1])
    local rows = policy.load("ml-inference"):explain("process")
    assert.are.equal("landlock", rows[2].layer)
    assert.truthy(out:find("  landlock  ", 1, true))
    assert.are.equal("FAIL " .. bad, l[#l - 1])
    assert.are.equal(bad .. ": fss: ", l[#l]:sub(1, #bad + 7))
  end)

  it("says a backend this build cannot run explains nothing, and fails", function()
    local ok = require("isolate.core").backend_check("microvm")
    if ok then return print("SKIP: this build runs microvm cells") end
    local code, out, err = run({ "--explain", "--backend=microvm", "ml-inference" })
    assert.are.equal(1, code)
    assert.are.equal("OK ml-inference", lines(out)[1])
    assert.is_falsy(out:find("  none  ", 1, true)) -- no table of "none"
    assert.truthy(err:find("microvm", 1, true))
    code, out = run({ "--json", "--mode", "hardened", "--backend", "microvm", "compute-only" })
    assert.are.equal(1, code)
    local doc = decode(out)
    assert.is_false(doc.ok)
    assert.are.same({ "microvm", false }, { doc.backend.name, doc.backend.available })
  end)
end)

describe("luaisolate check --json", function()
  it("prints one document with results in order", function()
    local bad = tmpfile("return { fs = { { read = 3 } }, version = 2 }")
    local code, out, err = run({ "--json", "compute-only", bad, "no-such-policy" })
    os.remove(bad)
    assert.are.equal(1, code)
    assert.are.equal("", err)
    local doc = decode(out)
    assert.is_false(doc.ok)
    assert.are.equal(3, #doc.results)
    local ok, invalid, unknown = doc.results[1], doc.results[2], doc.results[3]
    assert.are.same({ "compute-only", true, {} }, { ok.target, ok.ok, ok.problems })
    assert.is_truthy(ok.source:find("compute-only.lua", 1, true))
    assert.is_nil(ok.explain)
    assert.are.same({ bad, false }, { invalid.target, invalid.ok })
    local paths = {}
    for i, p in ipairs(invalid.problems) do
      assert.are.equal("string", type(p.message))
      paths[i] = p.path
    end
    table.sort(paths)
    assert.are.same({ "fs[1].read", "version" }, paths)
    assert.are.same({ "no-such-policy", false }, { unknown.target, unknown.ok })
    assert.are.equal(1, #unknown.problems)
    assert.is_truthy(out:find('"problems":[]', 1, true))
  end)

  it("stays valid JSON for hostile names and file contents", function()
    local bad = tmpfile('return { fs = { { read = "/x\255\1" } }, ["k\192"] = 1 }')
    local code, out = run({ "--json", "no\255such\0name", bad })
    os.remove(bad)
    assert.are.equal(1, code)
    assert.is_truthy(utf8.len(out), "output is not UTF-8")
    assert.are.equal("\n", out:sub(-1))
    assert.is_nil(out:sub(1, -2):find("[%z\1-\31]"), "a raw control character")
    local doc = decode(out)
    assert.are.equal(2, #doc.results)
    assert.is_false(doc.results[1].ok)
    assert.is_false(doc.results[2].ok)
    assert.is_true(#doc.results[2].problems >= 1)
  end)

  it("includes explain rows with --explain, and ok=true when all are valid", function()
    local code, out = run({ "--json", "--explain", "web-scraper" })
    assert.are.equal(0, code)
    local doc = decode(out)
    assert.is_true(doc.ok)
    local rows = doc.results[1].explain
    local want = policy.load("web-scraper"):explain()
    assert.are.equal(#want, #rows)
    for i, r in ipairs(rows) do
      assert.are.equal(want[i].layer, r.layer) -- this host's layers
      assert.are.equal("string", type(r.rule))
      assert.are.equal("string", type(r.note))
    end
  end)
end)

-- ---- the encoder ------------------------------------------------------------------

describe("cli.json_encode (lua-cjson)", function()
  local encode, array = cli.json_encode, cli.json_array

  it("escapes control characters and keeps the output valid UTF-8", function()
    local s = 'a"b\\c\n\t\r\b\f\1\31\127/é'
    assert.are.equal(s, decode(encode(s)))
    assert.is_nil(encode(s):find("[%z\1-\31]"))
    for _, t in ipairs({ "/a/b", "\\/", "\\\\/x", "/\\" }) do
      assert.are.equal(t, decode(encode(t)))
    end
    assert.are.equal('"/usr/share"', encode("/usr/share"))
    local bad = encode({ ["k\255"] = "\255x\192" })
    assert.is_truthy(utf8.len(bad), bad)
    assert.are.same({ ["k\u{FFFD}"] = "\u{FFFD}x\u{FFFD}" }, decode(bad))
  end)

  it("writes numbers that read back exactly, and refuses NaN and infinity", function()
    for _, x in ipairs({ 3, -7, 0.1, 0.1 + 0.2, -2.5e-300, 2 ^ 60, 1 / 3,
                         math.maxinteger, math.mininteger, 123456789012345 }) do
      local got = decode(encode(x))
      assert.are.equal(x, got, encode(x))
      if math.type(x) == "integer" then assert.are.equal("integer", math.type(got)) end
    end
    for _, v in ipairs({ 0 / 0, math.huge, -math.huge }) do
      assert.is_false(pcall(encode, v))
      assert.is_false(pcall(encode, { x = { v } }))
    end
  end)

  it("writes marked empty tables as [] and unmarked ones as {}", function()
    assert.are.equal("[]", encode(array({})))
    assert.are.equal("[]", encode(array()))
    assert.are.equal("[]", encode(require("isolate").array({})))
    assert.are.equal("{}", encode({}))
    assert.are.equal("[1,2,3]", encode({ 1, 2, 3 }))
    assert.are.equal('{"a":[[],{}]}', encode({ a = { array(), {} } }))
    assert.are.equal("null", encode(nil))
  end)

  it("cannot be made to splice raw text by a string", function()
    for _, s in ipairs({ "\255[]\255", '"\255]\255"', "\2551\255", "a\255b" }) do
      local want = s:gsub("\255", "\u{FFFD}")
      assert.are.same({ want }, decode(encode({ s })))
    end
  end)

  it("refuses what JSON cannot hold, and writes a mixed table as an object", function()
    assert.are.same({ ["1"] = 1, x = 2 }, decode(encode({ [1] = 1, x = 2 })))
    assert.is_false(pcall(encode, { [1000] = 1 }))
    assert.is_false(pcall(encode, print))
  end)
end)
