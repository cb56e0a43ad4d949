#!/usr/bin/python3
"""How long after a host dies its guest processes are gone.

    /usr/bin/python3 bench/hostkill.py build/luaisolate [runs=10]

Starts a luaisolate host with two process cells spinning in Python, sends
it SIGKILL or SIGTERM (alternating), and scans /proc every 2 ms until no
luaisolate-cell process naming that host is left running. Prints each run
and the medians. (The specs assert the 1 s bound; this measures.)
"""
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

SCRIPT = """
local a = sandbox.spawn{ backend = "process" }
a:start_exec("while True: pass")
local b = sandbox.spawn{ backend = "process" }
b:start_exec("while True: pass")
print(io.open("/proc/self/stat"):read("l"):match("^%d+"))
io.stdout:flush()
while true do a:result(0.2) end
"""


def guests(pid):
    key = b"luaisolate-cell\0--zygote\0" + str(pid).encode() + b"\0"
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if f.read().startswith(key):
                        found.append(d)
            except OSError:
                pass
    return found


def one(host, script, sig):
    p = subprocess.Popen([host, "run", script], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, restore_signals=True)
    pid = int(p.stdout.readline())
    deadline = time.monotonic() + 10
    while len(guests(pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    os.kill(pid, sig)
    while guests(pid) and time.monotonic() - t0 < 5:
        time.sleep(0.002)
    gone = time.monotonic() - t0
    p.wait()
    return gone


def main():
    host = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(SCRIPT)
    times = {"KILL": [], "TERM": []}
    try:
        for i in range(runs):
            name = "KILL" if i % 2 == 0 else "TERM"
            t = one(host, f.name, getattr(signal, "SIG" + name))
            times[name].append(t)
            print("run %2d SIG%-4s %.1f ms" % (i + 1, name, t * 1000))
    finally:
        os.unlink(f.name)
    every = times["KILL"] + times["TERM"]
    print("median %.1f ms over %d runs (SIGKILL %.1f ms, SIGTERM %.1f ms), max %.1f ms"
          % (statistics.median(every) * 1000, len(every),
             statistics.median(times["KILL"]) * 1000,
             statistics.median(times["TERM"]) * 1000, max(every) * 1000))


if __name__ == "__main__":
    main()
