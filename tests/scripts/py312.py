"""Python >= 3.12 only (PEP 701 f-string with nested quotes); no numpy: reads the shard with open()."""
import os
import struct
import sys

path = os.path.join(os.environ["DATA_PATH"], "fineweb_val_000000.bin")
with open(path, "rb") as f:
    header = struct.unpack("<256i", f.read(1024))
    tokens = struct.unpack(f"<{header[2]}H", f.read(2 * header[2]))
with open("final_model.int8.ptz", "wb") as f:
    f.write(b"model")
info = {"n": len(tokens)}
print(f"tokens:{f"{info["n"]}"} python:{sys.version_info[0]}.{sys.version_info[1]}")
print(f"final_x val_loss:{len(tokens) / 1000:.4f} val_bpb:{len(tokens) / 2000:.4f}")
