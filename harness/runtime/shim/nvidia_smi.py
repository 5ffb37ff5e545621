"""Plausible `nvidia-smi` output for N H100s (the table, -L, --query-gpu CSV, topo, -q).

Scripts only log it; the last line of the table says it was simulated, so nobody mistakes a CPU run's
log for a GPU run's.
"""

from __future__ import annotations

import time

from harness.runtime.shim.cuda_api import GPU_NAME, TOTAL_MEMORY

DRIVER = "550.54.15"
CUDA = "12.4"
MIB = TOTAL_MEMORY // 2**20
NOTE = "Simulated by the harness CPU shim: no GPU in this run."


def _bus(i: int) -> str:
    return f"00000000:{0x18 + 0x10 * i:02X}:00.0"


def _uuid(i: int) -> str:
    return f"GPU-00000000-0000-0000-0000-{i:012d}"


# field -> (value for GPU i, unit)
_FIELDS = {
    "name": (lambda i: GPU_NAME, ""),
    "gpu_name": (lambda i: GPU_NAME, ""),
    "index": (lambda i: str(i), ""),
    "count": (None, ""),
    "uuid": (lambda i: _uuid(i), ""),
    "gpu_uuid": (lambda i: _uuid(i), ""),
    "pci.bus_id": (lambda i: _bus(i), ""),
    "gpu_bus_id": (lambda i: _bus(i), ""),
    "driver_version": (lambda i: DRIVER, ""),
    "memory.total": (lambda i: str(MIB), "MiB"),
    "memory.used": (lambda i: "1", "MiB"),
    "memory.free": (lambda i: str(MIB - 1), "MiB"),
    "memory.reserved": (lambda i: "0", "MiB"),
    "utilization.gpu": (lambda i: "0", "%"),
    "utilization.memory": (lambda i: "0", "%"),
    "temperature.gpu": (lambda i: "32", ""),
    "temperature.memory": (lambda i: "30", ""),
    "power.draw": (lambda i: "70.00", "W"),
    "power.limit": (lambda i: "700.00", "W"),
    "power.max_limit": (lambda i: "700.00", "W"),
    "clocks.sm": (lambda i: "1980", "MHz"),
    "clocks.current.sm": (lambda i: "1980", "MHz"),
    "clocks.max.sm": (lambda i: "1980", "MHz"),
    "clocks.mem": (lambda i: "2619", "MHz"),
    "clocks.max.mem": (lambda i: "2619", "MHz"),
    "compute_cap": (lambda i: "9.0", ""),
    "persistence_mode": (lambda i: "Enabled", ""),
    "pstate": (lambda i: "P0", ""),
    "mig.mode.current": (lambda i: "Disabled", ""),
    "fan.speed": (lambda i: "[N/A]", ""),
    "serial": (lambda i: f"165242300{i:04d}", ""),
    "vbios_version": (lambda i: "96.00.99.00.01", ""),
}


def render(argv: list[str], n_gpus: int) -> tuple[str, int]:
    """(stdout, returncode) for an nvidia-smi command line (argv[0] is the program)."""
    args = argv[1:]
    query = next((a.split("=", 1)[1] for a in args if a.startswith("--query-gpu=")), None)
    if query is None and "--query-gpu" in args:
        i = args.index("--query-gpu")
        query = args[i + 1] if i + 1 < len(args) else ""
    fmt = next((a.split("=", 1)[1] for a in args if a.startswith("--format=")), "")
    if query is not None:
        return _csv(query, fmt, n_gpus), 0
    if any(a.startswith("--query-compute-apps") or a.startswith("--query-apps") for a in args):
        return ("" if "noheader" in fmt else "pid, process_name, used_gpu_memory [MiB]\n"), 0
    if "-L" in args or "--list-gpus" in args:
        return "".join(f"GPU {i}: {GPU_NAME} (UUID: {_uuid(i)})\n" for i in range(n_gpus)), 0
    if args[:1] == ["topo"]:
        return _topo(n_gpus), 0
    if "-q" in args or "--query" in args:
        return _detail(n_gpus), 0
    return _table(n_gpus), 0


def _csv(query: str, fmt: str, n: int) -> str:
    fields = [f.strip() for f in query.split(",") if f.strip()]
    nounits = "nounits" in fmt
    lines = []
    if "noheader" not in fmt:
        head = []
        for f in fields:
            unit = _FIELDS.get(f, (None, ""))[1]
            head.append(f"{f} [{unit}]" if unit and not nounits else f)
        lines.append(", ".join(head))
    for i in range(n):
        row = []
        for f in fields:
            getter, unit = _FIELDS.get(f, (lambda i: "[N/A]", ""))
            value = str(n) if f == "count" else getter(i)  # type: ignore[misc]
            row.append(value if nounits or not unit else f"{value} {unit}")
        lines.append(", ".join(row))
    return "\n".join(lines) + "\n"


def _table(n: int) -> str:
    bar = "+-----------------------------------------+------------------------+----------------------+"
    out = [
        time.strftime("%a %b %d %H:%M:%S %Y"),
        "+-----------------------------------------------------------------------------------------+",
        f"| NVIDIA-SMI {DRIVER}              Driver Version: {DRIVER}      CUDA Version: {CUDA}     |",
        "|-----------------------------------------+------------------------+----------------------+",
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                        |               MIG M. |",
        "|=========================================+========================+======================|",
    ]
    for i in range(n):
        out += [
            f"| {i:>3}  {GPU_NAME:<26}  On  | {_bus(i):>18} Off |                    0 |",
            f"| N/A   32C    P0             70W /  700W |       1MiB / {MIB:>6}MiB |      0%      Default |",
            "|                                         |                        |             Disabled |",
            bar,
        ]
    out += [
        "",
        "+-----------------------------------------------------------------------------------------+",
        "| Processes:                                                                              |",
        "|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |",
        "|        ID   ID                                                               Usage      |",
        "|=========================================================================================|",
        "|  No running processes found                                                             |",
        "+-----------------------------------------------------------------------------------------+",
        NOTE,
    ]
    return "\n".join(out) + "\n"


def _topo(n: int) -> str:
    head = "\t" + "\t".join(f"GPU{i}" for i in range(n)) + "\tCPU Affinity\tNUMA Affinity"
    rows = [head]
    for i in range(n):
        cells = ["X" if j == i else "NV18" for j in range(n)]
        rows.append(f"GPU{i}\t" + "\t".join(cells) + "\t0-1\t0")
    return "\n".join(rows) + "\n" + NOTE + "\n"


def _detail(n: int) -> str:
    out = ["", "==============NVSMI LOG==============", "",
           f"Driver Version                            : {DRIVER}",
           f"CUDA Version                              : {CUDA}", "",
           f"Attached GPUs                             : {n}"]
    for i in range(n):
        out += [f"GPU {_bus(i)}", f"    Product Name                          : {GPU_NAME}",
                f"    GPU UUID                              : {_uuid(i)}",
                f"    FB Memory Usage", f"        Total                             : {MIB} MiB"]
    out.append(NOTE)
    return "\n".join(out) + "\n"
