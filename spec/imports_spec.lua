-- The import guard decides by where code lives (the caller's code object),
-- not by names code can change; the guest builtins pickle like plain
-- Python's; C accelerators refused in sub-interpreter cells load in
-- process cells. Both backends.
local sandbox = require "isolate"
local support = require "support"
local err_of = support.err_of

local denials = support.denials

for _, backend in ipairs(support.backends()) do
local spawn = support.spawner(backend)

describe("the import guard (" .. backend .. ")", function()
  it("lets a module that renames itself import what it needs (_pydecimal)", function()
    local sb <close> = spawn({ imports = { "_pydecimal" } })
    sb:exec("import _pydecimal\npost(str(_pydecimal.Decimal('1.1') + 1))")
    assert.are.equal("2.1", sb:recv(5))
  end)

  it("lets a module missing from sys.modules import what it needs", function()
    local sb <close> = spawn({ imports = { "zoneinfo", "sys" },
                               policy = { fs = { { read = "/usr/share/zoneinfo" } } } })
    sb:exec([[
import sys, zoneinfo
sys.modules.pop('zoneinfo._tzpath')
post(len(zoneinfo.available_timezones()) > 0)
]])
    assert.is_true(sb:recv(5))
  end)

  it("lets C code (_pickle) find loaded modules such as builtins", function()
    local sb <close> = spawn({ imports = { "pickle" } })
    sb:exec("import pickle\npost(pickle.loads(pickle.dumps(len)) is len)")
    assert.is_true(sb:recv(5))
    -- asked the way C asks, a module already loaded is handed back...
    sb:exec("post(__import__('builtins', globals(), globals(), [], 0) is len.__self__)")
    assert.is_true(sb:recv(5))
    -- ...but nothing new is loaded that way, and plain calls stay refused
    local e = err_of(sb.exec, sb, "__import__('wave', globals(), globals(), [], 0)")
    assert.are.equal("ImportError", e.python)
    assert.are.equal("ImportError", err_of(sb.exec, sb, "__import__('builtins')").python)
    local evs = denials(sb)
    assert.are.equal(2, #evs)
    assert.are.same({ "wave", "builtins" }, { evs[1].target, evs[2].target })
  end)

  it("judges code run in a module's globals as the guest's", function()
    local sb <close> = spawn({ imports = { "json" } })
    for _, code in ipairs({
      "import json\nexec('import wave', json.__dict__)",
      "import json\neval('__import__(\"wave\")', json.__dict__)",
      "import json\nexec(compile('import wave', '<string>', 'exec'), vars(json))",
    }) do
      local e = err_of(sb.exec, sb, code)
      assert.are.equal("ImportError", e.python, code)
      local evs = denials(sb)
      assert.are.equal(1, #evs, code)
      assert.are.equal("import", evs[1].capability)
      assert.are.equal("wave", evs[1].target)
    end
  end)

  it("lets guest code use __future__ (feature flags only) without listing it", function()
    local sb <close> = spawn({})
    sb:exec("from __future__ import annotations\ndef f(x: Undefined) -> int: return 1\npost(f.__annotations__['x'])")
    assert.are.equal("Undefined", sb:recv(5))
    assert.are.equal("ImportError", err_of(sb.exec, sb, "import json").python)
  end)

  it("keeps relative imports from guest code refused", function()
    local sb <close> = spawn({ imports = { "json" } })
    assert.are.equal("ImportError", err_of(sb.exec, sb, "from . import decoder").python)
    assert.are.equal("ImportError", err_of(sb.exec, sb, "__import__('json', globals(), None, ['decoder'], 1)").python)
  end)

  it("refuses code objects that claim a module's file", function()
    local sb <close> = spawn({ imports = { "json", "types", "marshal", "io" } })
    sb:exec("import json, types, marshal, io\nF = json.__file__\nC = compile('import wave', '<x>', 'exec')")
    for _, code in ipairs({
      "compile('import wave', F, 'exec')",
      "compile('import wave', '<frozen os>', 'exec')",
      "exec(compile('import wave', F, 'exec'), {})",
      "C.replace(co_filename=F)",
      "types.CodeType(*[getattr(C, 'co_' + a) for a in ('argcount', 'posonlyargcount', 'kwonlyargcount', 'nlocals', 'stacksize', 'flags', 'code', 'consts', 'names', 'varnames')], F, C.co_name, C.co_qualname, C.co_firstlineno, C.co_linetable, C.co_exceptiontable, C.co_freevars, C.co_cellvars)",
      "marshal.loads(marshal.dumps(json.loads.__code__))",
      "marshal.loads(marshal.dumps((1, [json.dumps.__code__])))",
      "marshal.load(io.BytesIO(marshal.dumps(1)))",
    }) do
      local e = err_of(sb.exec, sb, code)
      assert.are.equal("PermissionError", e.python, code)
      local evs = denials(sb)
      assert.are.equal(1, #evs, code)
      assert.are.equal("module code forgery", evs[1].rule, code)
    end
    -- code of its own, and data, stay the guest's to make and load
    sb:exec("post(marshal.loads(marshal.dumps(C)).co_filename)\npost(C.replace(co_name='x').co_name)")
    assert.are.equal("<x>", sb:recv(5))
    assert.are.equal("x", sb:recv(5))
  end)
end)

describe("the guest builtins (" .. backend .. ")", function()
  it("pickle by reference, as plain Python's builtins do", function()
    local sb <close> = spawn({ imports = { "pickle" } })
    sb:exec([=[
import pickle
fns = (post, log, metric, request, open)
post([pickle.loads(pickle.dumps(f)) is f for f in fns])
post([(f.__module__, f.__qualname__) for f in fns[:4]])
post(open.__module__ in ('io', '_io') and open.__qualname__)
]=])
    assert.are.same({ true, true, true, true, true }, sb:recv(5))
    assert.are.same({ { "isolate_cell", "post" }, { "isolate_cell", "log" },
                      { "isolate_cell", "metric" }, { "isolate_cell", "request" } }, sb:recv(5))
    assert.are.equal("open", sb:recv(5))
  end)

  it("act on the cell that calls them, wherever they were pickled", function()
    local a <close> = spawn({ imports = { "pickle" } })
    local b <close> = spawn({ imports = { "pickle" } })
    a:exec("import pickle\npost(pickle.dumps(post))")
    local data = a:recv(5)
    b:exec("import pickle\ndef run(d):\n    pickle.loads(d)('in b')")
    b:call("run", data)
    assert.are.equal("in b", b:recv(5))
    assert.is_nil(a:recv(0.1))
    -- a guest cannot rebind them to another cell's state
    a:exec("m = post.__self__\nm.post = None\npost('still a')")
    assert.are.equal("still a", a:recv(5))
  end)
end)

describe("C accelerators (" .. backend .. ")", function()
  it("load in process cells and are refused where they break", function()
    local imports = { "_datetime", "_zoneinfo", "datetime" }
    -- where a cell refuses _zoneinfo (legacy cells) spawn refuses it up
    -- front; the cell's own refusal is reached past spawn's checks
    local refused = require("isolate.core").import_refused(backend, "_zoneinfo")
    if refused then
      local e = err_of(spawn, { imports = imports })
      assert.are.same({ "invalid_argument", "_zoneinfo" }, { e.kind, e.module })
    end
    local sb <close> = refused and support.core_spawn(backend, imports)
      or spawn({ imports = imports })
    local code = "import datetime, %s\npost(True)"
    local zi = pcall(sb.exec, sb, code:format("_zoneinfo"))
    local dt = pcall(sb.exec, sb, code:format("_datetime"))
    if backend == "process" then
      assert.is_true(zi and dt)
      sb:exec("import _datetime\npost(type(datetime.datetime.now()) is _datetime.datetime)")
      assert.is_true(sb:recv(5))
    else
      -- legacy cells: _zoneinfo keeps its state from the first one;
      -- own-GIL cells: this cell holds the lease of both
      assert.are.equal(sandbox.info().own_gil, zi)
      assert.is_true(dt)
    end
  end)

  if backend == "subinterpreter" and sandbox.info().own_gil then
    -- Two own-GIL cells holding _datetime at once corrupt CPython 3.13's
    -- heap when they end: one holds it at a time, the other gets the
    -- pure-Python datetime, and the next cell gets it back.
    it("lease _datetime to one own-GIL cell at a time", function()
      local code = "import datetime, zoneinfo\n"
        .. "post(hasattr(datetime, 'datetime_CAPI') and zoneinfo.ZoneInfo.__module__ == 'zoneinfo')"
      local tz = { fs = { { read = "/usr/share/zoneinfo" } } }
      for _ = 1, 5 do
        local a = spawn({ imports = { "datetime", "zoneinfo" }, policy = tz })
        local b = spawn({ imports = { "datetime", "zoneinfo" }, policy = tz })
        a:exec(code)
        b:exec(code)
        assert.is_true(a:recv(5))
        assert.is_false(b:recv(5))
        b:exec("post(str(datetime.datetime(2026, 7, 1, tzinfo=zoneinfo.ZoneInfo('Europe/Paris')).utcoffset()))")
        assert.are.equal("2:00:00", b:recv(5))
        b:exec("post(datetime.datetime(2026, 12, 2).isoformat())")
        assert.are.equal("2026-12-02T00:00:00", b:recv(5))
        a:close()
        b:close()
      end
      local c <close> = spawn({ imports = { "datetime", "zoneinfo" } })
      c:exec(code)
      assert.is_true(c:recv(5))
    end)
  end
end)

end
