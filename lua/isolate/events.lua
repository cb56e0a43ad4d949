-- isolate.events: events written where a person or a collector reads them.
--
-- The luaisolate host turns this on (sandbox.log_events{}) so that
-- warnings, denials, exits and guest logs at level warning or above reach
-- stderr, one line each, unless the script handles that event type
-- itself. A program that only does `require "isolate"` gets nothing
-- written behind its back: it calls sandbox.log_events to opt in.
--
-- Every line is one line whatever the guest put in it: control
-- characters, C1 controls and bytes that are not UTF-8 are escaped in
-- text; JSON strings are made valid UTF-8 and escaped by the encoder.
local errors = require "isolate.error"

local events = {}

-- Python's logging levels; a level the host does not know is shown (as
-- warning) rather than hidden.
local LEVELS = { debug = 10, info = 20, warning = 30, warn = 30, error = 40,
                 critical = 50, fatal = 50 }
events.LEVEL_NAMES = { "debug", "info", "warning", "error", "critical" }
events.FORMATS = { "text", "json" }
local MAX_DEPTH = 32       -- deeper field values are written as "..."
local TEXT_FIELD_MAX = 4096 -- a text line shows this much of one string

local function level_of(level)
  if type(level) ~= "string" then return LEVELS.warning end
  return LEVELS[level:lower()] or LEVELS.warning
end

-- ---- text -------------------------------------------------------------------

local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\\"] = "\\\\" }

local function escape_ascii(s)
  return (s:gsub("[%c\\]", function(c)
    return ESCAPES[c] or string.format("\\x%02x", c:byte())
  end))
end

-- The code point at i of s and its length, or nil when s is not UTF-8
-- there (utf8.codepoint is strict: no overlong forms, no surrogates).
local function char_at(s, i)
  local ok, cp = pcall(utf8.codepoint, s, i)
  if not ok then return nil end
  return cp, #utf8.char(cp)
end

-- s as text a terminal shows as it is: ASCII and C1 controls, U+2028/9
-- and stray bytes escaped, so a guest cannot start a line or move the
-- cursor.
local function escape_text(s)
  local parts, i, n = {}, 1, #s
  while i <= n do
    local j = s:find("[\128-\255]", i) or n + 1
    parts[#parts + 1] = escape_ascii(s:sub(i, j - 1))
    i = j
    if i <= n then
      local cp, len = char_at(s, i)
      if cp and not (cp < 0xA0 or cp == 0x2028 or cp == 0x2029) then
        parts[#parts + 1] = s:sub(i, i + len - 1)
        i = i + len
      else
        parts[#parts + 1] = string.format("\\x%02x", s:byte(i))
        i = i + 1
      end
    end
  end
  return table.concat(parts)
end

local function clip(s)
  if #s <= TEXT_FIELD_MAX then return s end
  return s:sub(1, TEXT_FIELD_MAX) .. string.format("...(%d bytes)", #s)
end

local function text(v)
  return escape_text(clip(tostring(v)))
end

local json_line -- below

-- key=value of a table's string keys, sorted; nested values as JSON.
local function pairs_text(t)
  if type(t) ~= "table" then return "" end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    if type(v) == "table" then v = json_line(v) end
    parts[i] = " " .. text(k) .. "=" .. text(v)
  end
  return table.concat(parts)
end

local function count_restarts(cells)
  local n = 0
  for _, c in ipairs(cells or {}) do
    if c.restart_needed then n = n + 1 end
  end
  return n
end

local TEXT = {
  warning = function(ev) return text(ev.message) end,
  denial = function(ev)
    return string.format("%s %s %s (rule %s; layer %s; source %s)",
      text(ev.capability), text(ev.action), text(ev.target), text(ev.rule),
      text(ev.layer), text(ev.source))
  end,
  exit = function(ev)
    local msg = ev.message and ev.message ~= "" and ": " .. text(ev.message) or ""
    return text(ev.reason) .. msg
  end,
  log = function(ev)
    return text(ev.level) .. ": " .. text(ev.message) .. pairs_text(ev.fields)
  end,
  metric = function(ev)
    return text(ev.name) .. " " .. text(ev.value) .. pairs_text(ev.tags)
  end,
  reload = function(ev)
    local cells = type(ev.cells) == "table" and ev.cells or {}
    return string.format("policy %s: %d cells, %d need a restart",
                         text(ev.policy), #cells, count_restarts(cells))
  end,
  suppressed = function(ev)
    return string.format("%s more %s lines left out (over %d a second)",
                         text(ev.count), text(ev.event), events.LINES_PER_S)
  end,
}

local function utc(t)
  if type(t) ~= "number" or t ~= t or t < 0 or t > 253402300799 then t = os.time() end
  local whole = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", whole)
         .. string.format(".%03dZ", math.floor((t - whole) * 1000))
end

-- "<prefix><type>: cell <name>: <what>" (reload events name no cell).
function events.text_line(ev, prefix)
  local body = (TEXT[ev.type] or function() return "" end)(ev)
  local who = ev.cell ~= nil and "cell " .. text(ev.cell) .. ": " or ""
  return (prefix or "") .. text(ev.type) .. ": " .. who .. body
end

-- ---- JSON -------------------------------------------------------------------

local function is_sequence(t)
  local n = #t
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

-- A copy of v that the encoder always takes: NaN and infinities as the
-- strings Prometheus and Python write, functions and userdata (but null)
-- by type name, mixed tables as objects with string keys, and nothing
-- deeper than MAX_DEPTH.
local function plain(v, depth)
  local t = type(v)
  if t == "number" then
    if v ~= v then return "NaN" end
    if v == math.huge then return "+Inf" end
    if v == -math.huge then return "-Inf" end
    return v
  end
  if t == "string" or t == "boolean" or t == "nil" then return v end
  if t == "userdata" and v == require("isolate.core").null then return v end
  if t ~= "table" then return t end
  if depth >= MAX_DEPTH then return "..." end
  local cli = require "isolate.cli"
  local copy = {}
  if is_sequence(v) then
    for i = 1, #v do copy[i] = plain(v[i], depth + 1) end
    return cli.json_array(copy)
  end
  for k, x in pairs(v) do copy[tostring(k)] = plain(x, depth + 1) end
  return copy
end

-- One line of JSON: {"type":, "time":, "cell":, ...the event's fields}.
function json_line(ev)
  local cli = require "isolate.cli"
  local ok, s = pcall(cli.json_encode, plain(ev, 0))
  if ok then return s end
  return cli.json_encode({ type = "unencodable", error = tostring(s) })
end

function events.json_line(ev)
  local doc = {}
  for k, v in pairs(ev) do doc[k] = v end
  if doc.cell == nil then doc.cell = require("isolate.core").null end
  if type(doc.time) ~= "number" then doc.time = os.time() end
  return json_line(doc)
end

-- ---- the writer ---------------------------------------------------------------

-- The level an event is written at: a log's own; a cell the script
-- closed is info (a clean end is no news), a metric debug; everything
-- else (warnings, denials, reloads, kills, timeouts, crashes) warning.
function events.level(ev)
  if ev.type == "log" then return level_of(ev.level) end
  if ev.type == "metric" then return LEVELS.debug end
  if ev.type == "exit" and ev.reason == "close" then return LEVELS.info end
  return LEVELS.warning
end

local function check_writer_options(opts)
  if type(opts) ~= "table" then
    errors.raise("invalid_argument", "log_events expects a table of options or false")
  end
  for k in pairs(opts) do
    if k ~= "format" and k ~= "file" and k ~= "level" then
      errors.raise("invalid_argument", "unknown log_events option '%s'; valid "
                   .. "options: file, format, level", tostring(k))
    end
  end
  local format = opts.format or "text"
  if format ~= "text" and format ~= "json" then
    error(errors.new("invalid_argument", "format must be text or json, got "
                     .. tostring(format), { valid = { "text", "json" } }), 3)
  end
  local level = opts.level or "warning"
  if type(level) ~= "string" or not LEVELS[level] then
    error(errors.new("invalid_argument", "level must be one of "
                     .. table.concat(events.LEVEL_NAMES, ", "),
                     { valid = events.LEVEL_NAMES }), 3)
  end
  if opts.file ~= nil and type(opts.file) ~= "string" then
    errors.raise("invalid_argument", "file must be a path")
  end
  return format, LEVELS[level]
end

local function open_log(path)
  local f, why = io.open(path, "a")
  if not f then
    error(errors.new("invalid_argument", "cannot open the log file: " .. why,
                     { path = path }), 4)
  end
  f:setvbuf("line")
  return f
end

-- At most LINES_PER_S lines a second for each cell and event type: a
-- guest that hammers a denied port must not flood the log nor slow its
-- host down (the lines are written on the Lua thread). limiter() returns
-- pass(ev) -> whether to write ev, and how many lines of that cell and
-- type were left out before it (to be said first, in a `suppressed` line).
events.LINES_PER_S = 20

function events.limiter()
  local seen, nkeys = {}, 0 -- cell .. "\0" .. type -> {second=, lines=, left_out=}
  return function(ev)
    local key = tostring(ev.cell) .. "\0" .. tostring(ev.type)
    local now = math.floor(require("isolate.core").now())
    local k = seen[key]
    if not k and nkeys >= 1024 then
      -- bounded: start afresh (a count not yet said for some cell is lost)
      seen, nkeys = {}, 0
    end
    if not k or k.second ~= now then
      if not k then nkeys = nkeys + 1 end
      seen[key] = { second = now, lines = 1, left_out = 0 }
      return true, k and k.left_out or 0
    end
    k.lines = k.lines + 1
    if k.lines <= events.LINES_PER_S then return true, 0 end
    k.left_out = k.left_out + 1
    return false, 0
  end
end

-- A function ev -> nothing that writes ev when its events.level is
-- `level` or above (so by default: warnings, denials, reloads, exits
-- but clean closes, logs at warning or above). It never raises: a full disk or a closed pipe
-- loses the line, not the script.
function events.writer(opts)
  local format, threshold = check_writer_options(opts)
  local f = opts.file and open_log(opts.file)
  local line = format == "json" and events.json_line
               or function(ev)
                    return events.text_line(ev, f and utc(ev.time) .. " " or "luaisolate: ")
                  end
  local pass = events.limiter()
  return function(ev)
    if events.level(ev) < threshold then return end
    local go, left_out = pass(ev)
    if left_out > 0 then
      pcall(function()
        (f or io.stderr):write(line({ type = "suppressed", cell = ev.cell, time = ev.time,
                         event = ev.type, count = left_out }), "\n")
      end)
    end
    if not go then return end
    local ok, s = pcall(line, ev)
    if ok then (f or io.stderr):write(s, "\n") end
  end, f
end

return events
