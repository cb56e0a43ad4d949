-- isolate.metrics: what guests measure with metric(name, value, tags), kept
-- as gauges (the last value of each series) and written as Prometheus text
-- exposition (version 0.0.4) by sandbox.metrics().
--
-- A guest chooses names and labels, so none of it is trusted: the guest's
-- metric() refuses what breaks the rules below, and the host checks again
-- (a process cell can send anything). Names become
-- isolate_guest_<name> with '.' and '-' as '_'; every series gets the
-- label cell=; memory is bounded by SERIES_PER_CELL and SERIES_MAX. What
-- is refused is dropped and counted in isolate_metrics_dropped_total, with
-- one warning event per cell and reason.
local metrics = {}

metrics.PREFIX = "isolate_guest_"
metrics.NAME_MAX = 64        -- bytes of a guest metric name
metrics.TAGS_MAX = 8         -- labels of one metric() call
metrics.TAG_VALUE_MAX = 128  -- bytes of one label value
metrics.SERIES_PER_CELL = 1000
metrics.SERIES_MAX = 10000   -- every cell's, closed cells' included

local families = {}    -- full name -> { [label text] = value }
local cells = {}       -- cell name -> { n = series, keys = {{family, labels}}, warned = {} }
local closed = {}      -- cell names in the order they closed (FIFO), each once
local queued = {}      -- name -> true while it is in `closed`
local series = 0
local dropped = { invalid = 0, series = 0 }

-- ---- the rules ----------------------------------------------------------------

local function valid_name(name)
  return type(name) == "string" and #name >= 1 and #name <= metrics.NAME_MAX
         and not name:find("[^%w_.%-]")
end

local function valid_tag_key(k)
  return type(k) == "string" and #k <= metrics.NAME_MAX and k:match("^[%a_][%w_]*$")
         and k:sub(1, 2) ~= "__" and k ~= "cell"
end

local function finite(v)
  return math.type(v) == "integer" or (type(v) == "number" and v == v
                                       and v ~= math.huge and v ~= -math.huge)
end

local function valid_tag_value(v)
  if type(v) == "string" then return #v <= metrics.TAG_VALUE_MAX and utf8.len(v) ~= nil end
  return type(v) == "boolean" or finite(v)
end

-- nil, or why ev (a metric event) breaks the rules.
function metrics.refusal(ev)
  if not valid_name(ev.name) then return "name" end
  if not finite(ev.value) then return "value" end
  local tags = ev.tags
  if tags == nil or tags == require("isolate.core").null then return nil end
  if type(tags) ~= "table" then return "tags" end
  local n = 0
  for k, v in pairs(tags) do
    n = n + 1
    if n > metrics.TAGS_MAX then return "tags" end
    if not valid_tag_key(k) or not valid_tag_value(v) then return "tags" end
  end
  return nil
end

-- ---- the text -----------------------------------------------------------------

-- A number as Prometheus reads it back exactly.
local function number(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  for digits = 15, 17 do
    local s = string.format("%." .. digits .. "g", v)
    if tonumber(s) == v then return s end
  end
  return string.format("%.17g", v)
end

local function escape_label(s)
  return (s:gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function label_value(v)
  if type(v) == "boolean" then return tostring(v) end
  if type(v) == "number" then return number(v) end
  return escape_label(v)
end

-- cell="...",k="v",...: the series' identity, label names sorted.
local function label_text(cell, tags)
  local keys = {}
  if type(tags) == "table" then
    for k in pairs(tags) do keys[#keys + 1] = k end
  end
  table.sort(keys)
  local parts = { 'cell="' .. escape_label(cell) .. '"' }
  for _, k in ipairs(keys) do
    parts[#parts + 1] = k .. '="' .. label_value(tags[k]) .. '"'
  end
  return table.concat(parts, ",")
end

-- ---- the store -----------------------------------------------------------------

local function cell_record(name)
  local rec = cells[name]
  if not rec then
    rec = { n = 0, keys = {}, warned = {} }
    cells[name] = rec
  end
  rec.closed = nil -- a name can be reused: it is live again
  return rec
end

local function forget(name)
  local rec = cells[name]
  for _, key in ipairs(rec.keys) do
    local fam = families[key[1]]
    if fam and fam[key[2]] ~= nil then
      fam[key[2]] = nil
      series = series - 1
      if next(fam) == nil then families[key[1]] = nil end
    end
  end
  cells[name] = nil
end

-- Room for one more series: the closed cell that closed first makes way.
local function make_room()
  while series >= metrics.SERIES_MAX and #closed > 0 do
    local name = table.remove(closed, 1)
    queued[name] = nil
    if cells[name] and cells[name].closed then forget(name) end
  end
  return series < metrics.SERIES_MAX
end

-- Drop and count; warn(message) once per cell and reason.
local function drop(rec, reason, warn, message)
  dropped[reason] = dropped[reason] + 1
  if rec and not rec.warned[reason] then
    rec.warned[reason] = true
    warn(message)
  end
end

local WHY = {
  name = "a metric name must be 1 to 64 of A-Z a-z 0-9 _ . -",
  value = "a metric value must be a finite int or float",
  tags = "metric tags: at most 8, names [A-Za-z_][A-Za-z0-9_]* (not cell, "
         .. "not __*), values str (<= 128 bytes), int, float or bool",
}

-- Record a metric event; warn(message) is how a drop is reported.
function metrics.record(ev, warn)
  local cell = type(ev.cell) == "string" and ev.cell or "?"
  local rec = cell_record(cell)
  local why = metrics.refusal(ev)
  if why then
    return drop(rec, "invalid", warn, "metric dropped: " .. WHY[why]
                .. "; later ones from this cell are dropped without a warning")
  end
  local family = metrics.PREFIX .. ev.name:gsub("[.%-]", "_")
  local labels = label_text(cell, ev.tags)
  local fam = families[family]
  if fam and fam[labels] ~= nil then fam[labels] = ev.value; return end
  if rec.n >= metrics.SERIES_PER_CELL or not make_room() then
    return drop(rec, "series", warn, string.format("metric series dropped: "
      .. "a cell keeps at most %d, all cells %d; later ones are dropped "
      .. "without a warning", metrics.SERIES_PER_CELL, metrics.SERIES_MAX))
  end
  families[family] = fam or {}
  families[family][labels] = ev.value
  rec.n, series = rec.n + 1, series + 1
  rec.keys[#rec.keys + 1] = { family, labels }
end

-- The cell named has closed: its series stay (a batch job's last values
-- are what it is for) until room is needed; a cell with none is forgotten
-- now. A name closed again while queued keeps its place: the queue holds
-- each name once, so it never outgrows the cells that have series.
function metrics.closed(name)
  local rec = cells[name]
  if not rec then return end
  if rec.n == 0 then cells[name] = nil; return end
  rec.closed = true
  if not queued[name] then
    queued[name] = true
    closed[#closed + 1] = name
  end
end

local function sorted(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- The guest families and the drop counters, as lines of exposition.
function metrics.lines(out)
  for _, family in ipairs(sorted(families)) do
    out[#out + 1] = string.format("# HELP %s Set by metric() in guest code: "
                                  .. "the last value.\n# TYPE %s gauge", family, family)
    local fam = families[family]
    for _, labels in ipairs(sorted(fam)) do
      out[#out + 1] = string.format("%s{%s} %s", family, labels, number(fam[labels]))
    end
  end
  out[#out + 1] = "# HELP isolate_metrics_dropped_total Guest metric() values "
                  .. "dropped: invalid, or past the series bound.\n"
                  .. "# TYPE isolate_metrics_dropped_total counter"
  for _, reason in ipairs({ "invalid", "series" }) do
    out[#out + 1] = string.format('isolate_metrics_dropped_total{reason="%s"} %d',
                                  reason, dropped[reason])
  end
  out[#out + 1] = "# HELP isolate_metrics_series Guest metric series kept.\n"
                  .. "# TYPE isolate_metrics_series gauge\n"
                  .. string.format("isolate_metrics_series %d", series)
  return out
end

-- ---- the file -------------------------------------------------------------------

-- A writer of path: write() puts text(), then renames it over path (the
-- node_exporter textfile collector never reads half a file); tick()
-- writes when interval seconds have passed since the last write.
-- Returns nil and why when path cannot be written now.
function metrics.file_writer(path, interval, text, now)
  local tmp = path .. ".tmp"
  local function write()
    local f, why = io.open(tmp, "w")
    if not f then return nil, why end
    local ok, werr = f:write(text())
    local closed_ok, cerr = f:close()
    if not ok or not closed_ok then
      os.remove(tmp)
      return nil, werr or cerr
    end
    return os.rename(tmp, path)
  end
  local ok, why = write()
  if not ok then return nil, why end
  local last = now()
  return {
    write = write,
    tick = function()
      if now() - last < interval then return end
      last = now()
      write()
    end,
  }
end

return metrics
