-- isolate.cli: the luaisolate command line, callable from Lua so the host
-- and the specs share it: `luaisolate [options] [script [args]]` (as
-- lua5.4), `run` and `version`; `check` lives in isolate.check and `doctor`
-- in isolate.doctor.
-- Options are parsed by argparse (Debian lua-argparse, rock "argparse"),
-- JSON is written by lua-cjson.
--
--   os.exit(require("isolate.cli").check({ "--explain", "web-scraper" }))
--
-- Output goes through io.stdout / io.stderr at call time, so a caller can
-- swap them to capture it.
local cli = {}

local EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
local PROG = "luaisolate"

local function out(s) io.stdout:write(s) end

-- ---- JSON (lua-cjson) ----------------------------------------------------------
-- Debian 12's lua-cjson (2.1.0) cannot write an empty array, prints numbers
-- with at most 14 significant digits and copies invalid UTF-8 through. So
-- the document is first copied with every string made valid UTF-8 (stray
-- bytes become U+FFFD); what cjson cannot write is put in as a string
-- "\255<token>\255" and the token spliced in after encoding. A \255 byte
-- is never valid UTF-8, so no string of the document can forge a token.
-- Paths stay readable: "/" is written as itself, not cjson's "\/".

local RAW = "\255"
local encoder -- made on first use: a script run without JSON never loads cjson

local function new_encoder()
  local e = require("cjson").new()
  e.encode_invalid_numbers(false) -- NaN and infinities are refused
  e.encode_max_depth(64)
  return e
end

local ARRAY = { __name = "isolate.json.array" }

-- t (a new table when nil) marked as a JSON array, also when empty.
function cli.json_array(t)
  return setmetatable(t or {}, ARRAY)
end

local function is_array(t)
  local mt = getmetatable(t)
  return mt == ARRAY or (type(mt) == "table" and mt.__name == "isolate.array")
end

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

-- A number cjson would print inexactly, as a raw token; else the number.
local function exact_number(x)
  if math.type(x) == "integer" then
    if x > -1e14 and x < 1e14 then return x end
    return RAW .. string.format("%d", x) .. RAW
  end
  if x ~= x or x == math.huge or x == -math.huge then return x end -- refused
  if tonumber(string.format("%.14g", x)) == x then return x end
  local s
  for digits = 15, 17 do
    s = string.format("%." .. digits .. "g", x)
    if tonumber(s) == x then break end
  end
  return RAW .. s .. RAW
end

local function prepare(v)
  local t = type(v)
  if t == "string" then return valid_utf8(v) end
  if t == "number" then return exact_number(v) end
  if t ~= "table" then return v end
  if is_array(v) and #v == 0 then return RAW .. "[]" .. RAW end
  local copy = {}
  for k, x in next, v do
    copy[type(k) == "string" and valid_utf8(k) or k] = prepare(x)
  end
  return copy
end

-- cli.json_encode(v) -> one line of JSON; raises on NaN, infinities,
-- functions, mixed or sparse tables. Tables marked with cli.json_array or
-- sandbox.array are arrays, also when empty; other empty tables are {}.
function cli.json_encode(v)
  encoder = encoder or new_encoder()
  local s = encoder.encode(prepare(v))
  -- cjson writes "/" as "\/"; a backslash it writes before "/" is always
  -- that escape (its own backslashes are doubled, "/" is never bare)
  s = s:gsub("\\/", "/")
  return (s:gsub('"' .. RAW .. '(.-)' .. RAW .. '"', "%1"))
end

-- ---- argument parsing -------------------------------------------------------

-- A parser with -h/--help that neither prints nor exits on its own.
function cli.new_parser(name, description, epilog)
  local p = require("argparse")(name, description, epilog):add_help(false)
    :help_max_width(79)
  p:flag("-h --help", "Show this help and exit 0.")
  return p
end

-- For a command that takes no arguments: collects them, so that the
-- usage error can name the first (argparse's says "too many arguments").
function cli.no_arguments(parser)
  parser:argument("unexpected"):args("*"):hidden(true)
  return function(args)
    if args.unexpected[1] then
      return string.format("unexpected argument '%s'", args.unexpected[1])
    end
  end
end

-- Did argv ask for help before any "--"?
local function wants_help(argv)
  for _, a in ipairs(argv) do
    if a == "--" then return false end
    if a == "-h" or a == "--help" then return true end
  end
  return false
end

function cli.help_text(parser)
  return (parser:get_help():gsub("^Usage: ", "usage: ")) .. "\n"
end

local function usage_text(parser)
  return (parser:get_usage():gsub("^Usage: ", "usage: ")) .. "\n"
end

-- A usage error: the reason, then the usage, on stderr; exit status 2.
local function usage_error(parser, reason)
  io.stderr:write(parser._name, ": ", reason, "\n", usage_text(parser),
                  "Try '", parser._name, " --help'.\n")
  return EXIT_USAGE
end

-- args, or nil and the exit status once help or a usage error is out.
-- check(args) may return a reason the arguments are wrong.
function cli.parse(parser, argv, check)
  if type(argv) ~= "table" then
    return nil, usage_error(parser, "arguments must be a list of strings")
  end
  for _, a in ipairs(argv) do
    if type(a) ~= "string" then return nil, usage_error(parser, "arguments must be strings") end
  end
  if wants_help(argv) then out(cli.help_text(parser)); return nil, EXIT_OK end
  local ok, args = parser:pparse(argv)
  if not ok then return nil, usage_error(parser, args) end
  local reason = check and check(args)
  if reason then return nil, usage_error(parser, reason) end
  return args
end

-- ---- check: isolate.check -------------------------------------------------------

function cli.check_parser() return require("isolate.check").parser() end

-- cli.check(argv) -> exit status; argv is what follows `check`.
function cli.check(argv) return require("isolate.check").check(argv) end

-- ---- version ------------------------------------------------------------------

function cli.version_parser()
  return cli.new_parser(PROG .. " version",
    "Print the luaisolate, Lua and CPython versions and the cell mode.")
end

local function print_version()
  local info = require("isolate.core").info()
  out(string.format("luaisolate %s\n%s\nCPython %s (%s sub-interpreter cells)\n",
                    info.version, info.lua, info.python, info.cell_mode))
end

function cli.version(argv)
  local parser = cli.version_parser()
  local opts, status = cli.parse(parser, argv, cli.no_arguments(parser))
  if not opts then return status end
  print_version()
  return EXIT_OK
end

-- ---- run: luaisolate [options] [script [args]] ---------------------------------

local COMMANDS = [==[
Commands (each takes --help):
  run [options] [script [args]]   the same as without a command
  check [options] FILE|NAME...    validate and compile policies
  doctor [options]                probe what this host can enforce
  version                         versions and cell mode
  gather [options] DIR            merge and check a sharded map's results
  submit [options] script [args]  run a script as shards on Slurm or Kubernetes
  help                            this text

Exit status: what the script passes to os.exit, else 0; 1 on an error;
2 on a usage error; 128+N when signal N (INT, TERM, HUP) stopped it.]==]

-- The options run shares with lua5.4 (-e, -l, -v) and its own. `order`
-- keeps -e and -l in command-line order, as lua5.4 runs them.
function cli.run_parser(name)
  local p = cli.new_parser(name or PROG .. " run",
    "Run a Lua script with the global `sandbox` (the isolate module), `arg` "
    .. "set as lua5.4 sets it. The script is a file, or - for standard input.", COMMANDS)
  p:usage("usage: " .. (name or PROG .. " run")
          .. " [options] [script [args]]")
  local function ordered(kind)
    return function(args, _, value)
      args.order = args.order or {}
      args.order[#args.order + 1] = { kind = kind, value = value }
    end
  end
  p:option("-e", "Execute the string stat."):argname("<stat>"):count("*")
    :action(ordered("e")):init(nil)
  p:option("-l", "Require library mod into global mod."):argname("<mod>"):count("*")
    :action(ordered("l")):init(nil)
  p:flag("-v --version", "Print the versions (as the version command).")
  p:option("--mode", "dev (default), hardened or compat: sandbox.configure's mode.")
    :choices(require("isolate.core").modes)
  p:option("--log-format", "text (the default) or json: how events are written, "
           .. "one line each (JSON: type, time, cell and the event's fields).")
    :choices({ "text", "json" })
  p:option("--log-file", "Append the event lines to PATH instead of stderr.")
    :argname("<path>")
  p:option("--log-level", "The lowest guest log level written: debug (with "
           .. "metric events), info, warning (default), error, critical.")
    :choices(require("isolate.events").LEVEL_NAMES)
  p:option("--metrics-file", "Write sandbox.metrics() to PATH (to PATH.tmp, then "
           .. "renamed) every --metrics-interval seconds and at exit.")
    :argname("<path>")
  p:option("--metrics-interval", "Seconds between --metrics-file writes (default 15).")
    :argname("<seconds>")
  p:option("--shard", "I/N: this run is shard I of N (sandbox.shard()).")
    :argname("<I/N>")
  return p
end

-- Options that take a value in the next argument unless written -eX,
-- --mode=X: where the options stop and the script begins.
local VALUE_OPTIONS = { ["--mode"] = true, ["--log-format"] = true,
                        ["--shard"] = true, ["--log-file"] = true,
                        ["--log-level"] = true, ["--metrics-file"] = true,
                        ["--metrics-interval"] = true }
local SHORT_VALUES = { e = true, l = true }

local function takes_next(a)
  if VALUE_OPTIONS[a] then return true end
  if a:sub(1, 2) == "--" then return false end
  return SHORT_VALUES[a:sub(-1)] and not a:sub(2, -2):find("[el]") or false
end

-- options, script index (or nil) of argv, as lua5.4 reads it: options
-- stop at the first argument that is not one, "-" or after "--".
local function split_script(argv)
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then return table.move(argv, 1, i - 1, 1, {}), argv[i + 1] and i + 1 end
    if a == "-" or a:sub(1, 1) ~= "-" then break end
    i = i + (takes_next(a) and 2 or 1)
  end
  local opts = table.move(argv, 1, math.min(i - 1, #argv), 1, {})
  return opts, argv[i] and i or nil
end

-- lua5.4's error message for a chunk that did not load: no traceback.
local function load_failed(msg)
  io.stderr:write(PROG, ": ", msg, "\n")
  return EXIT_INVALID
end

local function load_script(name)
  if name == "-" then return load(io.stdin:read("a"), "=stdin") end
  return loadfile(name)
end

local function configure(opts)
  local sandbox = require "isolate"
  _G.sandbox = sandbox
  -- every cell thread gets a cgroup of its own; where the kernel refuses,
  -- cells report that layer missing (hardened: refuse)
  sandbox.configure({ thread_cgroups = true, mode = opts.mode })
  require("isolate.shard").set_cli(opts.shard)
  -- events a script does not handle itself are shown (isolate.events)
  sandbox.log_events({ format = opts.log_format, file = opts.log_file,
                       level = opts.log_level })
  if opts.metrics_writer then cli.keep_metrics_file(opts.metrics_writer) end
end

-- --metrics-file: written at every tick past the interval (while the
-- script waits on cells), when os.exit is called and when the host's Lua
-- state closes (the script ended or raised). A signal ends the host at
-- once: the file then holds the last interval's values.
function cli.keep_metrics_file(writer)
  local core = require "isolate.core"
  local exit = os.exit
  -- at lua_close cells may be collected first: whatever fails, the file
  -- keeps its last good copy (write replaces it only once complete)
  local final = setmetatable({}, { __gc = function() pcall(writer.write) end })
  core.set_tick(function() local _ = final; writer.tick() end)
  os.exit = function(...) -- luacheck: ignore 122
    pcall(writer.write)
    return exit(...)
  end
end

-- The writer of --metrics-file (written once now, so that a path that
-- cannot be written is a usage error), or nil and why.
local function metrics_writer(a)
  local interval = 15
  if a.metrics_interval then
    interval = tonumber(a.metrics_interval)
    if not interval or interval ~= interval or interval <= 0 or interval == math.huge then
      return nil, "--metrics-interval must be a positive number of seconds"
    end
  end
  if not a.metrics_file then return nil end
  local sandbox = require "isolate"
  local w, why = require("isolate.metrics").file_writer(a.metrics_file, interval,
    sandbox.metrics, require("isolate.core").now)
  if not w then return nil, "cannot write --metrics-file: " .. tostring(why) end
  return w
end

-- Options whose values are only known good once tried: the log file opens,
-- the metrics file is written.
local function check_outputs(a)
  if a.log_file then
    local f, why = io.open(a.log_file, "a")
    if not f then return "cannot open --log-file: " .. why end
    f:close()
  end
  local w, why = metrics_writer(a)
  if why then return why end
  a.metrics_writer = w
end

-- The arg table as lua.c builds it from the whole command line (full[1]
-- the first argument): arg[0] = script, arg[1..] its arguments, negative
-- indices for the program and what came before; without a script arg[0]
-- is the program.
local function set_arg(full, script)
  script = script or 0
  local t = { [-script] = PROG }
  for i = 1, #full do t[i - script] = full[i] end
  _G.arg = t
end

-- The steps to run under the host's message handler: the -l and -e in
-- order, then the script with its arguments. Each call of the returned
-- function gives the next chunk and its arguments, for the host to call
-- (from C, so a traceback says "in main chunk" as lua5.4's does), or the
-- exit status once there is nothing left.
local function steps(opts, argv, script)
  local i = 0
  return function()
    i = i + 1
    local step = opts.order[i]
    if step and step.kind == "l" then
      return function(name) _G[name] = require(name) end, step.value
    elseif step then
      local f, msg = load(step.value, "=(command line)")
      if not f then return load_failed(msg) end
      return f
    end
    if not script or i > #opts.order + 1 then return EXIT_OK end
    local f, msg = load_script(argv[script])
    if not f then return load_failed(msg) end
    return f, table.unpack(argv, script + 1)
  end
end

-- argv: what follows `run` (or the whole command line without a command);
-- before: the arguments that preceded it ({"run"} or {}). An exit status,
-- or the body.
function cli.run(argv, before, name)
  local parser = cli.run_parser(name)
  local head, script = split_script(argv)
  local opts, status = cli.parse(parser, head, function(a)
    a.order = a.order or {}
    if not script and #a.order == 0 and not a.version then return "no script given" end
    if a.shard and not pcall(require("isolate.shard").parse, a.shard) then
      return "--shard must be I/N with 0 <= I < N, as in 0/4"
    end
    return check_outputs(a)
  end)
  if not opts then return status end
  if opts.version then print_version() end
  if not script and #opts.order == 0 then return EXIT_OK end
  configure(opts)
  local full = table.move(argv, 1, #argv, #before + 1, table.move(before, 1, #before, 1, {}))
  set_arg(full, script and script + #before)
  -- argparse, the parser and this module go before the script starts:
  -- Lua's GC paces itself by the live heap, and a cell's C memory waits
  -- for its collection, so a bigger heap left here would hold more of it
  -- (bench/soak.lua measured +0.3 to +1.5 MiB RSS). require() loads this
  -- module again from the host's preload.
  package.loaded.argparse, package.loaded["isolate.cli"] = nil, nil
  collectgarbage()
  return steps(opts, argv, script)
end

-- `luaisolate test [busted args]`: busted inside this host, so that specs
-- run their cells as `luaisolate run` does (thread cgroups, the host's
-- signal handling and shutdown). The steps: one chunk, busted's runner.
function cli.test(argv)
  if not pcall(require, "busted.runner") then
    io.stderr:write(PROG, ": test: busted is not installed for Lua 5.4 ",
                    "(Debian: apt-get install lua-busted)\n")
    return EXIT_INVALID
  end
  configure({})
  -- busted reports; the specs' own denials and exits would bury it
  require("isolate").log_events(false)
  -- --ignore-lua: a .busted `lua = ...` would run the specs elsewhere
  _G.arg = table.move(argv, 1, #argv, 2, { [-1] = PROG, [0] = "busted", "--ignore-lua" })
  local started = false
  return function()
    if started then return EXIT_OK end
    started = true
    return function() require("busted.runner")({ standalone = false }) end
  end
end

-- ---- the host's entry point -------------------------------------------------------

cli.COMMANDS = { "run", "check", "doctor", "test", "learn", "version", "gather", "submit",
                 "help" }

function cli.main_parser()
  return cli.run_parser(PROG)
end

-- cli.main(argv) -> exit status, or the steps of a run: a function whose
-- every call returns a chunk and its arguments for the host to call, until
-- it returns the exit status. argv[1] is the first argument.
function cli.main(argv)
  local cmd = argv[1]
  local rest = table.move(argv, 2, #argv, 1, {})
  if cmd == "run" then return cli.run(rest, { cmd }) end
  if cmd == "check" then return cli.check(rest) end
  if cmd == "doctor" then return require("isolate.doctor").doctor(rest) end
  if cmd == "version" then return cli.version(rest) end
  if cmd == "test" then return cli.test(rest) end
  if cmd == "learn" then return require("isolate.learn").learn(rest) end
  if cmd == "gather" then return require("isolate.scale").gather(rest) end
  if cmd == "submit" then return require("isolate.scale").submit(rest) end
  if cmd == "help" then out(cli.help_text(cli.main_parser())); return EXIT_OK end
  if cmd == nil then return usage_error(cli.main_parser(), "no script or command given") end
  -- a word that names no command and no file is a mistyped command
  if cmd ~= "-" and cmd:sub(1, 1) ~= "-" and not require("isolate.policy_files").exists(cmd) then
    return usage_error(cli.main_parser(),
      string.format("unknown command '%s' (commands: %s), and no such file",
                    cmd, table.concat(cli.COMMANDS, ", ")))
  end
  return cli.run(argv, {}, PROG)
end

-- Every parser the command line uses, by command (the man page names each
-- of their options: spec/doc_spec.lua checks it).
function cli.parsers()
  return { [""] = cli.main_parser(), run = cli.run_parser(), check = cli.check_parser(),
           version = cli.version_parser(),
           doctor = require("isolate.doctor").parser(),
           learn = require("isolate.learn").parser(),
           gather = require("isolate.scale").gather_parser(),
           submit = require("isolate.scale").submit_parser() }
end

return cli
