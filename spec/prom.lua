-- Reading Prometheus text exposition (0.0.4) back, for the specs: a strict
-- parser of our own, and the prometheus_client library's (Debian
-- python3-prometheus-client) as a second opinion.
local support = require "support"

local prom = {}

local NAME = "^[%a_:][%w_:]*$"
local LABEL = "^[%a_][%w_]*$"
local UNESCAPE = { ["\\"] = "\\", ['"'] = '"', n = "\n" }

local function value_of(s)
  if s == "NaN" then return 0 / 0 end
  if s == "+Inf" then return math.huge end
  if s == "-Inf" then return -math.huge end
  local v = tonumber(s)
  assert(v and s:match("^[-+]?[%d.eE+-]+$"), "bad sample value: " .. s)
  return v
end

-- {k = v} from the inside of {...}; pos after the closing brace.
local function labels_at(line, pos)
  local labels = {}
  assert(line:sub(pos, pos) == "{")
  pos = pos + 1
  while line:sub(pos, pos) ~= "}" do
    local name, eq = line:match("^([%a_][%w_]*)()=\"", pos)
    assert(name, "bad label at " .. pos .. ": " .. line)
    assert(labels[name] == nil, "duplicate label " .. name)
    pos = eq + 2
    local out = {}
    while true do
      local c = line:sub(pos, pos)
      assert(c ~= "", "unterminated label value: " .. line)
      if c == '"' then pos = pos + 1; break end
      if c == "\\" then
        local e = UNESCAPE[line:sub(pos + 1, pos + 1)]
        assert(e, "bad escape in: " .. line)
        out[#out + 1], pos = e, pos + 2
      else
        out[#out + 1], pos = c, pos + 1
      end
    end
    labels[name] = table.concat(out)
    local sep = line:sub(pos, pos)
    if sep == "," then pos = pos + 1 else assert(sep == "}", "expected , or }: " .. line) end
  end
  return labels, pos + 1
end

-- families[name] = {type=, help=, samples = {{labels=, value=}, ...}};
-- raises on anything the format does not allow (a sample before its TYPE,
-- a family split in two, a series twice, a line that is not UTF-8).
function prom.parse(text)
  assert(text:sub(-1) == "\n", "the exposition must end with a newline")
  assert(utf8.len(text), "the exposition must be UTF-8")
  local families, current, seen = {}, nil, {}
  for line in text:gmatch("([^\n]*)\n") do
    local kind, name, rest = line:match("^# (%u+) (%S+) ?(.*)$")
    if kind == "TYPE" or kind == "HELP" then
      assert(name:match(NAME), "bad family name " .. name)
      local fam = families[name]
      if not fam then
        assert(not seen[name], "family split: " .. name)
        fam = { samples = {} }
        families[name], seen[name] = fam, true
      end
      current = name
      if kind == "TYPE" then
        assert(({ gauge = 1, counter = 1, untyped = 1, histogram = 1, summary = 1 })[rest])
        assert(#fam.samples == 0, "TYPE after samples: " .. name)
        fam.type = rest
      else
        fam.help = rest
      end
    elseif line ~= "" and line:sub(1, 1) ~= "#" then
      local sname, pos = line:match("^([%a_:][%w_:]*)()")
      assert(sname, "bad sample line: " .. line)
      assert(sname == current, "sample outside its family: " .. line)
      local labels = {}
      if line:sub(pos, pos) == "{" then labels, pos = labels_at(line, pos) end
      local v = line:match("^ (%S+)$", pos)
      assert(v, "bad sample value: " .. line)
      for k in pairs(labels) do assert(k:match(LABEL)) end
      local fam = families[sname]
      assert(fam.type, "no TYPE before " .. sname)
      fam.samples[#fam.samples + 1] = { labels = labels, value = value_of(v) }
    end
  end
  for name, fam in pairs(families) do
    local keys = {}
    for _, s in ipairs(fam.samples) do
      local parts = {}
      for k, v in pairs(s.labels) do parts[#parts + 1] = k .. "=" .. v end
      table.sort(parts)
      local key = table.concat(parts, "\0")
      assert(not keys[key], "series twice in " .. name)
      keys[key] = true
    end
  end
  return families
end

-- The sample of family `name` whose labels include `want`, or nil.
function prom.sample(families, name, want)
  local fam = families[name]
  if not fam then return nil end
  for _, s in ipairs(fam.samples) do
    local match = true
    for k, v in pairs(want or {}) do
      if s.labels[k] ~= v then match = false end
    end
    if match then return s end
  end
end

local PY = [[
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name,
                    "labels": s.labels, "value": repr(s.value)})
print(json.dumps(out))
]]

-- What prometheus_client reads from text: {{family=, type=, name=,
-- labels=, value=(repr)}, ...}; nil when the library is not installed.
function prom.python_parse(text)
  local ok = os.execute("/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null")
  if not ok then return nil end
  local script, input = support.write_temp(PY), support.write_temp(text)
  local out = os.tmpname()
  local status = os.execute("/usr/bin/python3 " .. script .. " <" .. input .. " >" .. out)
  local json = support.slurp(out)
  os.remove(script); os.remove(input); os.remove(out)
  assert(status, "prometheus_client refused the exposition")
  return support.decode_json(json)
end

return prom
