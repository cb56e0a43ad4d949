-- scripts/check_layers.lua on the small trees beside this file (ctest
-- `layers_checker`): each kind of violation must fail, a clean tree pass.
-- Run from the source root.
local check = dofile("scripts/check_layers.lua")
local fixtures = "spec/layers/"

local function kinds(list)
  local out = {}
  for _, v in ipairs(list) do out[#out + 1] = v.kind end
  table.sort(out)
  return out
end

local function sh(cmd)
  local ok, how, code = os.execute(cmd .. " >/dev/null 2>&1")
  return ok and 0 or (how == "exit" and code or 128 + code)
end

local function tmpdir()
  local p = io.popen("mktemp -d")
  local d = p:read("l")
  p:close()
  return d
end

local function write(path, text)
  os.execute("mkdir -p '" .. path:match("^(.*)/") .. "'")
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function lines(n, head)
  local t = { head or "/* a source file */" }
  for i = 2, n do t[i] = "int x" .. i .. ";" end
  return table.concat(t, "\n") .. "\n"
end

describe("check_layers", function()
  it("passes a tree whose includes all point down", function()
    -- relative paths, the worker subfolder, a generated header and a
    -- system header included
    assert.same({}, check.check(fixtures .. "clean"))
  end)

  it("fails an include that points up, naming file and line", function()
    local found = check.check_layers(fixtures .. "up")
    assert.same({ "up" }, kinds(found))
    assert.equal("src/kernel/confine.c", found[1].file)
    assert.equal(3, found[1].line)
  end)

  it("resolves a relative include before judging it", function()
    local found = check.check_layers(fixtures .. "up_relative")
    assert.same({ "up" }, kinds(found))
    assert.equal("src/python/guest.c", found[1].file)
    assert.equal(2, found[1].line)
  end)

  it("judges an angle-bracket include the include dirs resolve", function()
    local found = check.check_layers(fixtures .. "up_angle")
    assert.same({ "up" }, kinds(found))
    assert.equal("src/base/value.c", found[1].file)
    assert.equal(2, found[1].line)
  end)

  it("fails an include between the two backends (the worker is process)", function()
    local found = check.check_layers(fixtures .. "sideways")
    assert.same({ "sideways" }, kinds(found))
    assert.equal("src/backend/process/worker/main.c", found[1].file)
  end)

  it("fails a cycle between folders", function()
    local found = check.check_layers(fixtures .. "cycle")
    assert.same({ "cycle", "up" }, kinds(found))
    for _, v in ipairs(found) do
      if v.kind == "cycle" then assert.equal("cycle src/base src/kernel", v.key) end
    end
  end)

  it("fails a source file in a folder that is not a layer", function()
    local found = check.check_layers(fixtures .. "outside")
    assert.same({ "outside" }, kinds(found))
    assert.equal("src/misc/util.c", found[1].file)
  end)

  it("places files in the longest layer folder that holds them", function()
    assert.equal("src/backend/process", check.layer_of("src/backend/process/worker/main.c").dir)
    assert.equal("src/core", check.layer_of("src/core/cell.c").dir)
    assert.is_nil(check.layer_of("src/corex/cell.c"))
  end)

  describe("file length", function()
    local root
    before_each(function() root = tmpdir() end)
    after_each(function() os.execute("rm -rf '" .. root .. "'") end)

    it("allows 600 lines and fails 601 without a stated reason", function()
      write(root .. "/src/base/ok.c", lines(600))
      write(root .. "/lua/isolate/long.lua", lines(601, "-- a module"))
      write(root .. "/src/kernel/long.c", lines(601))
      local found = check.check_lengths(root)
      local files = {}
      for _, v in ipairs(found) do files[#files + 1] = v.kind .. " " .. v.file end
      table.sort(files)
      assert.same({ "long lua/isolate/long.lua", "long src/kernel/long.c" }, files)
    end)

    it("passes a long file whose head comment says why", function()
      write(root .. "/src/kernel/long.c", "/*\n * " .. check.REASON .. " its steps are one list.\n */\n"
        .. lines(700))
      assert.same({}, check.check_lengths(root))
    end)

    it("does not take a reason found below the head comment", function()
      write(root .. "/src/kernel/long.c", lines(100) .. "/* " .. check.REASON .. " ... */\n" .. lines(600))
      assert.same({ "long" }, kinds(check.check_lengths(root)))
    end)
  end)

  describe("ratchet", function()
    local up = "up src/kernel/confine.c: src/kernel -> src/core (cell.h)"

    it("tolerates exactly the listed violations", function()
      local r = check.ratchet(check.check(fixtures .. "up"), { up })
      assert.same({ 1, 0, 0 }, { #r.kept, #r.new, #r.gone })
    end)

    it("fails an unlisted violation", function()
      local r = check.ratchet(check.check(fixtures .. "up"), {})
      assert.same({ 0, 1, 0 }, { #r.kept, #r.new, #r.gone })
    end)

    it("fails a listed violation that no longer occurs", function()
      local r = check.ratchet(check.check(fixtures .. "clean"), { up })
      assert.same({ 0, 0, 1 }, { #r.kept, #r.new, #r.gone })
      assert.equal(up, r.gone[1])
    end)

    it("lets a listed cycle cover a smaller one among its folders", function()
      local found = { { kind = "cycle", key = "cycle src/base src/kernel" } }
      local r = check.ratchet(found, { "cycle src/base src/kernel src/python" })
      assert.same({ 1, 0, 0 }, { #r.kept, #r.new, #r.gone })
      r = check.ratchet(found, { "cycle src/base src/python" })
      assert.same({ 0, 1, 1 }, { #r.kept, #r.new, #r.gone })
    end)
  end)

  describe("command", function()
    local lua = os.getenv("ISOLATE_LUA") or "lua5.4"
    local cmd = lua .. " scripts/check_layers.lua --root "

    it("exits 0 on a clean tree and 1 on each kind of violation", function()
      assert.equal(0, sh(cmd .. fixtures .. "clean"))
      for _, tree in ipairs({ "up", "up_relative", "up_angle", "sideways", "cycle", "outside" }) do
        assert.equal(1, sh(cmd .. fixtures .. tree))
      end
    end)

    it("exits 0 when --known lists exactly what is found, 1 otherwise", function()
      local root = tmpdir()
      write(root .. "/exact", "# a comment\nup src/kernel/confine.c: src/kernel -> src/core (cell.h)\n")
      write(root .. "/extra", "up src/kernel/confine.c: src/kernel -> src/core (cell.h)\nlong src/x.c\n")
      assert.equal(0, sh(cmd .. fixtures .. "up --known " .. root .. "/exact"))
      assert.equal(1, sh(cmd .. fixtures .. "up --known " .. root .. "/extra"))
      assert.equal(1, sh(cmd .. fixtures .. "clean --known " .. root .. "/exact"))
      os.execute("rm -rf '" .. root .. "'")
    end)
  end)
end)
