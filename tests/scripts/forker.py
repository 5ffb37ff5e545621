"""Forks a grandchild that leaves the process group and sleeps forever, then exits (no score)."""
import os
import sys
import time

pid = os.fork()
if pid == 0:
    os.setsid()  # escape the process group: only the run marker finds it
    time.sleep(300)
    os._exit(0)
print(f"grandchild:{pid}", flush=True)
sys.exit(0)
