"""IO hooks inside the submission's process: data reads, artifacts, network, subprocesses.

Events (see harness.ledger): `train_read` (file, first, how; reads of one file closer than 0.5 s are
folded into one event, `coalesced` counting them), `read` (validation: file, lo, hi stream positions,
how, tagged: whether ctx.tag_validation received the array whose elements are those tokens; `lazy`
for a memory map, whose slices then report what they touch), `artifact_write` / `artifact_read`
(path relative to the working copy, bytes, how; a raw torch.save checkpoint - final_model.pt, not
compressed or quantized - is written as `phase checkpoint_write` instead, so the first artifact_write
is the compressed artifact B1 counts; reads of one carry checkpoint=true), `net` (host, port, blocked, how), `subprocess`
(argv, allowed, origin).

Limits: reads through os.read / mmap.mmap / C extensions that open files themselves are not seen;
a readinto() into a torch tensor's numpy view is tagged in place (the tracer must support that).
"""

from __future__ import annotations

from harness.runtime.context import RuntimeContext
from harness.runtime.io_hooks import files, imports, net, procs
from harness.runtime.io_hooks.state import HookState

_STATE: HookState | None = None


def install(ctx: RuntimeContext) -> HookState:
    global _STATE
    if _STATE is not None:
        return _STATE
    st = HookState(ctx, real_open=files._REAL_OPEN)  # the real open, saved before patching
    _STATE = st
    files.install(st)
    net.install(st)
    procs.install(st)

    from harness.runtime.io_hooks import arrays

    imports.when_imported("numpy", lambda np: arrays.install_numpy(st, np))
    imports.when_imported("torch", lambda torch: arrays.install_torch(st, torch))
    return st


def state() -> HookState | None:
    return _STATE


def flush() -> None:
    if _STATE is not None:
        _STATE.flush_train()


def after_fork() -> None:
    if _STATE is not None:
        _STATE.reset_after_fork()
