-- stdlib.readonly: pure-computation parts of the Python standard library.
--
-- Allows: importing the modules below (and their submodules) for
--   arithmetic, text, data structures, dates, hashing and encoding.
-- Does not allow: any file access (no fs rules: every open is denied),
--   any network access (no net rules), any broker capability, or modules
--   that reach the system (os, io, pathlib, socket, subprocess...).
-- Limits: none; pass limits = { wall_ms = ... } to spawn.
--
-- In a subinterpreter cell these rules are a guardrail, not a boundary
-- against hostile Python (see `luaisolate check --explain stdlib.readonly`).
return {
  version = 1,
  imports = {
    -- numbers
    "math", "cmath", "decimal", "fractions", "statistics", "random",
    -- text
    "json", "re", "string", "textwrap", "difflib", "unicodedata", "pprint",
    -- data structures and functional tools
    "collections", "itertools", "functools", "operator", "heapq", "bisect",
    "array", "struct", "copy", "enum", "dataclasses", "typing",
    -- dates (pure-Python implementations inside cells)
    "datetime", "zoneinfo",
    -- encodings and digests
    "base64", "binascii", "hashlib", "hmac",
  },
}
