-- The value rules (DESIGN.md §2): what crosses between Lua and a cell, what
-- Python sees, what comes back, and what is refused with kind `value`.
local sandbox = require "isolate"

local support = require "support"
local err_of = support.err_of

local HELPERS = [[
def echo(x):
    return x

def count(*args):
    return len(args)

def kinds_of(*args):
    return [type(a).__name__ for a in args]

def type_name(x):
    return type(x).__name__

def kinds(x):
    if isinstance(x, dict):
        return {type(k).__name__: type(v).__name__ for k, v in x.items()}
    return [type(v).__name__ for v in x]

def is_neg_zero(x):
    return x == 0.0 and str(x) == '-0.0'

def deep(n):
    x = []
    for _ in range(n - 1):
        x = [x]
    return x
]]

-- ISO_VALUE_MAX_DEPTH (include/isolate.h): the most containers a value may
-- nest, the same in every backend (msgpack-c's unpacker stack bounds it).
local MAX_DEPTH = 31

-- A list of n empty lists nested inside each other: depth n.
local function nested(n)
  local t = sandbox.array({})
  for _ = 2, n do t = { t } end
  return t
end

-- (not indented: the Python sources in long strings must stay flush)
for _, backend in ipairs(support.backends()) do
describe("values (" .. backend .. ")", function()
  local sb
  before_each(function()
    sb = sandbox.spawn({ backend = backend })
    sb:exec(HELPERS)
  end)
  after_each(function() sb:close() end)

  -- The cell is still usable after a refusal.
  local function assert_alive()
    assert.are.equal(3, sb:call("len", "abc"))
  end

  local function refused_arg(v)
    assert.are.equal("value", err_of(sb.call, sb, "echo", v).kind)
    assert_alive()
  end

  local function refused_result(python_expr)
    sb:exec("def bad():\n    return " .. python_expr .. "\n")
    assert.are.equal("value", err_of(sb.call, sb, "bad").kind)
    assert_alive()
  end

  describe("nil and booleans", function()
    it("turns a top-level nil into None and None back into nil", function()
      assert.are.equal("NoneType", sb:call("type_name", nil))
      assert.is_nil(sb:call("echo", nil))
      sb:exec("def none():\n    return None\n")
      assert.is_nil(sb:call("none"))
    end)

    it("turns sandbox.null at the top level into None", function()
      assert.are.equal("NoneType", sb:call("type_name", sandbox.null))
      assert.is_nil(sb:call("echo", sandbox.null))
    end)

    it("keeps nil arguments in their positions, trailing ones included", function()
      assert.are.equal(3, sb:call("count", nil, 1, nil))
      assert.are.same({ "NoneType", "int", "NoneType" }, sb:call("kinds_of", nil, 1, nil))
    end)

    it("round-trips booleans as bool", function()
      assert.are.equal("bool", sb:call("type_name", true))
      assert.is_true(sb:call("echo", true))
      assert.is_false(sb:call("echo", false))
    end)
  end)

  describe("integers", function()
    it("cross as int both ways", function()
      for _, i in ipairs({ 0, 1, -1, 42, 1 << 53, -(1 << 53) }) do
        assert.are.equal("int", sb:call("type_name", i))
        local back = sb:call("echo", i)
        assert.are.equal(i, back)
        assert.are.equal("integer", math.type(back))
      end
    end)

    it("keep the int64 extremes exact", function()
      assert.are.equal(math.maxinteger, sb:call("echo", math.maxinteger))
      assert.are.equal(math.mininteger, sb:call("echo", math.mininteger))
      sb:exec("def extremes():\n    return [2**63 - 1, -2**63]\n")
      assert.are.same({ math.maxinteger, math.mininteger }, sb:call("extremes"))
    end)

    it("refuses more than ISO_VALUE_MAX_ITEMS (4Mi) values in one payload", function()
      local max = 4 * 1024 * 1024
      sb:exec(string.format([[
try:
    post([None] * %d)
except ValueError as e:
    post('refused')
]], max + 1))
      assert.are.equal("refused", sb:recv(5))
      local big = {}
      for i = 1, max + 1 do big[i] = true end
      assert.are.equal("value", err_of(sb.call, sb, "len", big).kind)
      big = nil
      assert.are.equal(3, sb:call("len", { 1, 2, 3 }))
    end)

    it("refuses a Python int above int64 as a call result", function()
      refused_result("2**63")
    end)

    it("refuses a Python int below int64 as a call result", function()
      refused_result("-2**63 - 1")
    end)
  end)

  describe("floats", function()
    it("cross as float both ways, exactly", function()
      for _, f in ipairs({ 0.5, -2.25, math.pi, 1e308, 5e-324, 2.0 }) do
        assert.are.equal("float", sb:call("type_name", f))
        local back = sb:call("echo", f)
        assert.are.equal(f, back)
        assert.are.equal("float", math.type(back))
      end
    end)

    it("keep the sign of -0.0", function()
      assert.is_true(sb:call("is_neg_zero", -0.0))
      assert.are.equal(-math.huge, 1 / sb:call("echo", -0.0))
    end)

    it("carry infinities and nan", function()
      assert.are.equal(math.huge, sb:call("echo", math.huge))
      assert.are.equal(-math.huge, sb:call("echo", -math.huge))
      local nan = sb:call("echo", 0 / 0)
      assert.are.equal("float", math.type(nan))
      assert.is_true(nan ~= nan)
    end)
  end)

  describe("strings", function()
    it("become str when valid UTF-8", function()
      for _, s in ipairs({ "", "abc", "h\xc3\xa9llo", "\xe2\x82\xac", "\xf0\x9f\x98\x80" }) do
        assert.are.equal("str", sb:call("type_name", s))
        assert.are.equal(s, sb:call("echo", s))
      end
      assert.are.equal(5, sb:call("len", "h\xc3\xa9llo")) -- code points, not bytes
    end)

    it("become bytes when not valid UTF-8", function()
      -- stray byte, truncated sequence, overlong, encoded surrogate
      for _, s in ipairs({ "\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80" }) do
        assert.are.equal("bytes", sb:call("type_name", s))
        assert.are.equal(s, sb:call("echo", s))
      end
    end)

    it("become bytes when wrapped in sandbox.bytes", function()
      assert.are.equal("bytes", sb:call("type_name", sandbox.bytes("abc")))
      assert.are.equal("abc", sb:call("echo", sandbox.bytes("abc")))
      assert.are.equal("bytes", sb:call("type_name", sandbox.bytes("")))
    end)

    it("keep embedded NULs", function()
      assert.are.equal("a\0b", sb:call("echo", "a\0b"))
      assert.are.equal(3, sb:call("len", "a\0b"))
      assert.are.equal("\0\xff\0", sb:call("echo", "\0\xff\0"))
    end)

    it("come back from Python str and bytes as exact Lua strings", function()
      sb:exec([[
def texts():
    return ['h\u00e9', b'\x00\xff\x80', bytearray(b'ab\x00'), '\x00']
]])
      assert.are.same({ "h\xc3\xa9", "\0\xff\x80", "ab\0", "\0" }, sb:call("texts"))
    end)

    it("refuses a Python str that is not valid Unicode (lone surrogate)", function()
      refused_result("'\\ud800'")
    end)
  end)

  describe("tables", function()
    it("with keys 1..n become a list", function()
      assert.are.equal("list", sb:call("type_name", { 1, 2, 3 }))
      assert.are.same({ 1, "two", 3.5 }, sb:call("echo", { 1, "two", 3.5 }))
    end)

    it("become a list when wrapped in sandbox.array, also empty", function()
      assert.are.equal("list", sb:call("type_name", sandbox.array({})))
      assert.are.equal("list", sb:call("type_name", sandbox.array({ "a" })))
      local back = sb:call("echo", sandbox.array({}))
      assert.are.same(sandbox.array({}), back)
      assert.are.equal(getmetatable(sandbox.array({})), getmetatable(back))
    end)

    it("refuse sandbox.array with keys outside 1..#t", function()
      refused_arg(sandbox.array({ 1, 2, x = 3 }))
    end)

    it("become a dict when empty", function()
      assert.are.equal("dict", sb:call("type_name", {}))
      local back = sb:call("echo", {})
      assert.are.same({}, back)
      assert.is_nil(getmetatable(back))
    end)

    it("become a dict with string keys", function()
      assert.are.equal("dict", sb:call("type_name", { a = 1 }))
      assert.are.same({ a = 1, ["b c"] = "x" }, sb:call("echo", { a = 1, ["b c"] = "x" }))
      assert.are.same({ str = "int" }, sb:call("kinds", { k = 1 }))
    end)

    it("become a dict with integer keys when not a sequence", function()
      for _, t in ipairs({ { [2] = "b" }, { [0] = "z", [1] = "a" }, { [-1] = 1 }, { [1] = 1, [3] = 3 } }) do
        assert.are.equal("dict", sb:call("type_name", t))
        assert.are.same(t, sb:call("echo", t))
      end
      assert.are.same({ int = "str" }, sb:call("kinds", { [5] = "x" }))
    end)

    it("with mixed keys become a dict", function()
      local t = { 10, 20, x = "y" }
      assert.are.equal("dict", sb:call("type_name", t))
      assert.are.same(t, sb:call("echo", t))
    end)

    it("with a non-UTF-8 string key become a dict with a bytes key", function()
      assert.are.same({ bytes = "int" }, sb:call("kinds", { ["\xff"] = 1 }))
      assert.are.same({ ["\xff"] = 1 }, sb:call("echo", { ["\xff"] = 1 }))
    end)

    it("referenced twice (not a cycle) cross as two copies", function()
      local shared = { 1, 2 }
      assert.are.same({ { 1, 2 }, { 1, 2 } }, sb:call("echo", { shared, shared }))
    end)
  end)

  describe("Python containers", function()
    it("tuples come back as lists", function()
      sb:exec("def tup():\n    return (1, ('a', ()), [])\n")
      local back = sb:call("tup")
      assert.are.same({ 1, { "a", sandbox.array({}) }, sandbox.array({}) }, back)
      assert.are.equal(getmetatable(sandbox.array({})), getmetatable(back[2][2]))
    end)

    it("an empty list comes back as a table carrying the array metatable", function()
      sb:exec("def empty():\n    return []\n")
      local back = sb:call("empty")
      assert.are.same({}, back)
      assert.are.equal(getmetatable(sandbox.array({})), getmetatable(back))
      assert.are.equal("list", sb:call("type_name", back)) -- and goes back as a list
    end)

    it("dicts come back with their str, bytes and int keys", function()
      sb:exec("def d():\n    return {'a': 1, b'\\xff': 2, 3: 'c', -4: None}\n")
      assert.are.same({ a = 1, ["\xff"] = 2, [3] = "c", [-4] = sandbox.null }, sb:call("d"))
    end)
  end)

  describe("sandbox.null", function()
    it("stands for None inside lists", function()
      assert.are.same({ "int", "NoneType", "int" }, sb:call("kinds", { 1, sandbox.null, 3 }))
      assert.are.same({ 1, sandbox.null, 3 }, sb:call("echo", { 1, sandbox.null, 3 }))
      sb:exec("def nones():\n    return [None, None]\n")
      local back = sb:call("nones")
      assert.are.equal(2, #back)
      assert.are.equal(sandbox.null, back[1])
      assert.are.equal(sandbox.null, back[2])
    end)

    it("stands for None as a dict value", function()
      assert.are.same({ str = "NoneType" }, sb:call("kinds", { k = sandbox.null }))
      assert.are.same({ k = sandbox.null }, sb:call("echo", { k = sandbox.null }))
    end)
  end)

  describe("nested structures", function()
    it("round-trip deep-equal", function()
      local v = {
        name = "job",
        rows = { { id = 1, tags = { "a", "b" }, score = 0.25 }, { id = 2, tags = sandbox.array({}), score = -1.5 } },
        flags = { on = true, off = false, none = sandbox.null },
        raw = "\x00\xff",
        [7] = { [1] = { [1] = { "deep" } } },
      }
      assert.are.same(v, sb:call("echo", v))
    end)

    -- The argument list that carries a call's arguments is not a nesting
    -- level of the argument itself: MAX_DEPTH levels pass in Lua, so in
    -- Python too.
    it("cross with exactly MAX_DEPTH levels as a call argument", function()
      assert.are.same(nested(MAX_DEPTH), sb:call("echo", nested(MAX_DEPTH)))
    end)

    it("cross with exactly MAX_DEPTH levels as a call result and a post", function()
      assert.are.same(nested(MAX_DEPTH), sb:call("deep", MAX_DEPTH))
      sb:exec("post(deep(" .. MAX_DEPTH .. "))")
      assert.are.same(nested(MAX_DEPTH), sb:recv(1))
    end)
  end)

  describe("refused with kind value, and the cell survives", function()
    it("a function", function()
      refused_arg(print)
      refused_arg(function() end)
    end)

    it("a coroutine", function()
      refused_arg(coroutine.create(function() end))
    end)

    it("a userdata", function()
      refused_arg(io.stdout)
    end)

    it("a function nested in a table", function()
      refused_arg({ 1, { f = print } })
    end)

    it("a cyclic table", function()
      local t = {}
      t[1] = t
      refused_arg(t)
      local a, b = { x = 1 }, {}
      a.b, b.a = b, a
      refused_arg(a)
    end)

    it("nesting deeper than MAX_DEPTH", function()
      refused_arg(nested(MAX_DEPTH + 1))
    end)

    it("a Python result nested deeper than MAX_DEPTH", function()
      refused_result("deep(" .. MAX_DEPTH + 1 .. ")")
    end)

    it("tables with float keys", function()
      refused_arg({ [1.5] = "x" })
      refused_arg({ [1] = "a", [2.5] = "b" })
    end)

    it("tables with boolean keys", function()
      refused_arg({ [true] = 1 })
    end)

    it("tables with table keys", function()
      refused_arg({ [{}] = 1 })
    end)

    it("a set as a call result", function()
      refused_result("{1, 2}")
    end)

    it("an object() as a call result", function()
      refused_result("object()")
    end)

    it("a dict with a float or tuple key as a call result", function()
      refused_result("{1.5: 'x'}")
      refused_result("{(1, 2): 'x'}")
      refused_result("{True: 'x'}")
    end)

    it("a string payload above 64 MiB", function()
      refused_arg(string.rep("a", 65 * 1024 * 1024))
    end)

    it("strings above 64 MiB in total", function()
      local s = string.rep("a", 33 * 1024 * 1024)
      refused_arg({ s, s })
    end)

    -- A call's arguments are one payload: the limit holds for their sum.
    it("call arguments above 64 MiB in total", function()
      local s = string.rep("a", 33 * 1024 * 1024)
      assert.are.equal("value", err_of(sb.call, sb, "count", s, s).kind)
      assert_alive()
    end)

    it("a Python result carrying more than 64 MiB of strings", function()
      refused_result("['a' * (33 << 20)] * 2")
    end)
  end)

  describe("post() of a value that cannot cross", function()
    -- Returns the name of the exception post() raised, or "posted".
    before_each(function()
      sb:exec([[
def post_error(expr):
    v = eval(expr)
    try:
        post(v)
    except Exception as e:
        return type(e).__name__
    return 'posted'

def cyclic():
    x = []
    x.append(x)
    return x
]])
    end)

    local function post_error(expr) return sb:call("post_error", expr) end

    it("raises TypeError for a set", function()
      assert.are.equal("TypeError", post_error("{1, 2}"))
    end)

    it("raises TypeError for an object()", function()
      assert.are.equal("TypeError", post_error("object()"))
    end)

    it("raises TypeError for a dict with a float key", function()
      assert.are.equal("TypeError", post_error("{1.5: 'x'}"))
    end)

    it("raises ValueError for an int outside int64", function()
      assert.are.equal("ValueError", post_error("2**63"))
      assert.are.equal("ValueError", post_error("-2**63 - 1"))
    end)

    it("raises ValueError for nesting deeper than MAX_DEPTH", function()
      assert.are.equal("ValueError", post_error("deep(" .. MAX_DEPTH + 1 .. ")"))
    end)

    it("raises ValueError for a cyclic list", function()
      assert.are.equal("ValueError", post_error("cyclic()"))
    end)

    it("raises a ValueError (UnicodeEncodeError) for a lone surrogate", function()
      assert.are.equal("UnicodeEncodeError", post_error("'\\ud800'"))
    end)

    it("raises ValueError for more than 64 MiB of strings", function()
      assert.are.equal("ValueError", post_error("['a' * (33 << 20)] * 2"))
    end)

    it("posts nothing, and the cell keeps posting", function()
      assert.are.equal("TypeError", post_error("[1, object()]"))
      assert.are.equal("posted", post_error("[1, None]"))
      assert.are.same({ 1, sandbox.null }, sb:recv(1))
      local v, err = sb:recv(0.02)
      assert.is_nil(v)
      assert.are.equal("timeout", err.kind)
    end)
  end)
end)
end

