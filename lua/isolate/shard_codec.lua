-- isolate.shard_codec: how isolate.shard writes and checks values: their
-- SHA-256, a canonical form of any value that crosses (for hashing: the
-- same value, the same hash, whatever order its keys come in), and exact
-- JSON (integers stay integers, floats keep every bit; what JSON cannot
-- hold exactly is refused).
local core = require "isolate.core"
local errors = require "isolate.error"

local raise = errors.raise

local M = {}

local MAX_DEPTH = 64

local function bad(fmt, ...) raise("invalid_argument", fmt, ...) end

-- ---- SHA-256 (OpenSSL's, through Debian's lua-luaossl) ----------------------

-- sha256(s) -> 64 hex digits. Loaded on first use: only sharded maps need
-- it, and `require "isolate"` must not.
function M.sha256(s)
  local raw = require("openssl.digest").new("sha256"):final(s)
  return (raw:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- ---- a canonical form of any value that crosses, for hashing ---------------

local function mt_name(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name or nil
end

-- keys 1..n and nothing else?
local function list_length(t)
  local n, count = #t, 0
  for k in next, t do
    if math.type(k) ~= "integer" or k < 1 or k > n then return nil end
    count = count + 1
  end
  return count == n and n or nil
end

local canon

local function canon_table(v, out, depth)
  local n = list_length(v)
  if n and (n > 0 or mt_name(v) == "isolate.array") then
    out[#out + 1] = "l" .. n .. "["
    for i = 1, n do canon(v[i], out, depth + 1) end
    out[#out + 1] = "]"
    return
  end
  local pairs_ = {}
  for k, x in next, v do
    local key
    if type(k) == "string" then key = "s" .. #k .. ":" .. k
    else
      local ko = {}
      canon(k, ko, depth + 1)
      key = table.concat(ko)
    end
    pairs_[#pairs_ + 1] = { key, x }
  end
  table.sort(pairs_, function(a, b) return a[1] < b[1] end)
  out[#out + 1] = "m" .. #pairs_ .. "{"
  for _, p in ipairs(pairs_) do
    out[#out + 1] = p[1]
    canon(p[2], out, depth + 1)
  end
  out[#out + 1] = "}"
end

canon = function(v, out, depth)
  if depth > MAX_DEPTH then bad("a value is nested deeper than %d", MAX_DEPTH) end
  local t = type(v)
  if v == core.null then out[#out + 1] = "N"
  elseif t == "boolean" then out[#out + 1] = v and "T" or "F"
  elseif math.type(v) == "integer" then out[#out + 1] = "i" .. v .. ";"
  elseif t == "number" then out[#out + 1] = string.format("f%a;", v)
  elseif t == "string" then out[#out + 1] = "s" .. #v .. ":" .. v
  elseif t == "table" and mt_name(v) == "isolate.bytes" then
    out[#out + 1] = "b" .. #v[1] .. ":" .. v[1]
  elseif t == "table" then canon_table(v, out, depth)
  else bad("a %s cannot be an input of a sharded map", t) end
end

-- hash(v) -> SHA-256 of v's canonical form (key order does not matter).
function M.hash(v)
  local out = {}
  canon(v, out, 0)
  return M.sha256(table.concat(out))
end

-- ---- exact JSON ---------------------------------------------------------------

local NOT_JSON = setmetatable({}, { __name = "isolate.shard.not_json" })

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_string(s)
  if not utf8.len(s) then error(NOT_JSON, 0) end
  return '"' .. s:gsub('[%z\1-\31"\\]', function(c)
    return ESCAPES[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function json_float(x)
  if x ~= x or x == math.huge or x == -math.huge then error(NOT_JSON, 0) end
  local s
  for digits = 15, 17 do
    s = string.format("%." .. digits .. "g", x)
    if tonumber(s) == x then break end
  end
  if not s:find("[%.e]") then s = s .. ".0" end -- read back as a float
  return s
end

local encode

local function encode_table(v, out, depth)
  local n = list_length(v)
  if mt_name(v) == "isolate.bytes" then error(NOT_JSON, 0) end
  if n and (n > 0 or mt_name(v) == "isolate.array") then
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      encode(v[i], out, depth + 1)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = {}
  for k in next, v do
    if type(k) ~= "string" then error(NOT_JSON, 0) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    out[#out + 1] = (i > 1 and "," or "") .. json_string(k) .. ":"
    encode(v[k], out, depth + 1)
  end
  out[#out + 1] = "}"
end

encode = function(v, out, depth)
  if depth > MAX_DEPTH then error(NOT_JSON, 0) end
  local t = type(v)
  if v == core.null then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif math.type(v) == "integer" then out[#out + 1] = string.format("%d", v)
  elseif t == "number" then out[#out + 1] = json_float(v)
  elseif t == "string" then out[#out + 1] = json_string(v)
  elseif t == "table" then encode_table(v, out, depth)
  else error(NOT_JSON, 0) end
end

-- encode(v) -> one line of JSON with sorted keys, or nil when v has no
-- exact JSON form.
function M.encode(v)
  local out = {}
  local ok, err = pcall(encode, v, out, 0)
  if ok then return table.concat(out) end
  if err == NOT_JSON then return nil end
  error(err, 0)
end

-- A JSON reader that keeps integers and floats apart; raises NOT_JSON.
local Reader = {}
Reader.__index = Reader

function Reader:fail() error(NOT_JSON, 0) end

function Reader:skip()
  self.pos = self.s:find("[^ \t\r\n]", self.pos) or #self.s + 1
end

function Reader:peek() return self.s:sub(self.pos, self.pos) end

function Reader:literal(word, v)
  if self.s:sub(self.pos, self.pos + #word - 1) ~= word then self:fail() end
  self.pos = self.pos + #word
  return v
end

function Reader:number()
  local s, p = self.s, self.pos
  local int = s:match("^-?%d+", p)
  if not int then self:fail() end
  local q = p + #int
  local frac = s:match("^%.%d+", q) or ""
  q = q + #frac
  local exp = s:match("^[eE][-+]?%d+", q) or ""
  q = q + #exp
  local tok = s:sub(p, q - 1)
  self.pos = q
  local v = tonumber(tok)
  if frac == "" and exp == "" then v = math.tointeger(v) end
  if v == nil then self:fail() end
  return v
end

local function utf8_char(r, code)
  if code >= 0xD800 and code <= 0xDBFF then -- a surrogate pair
    local lo = r.s:match("^\\u(%x%x%x%x)", r.pos)
    lo = lo and tonumber(lo, 16)
    if not lo or lo < 0xDC00 or lo > 0xDFFF then r:fail() end
    r.pos = r.pos + 6
    code = 0x10000 + ((code - 0xD800) << 10) + (lo - 0xDC00)
  elseif code >= 0xDC00 and code <= 0xDFFF then
    r:fail()
  end
  return utf8.char(code)
end

local UNESCAPE = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
                   n = "\n", r = "\r", t = "\t" }

function Reader:string()
  local s, parts = self.s, {}
  self.pos = self.pos + 1
  while true do
    local run = s:match('^[^"\\%z\1-\31]+', self.pos)
    if run then parts[#parts + 1], self.pos = run, self.pos + #run end
    local c = s:sub(self.pos, self.pos)
    if c == '"' then self.pos = self.pos + 1; break end
    if c ~= "\\" then self:fail() end -- end of text or a raw control byte
    local e = s:sub(self.pos + 1, self.pos + 1)
    if e == "u" then
      local hex = s:match("^%x%x%x%x", self.pos + 2)
      if not hex then self:fail() end
      self.pos = self.pos + 6
      parts[#parts + 1] = utf8_char(self, tonumber(hex, 16))
    elseif UNESCAPE[e] then
      parts[#parts + 1], self.pos = UNESCAPE[e], self.pos + 2
    else
      self:fail()
    end
  end
  local out = table.concat(parts)
  if not utf8.len(out) then self:fail() end
  return out
end

function Reader:list(depth)
  local t, n = {}, 0
  self.pos = self.pos + 1
  self:skip()
  if self:peek() == "]" then self.pos = self.pos + 1; return core.array(t) end
  while true do
    n = n + 1
    t[n] = self:value(depth + 1)
    self:skip()
    local c = self:peek()
    self.pos = self.pos + 1
    if c == "]" then return t end
    if c ~= "," then self:fail() end
  end
end

function Reader:object(depth)
  local t = {}
  self.pos = self.pos + 1
  self:skip()
  if self:peek() == "}" then self.pos = self.pos + 1; return t end
  while true do
    self:skip()
    if self:peek() ~= '"' then self:fail() end
    local k = self:string()
    if t[k] ~= nil then self:fail() end -- a key twice
    self:skip()
    if self:peek() ~= ":" then self:fail() end
    self.pos = self.pos + 1
    t[k] = self:value(depth + 1)
    self:skip()
    local c = self:peek()
    self.pos = self.pos + 1
    if c == "}" then return t end
    if c ~= "," then self:fail() end
  end
end

function Reader:value(depth)
  if depth > MAX_DEPTH + 4 then self:fail() end
  self:skip()
  local c = self:peek()
  if c == "{" then return self:object(depth) end
  if c == "[" then return self:list(depth) end
  if c == '"' then return self:string() end
  if c == "t" then return self:literal("true", true) end
  if c == "f" then return self:literal("false", false) end
  if c == "n" then return self:literal("null", core.null) end
  return self:number()
end

-- decode(s) -> value, or nil when s is not one JSON value.
function M.decode(s)
  local r = setmetatable({ s = s, pos = 1 }, Reader)
  local ok, v = pcall(function()
    local v = r:value(0)
    r:skip()
    if r.pos <= #s then r:fail() end
    return v
  end)
  if ok then return v end
  if v == NOT_JSON then return nil end
  error(v, 0)
end

M.list_length = list_length -- n for a list of keys 1..n, else nil

return M
