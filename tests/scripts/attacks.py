"""A script that tries to leave the sandbox, then scores normally: each attempt prints `attack:<name>:<outcome>`.

Paths to reach are given in the environment (ATTACK_*). The last thing it does is SIGKILL its parent (the
harness, without a PID namespace): the report must still be written.
"""
import ctypes
import os
import signal
import socket
import struct
import sys
import time

import numpy as np

from _shards import score, train_tokens, val_tokens

libc = ctypes.CDLL(None, use_errno=True)


def say(name, outcome):
    print(f"attack:{name}:{outcome}", flush=True)


def try_read(name, path):
    try:
        with open(path, "rb") as fh:
            say(name, f"read {len(fh.read(100))}")
    except OSError as e:
        say(name, f"refused {e.errno}")


# network by ctypes: the in-process socket hooks never see it
fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 80) + socket.inet_aton("93.184.216.34") + bytes(8)
rc = libc.connect(fd, ctypes.c_char_p(addr), len(addr))
say("ctypes_connect", f"rc {rc} errno {ctypes.get_errno()}")

# files outside the working copy
for key in ("ATTACK_TOML", "ATTACK_HOME_FILE"):
    try_read(key.lower(), os.environ[key])
for key in ("ATTACK_WRITE_TMP", "ATTACK_WRITE_ORIGIN"):
    try:
        with open(os.environ[key], "w") as fh:
            fh.write("escaped")
        say(key.lower(), "wrote")
    except OSError as e:
        say(key.lower(), f"refused {e.errno}")

# a subprocess from a file that only looks like a library's
os.makedirs("site-packages", exist_ok=True)
with open("site-packages/evil.py", "w") as fh:
    fh.write("import subprocess\ndef go():\n    return subprocess.run(['true']).returncode\n")
sys.path.insert(0, os.path.abspath("site-packages"))
try:
    import evil

    say("fake_site_packages", f"ran {evil.go()}")
except PermissionError:
    say("fake_site_packages", "blocked")
ns = {}
exec(compile("import subprocess\ndef go():\n    return subprocess.run(['true']).returncode\n",
             os.path.join(os.path.dirname(np.__file__), "fake.py"), "exec"), ns)
try:
    say("compiled_as_library", f"ran {ns['go']()}")
except PermissionError:
    say("compiled_as_library", "blocked")

# a daemon by ctypes fork + setsid: must not outlive the run
pid = libc.fork()
if pid == 0:
    libc.setsid()
    time.sleep(120)
    os._exit(0)
say("daemon", f"pid {pid} ns {os.readlink('/proc/self/ns/pid')}")

counts = np.bincount(train_tokens(), minlength=1024).astype(np.float64) + 1
with open("final_model.int8.ptz", "wb") as f:
    f.write(counts.tobytes())
nll, bpb = score(val_tokens(), counts)
print(f"final_x val_loss:{nll:.6f} val_bpb:{bpb:.6f}", flush=True)
say("kill_parent", f"ppid {os.getppid()}")
os.kill(os.getppid(), signal.SIGKILL)
time.sleep(0.5)
say("kill_parent", "survived")
