-- isolate.json: a small JSON encoder (RFC 8259) for machine-readable
-- output such as `luaisolate check --json`. Encode only.
--
--   json.encode{ ok = true, results = json.array{} }  --> {"ok":true,"results":[]}
--
-- Tables marked with json.array (or sandbox.array) are arrays; other
-- tables are arrays when their keys are exactly 1..n (n > 0) and objects
-- otherwise, so an empty list must be marked. Object keys are sorted so
-- the output is stable. Invalid UTF-8 becomes U+FFFD: the output is always
-- valid JSON even when a policy file contains stray bytes.
local json = {}

local ARRAY = { __name = "isolate.json.array" }

function json.array(t)
  return setmetatable(t or {}, ARRAY)
end

local function is_marked(t)
  local mt = getmetatable(t)
  return mt == ARRAY or (type(mt) == "table" and mt.__name == "isolate.array")
end

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b",
                  ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function valid_utf8(s)
  local parts, i = {}, 1
  while true do
    local n, bad = utf8.len(s, i)
    if n then parts[#parts + 1] = s:sub(i); break end
    parts[#parts + 1] = s:sub(i, bad - 1) .. "\u{FFFD}"
    i = bad + 1
  end
  return table.concat(parts)
end

local function string_(s)
  s = valid_utf8(s):gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\u%04x", c:byte())
  end)
  return '"' .. s .. '"'
end

-- The shortest "%.Ng" that reads back as the same double, marked as a float.
local function number(x)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x or x == math.huge or x == -math.huge then
    error("json: cannot encode " .. tostring(x), 0)
  end
  local s
  for digits = 15, 17 do
    s = string.format("%." .. digits .. "g", x)
    if tonumber(s) == x then break end
  end
  return s:find("[.eE]") and s or s .. ".0"
end

-- n when t's keys are exactly 1..n, else nil.
local function sequence_length(t)
  local count, max = 0, 0
  for k in next, t do
    if math.type(k) ~= "integer" or k < 1 then return nil end
    count, max = count + 1, math.max(max, k)
  end
  return count == max and max or nil
end

local encode

local function array(t, n, out)
  out[#out + 1] = "["
  for i = 1, n do
    if i > 1 then out[#out + 1] = "," end
    encode(t[i], out)
  end
  out[#out + 1] = "]"
end

local function object(t, out)
  local keys = {}
  for k in next, t do
    if type(k) ~= "string" then
      error("json: object keys must be strings, got " .. type(k), 0)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    out[#out + 1] = (i > 1 and "," or "") .. string_(k) .. ":"
    encode(t[k], out)
  end
  out[#out + 1] = "}"
end

function encode(v, out)
  local t = type(v)
  if v == nil then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then out[#out + 1] = number(v)
  elseif t == "string" then out[#out + 1] = string_(v)
  elseif t == "table" then
    local n = is_marked(v) and #v or sequence_length(v)
    if n and (n > 0 or is_marked(v)) then array(v, n, out) else object(v, out) end
  else
    error("json: cannot encode a " .. t, 0)
  end
end

-- json.encode(v) -> string; raises on NaN/inf, functions, non-string keys.
-- Tables must not be cyclic.
function json.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

return json
