"""Measures its own compressed code size with `pyminify` as a subprocess, the way records do (check=True,
source on stdin), then through a file argument with --output; no torch."""
import lzma
import os
import subprocess
import sys
import tempfile

code = open(__file__, encoding="utf-8").read()
raw = code.encode("utf-8")
minified = subprocess.run(
    ["pyminify", "--no-rename-locals", "--no-hoist-literals", "--remove-literal-statements", "-"],
    input=raw, capture_output=True, check=True,
).stdout
assert minified and len(minified) < len(raw), (len(minified), len(raw))
assert minified.count(b"Measures its own") == raw.count(b"Measures its own") - 1  # the docstring went
compile(minified, "<minified>", "exec")
print(f"code_bytes raw:{len(raw)} minified:{len(minified)} lzma:{len(lzma.compress(minified))}", flush=True)

out = os.path.join(tempfile.mkdtemp(), "min.py")
r = subprocess.run(["pyminify", __file__, "-o", out, "--no-rename-locals"], capture_output=True, text=True)
assert r.returncode == 0 and r.stdout.strip() == __file__, (r.returncode, r.stdout, r.stderr)  # the CLI names the file
print(f"output_file bytes:{os.path.getsize(out)}", flush=True)

bad = subprocess.run(["pyminify", "/nonexistent/x.py"], capture_output=True)
print(f"missing_file rc:{bad.returncode}", flush=True)
try:
    subprocess.run(["pyminify", "-"], input=b"def f(:\n", capture_output=True, check=True)
except subprocess.CalledProcessError as e:
    print(f"syntax_error rc:{e.returncode}", flush=True)
print("final_x val_loss:1.0 val_bpb:0.5", flush=True)
sys.exit(0)
