"""Asks nvidia-smi (allow-listed) then another program (blocked unless allowed)."""
import subprocess

try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    print(f"smi:{out.strip()[:40]}", flush=True)
except FileNotFoundError:
    print("smi:absent", flush=True)
print(subprocess.run(["echo", "hello"], capture_output=True, text=True, check=True).stdout.strip())
print("final_x val_loss:1.0 val_bpb:0.5")
