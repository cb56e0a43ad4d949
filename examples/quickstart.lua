-- The README's first example: build/luaisolate examples/quickstart.lua
-- (inside the host `sandbox` is a global; elsewhere: require "isolate").
local sb <close> = sandbox.spawn{ backend = "subinterpreter", policy = "stdlib.readonly", imports = {"math"} }
sb:exec("from math import sqrt; post(sqrt(2))")
print(sb:recv(1))
