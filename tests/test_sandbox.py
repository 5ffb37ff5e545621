"""The sandbox against a script that attacks it (tests/scripts/attacks.py): network by ctypes, files outside its
working copy, a subprocess from a fake library file, a fork + setsid daemon, SIGKILL to its parent. Three
short numpy-only runs (about a second each on an idle machine)."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from harness.config import Config, load_config
from harness.data.shards import write_shard
from harness.run import run_submission
from harness.run.judge import judge_run
from harness.run.sandbox import namespace_support, protections_line

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "scripts"
NS = namespace_support()
HAVE_NS = all(NS.get(k) == "on" for k in ("pid_namespace", "mount_namespace", "net_namespace"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    toks = lambda n: np.concatenate([[1], rng.integers(3, 1024, n - 1)]).astype(np.uint16)  # noqa: E731
    write_shard(d / "fineweb_train_000000.bin", toks(3000))
    write_shard(d / "fineweb_val_000000.bin", toks(3000))
    return d


def cfg_with(**run: object) -> Config:
    base = load_config()
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.raw.items()}
    raw["run"] = dict(raw.get("run", {}), **run)
    return Config(raw, base.path)


def attack_run(tmp_path: Path, data: Path, cfg: Config, contained: bool = True) -> tuple[object, dict[str, str]]:
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(SCRIPTS / "attacks.py", sub / "train_gpt.py")
    shutil.copy(SCRIPTS / "_shards.py", sub / "_shards.py")
    home = [Path.home() / ".bashrc", Path.home() / ".profile"]
    home_file = next((p for p in home if p.is_file()), ROOT / "README.md")
    env = {"ATTACK_TOML": str(ROOT / "harness.toml"), "ATTACK_HOME_FILE": str(home_file),
           "ATTACK_WRITE_TMP": f"/tmp/pgh-attack-{uuid.uuid4().hex}", "ATTACK_WRITE_ORIGIN": str(sub / "escaped.txt")}
    r = run_submission(sub, cfg, data_path=str(data), out_dir=tmp_path / "out", trace=False, env=env, timeout=60)
    lines = [ln.split(":", 2) for ln in (r.stdout_tail or "").splitlines() if ln.startswith("attack:")]
    seen: dict[str, str] = {}
    for _, name, outcome in lines:
        seen[name] = seen.get(name, "") + ("; " if name in seen else "") + outcome
    written = [p for p in (Path(env["ATTACK_WRITE_TMP"]), Path(env["ATTACK_WRITE_ORIGIN"])) if p.exists()]
    for p in written:
        p.unlink()
    assert not (contained and written), f"the script wrote {written}: {seen} {r.sandbox}"
    return r, seen


def _procs_in_pid_ns(link: str) -> list[int]:
    found = []
    for e in os.scandir("/proc"):
        if e.name.isdigit():
            try:
                if os.readlink(f"/proc/{e.name}/ns/pid") == link:
                    found.append(int(e.name))
            except OSError:
                pass
    return found


@pytest.mark.skipif(not HAVE_NS, reason=f"no PID / mount / network namespaces here: {NS}")
def test_attacks_are_contained_and_recorded(tmp_path: Path, data: Path) -> None:
    r, seen = attack_run(tmp_path, data, load_config())
    assert r.reason == "ok", (r.message, r.stderr_tail)
    # the parent it can signal is the namespace's init, which ignores it: the script, the harness go on
    assert seen["kill_parent"] == "ppid 1; survived"
    # network by ctypes: refused by the namespace, and witnessed by the parent (the hooks never saw it)
    assert seen["ctypes_connect"] == f"rc -1 errno {errno.ENETUNREACH}"
    wit = [n for n in r.net_attempts if n.get("how") == "namespace"]
    assert wit and wit[0]["refused"] >= 1
    d3 = next(x for x in judge_run(r, load_config()).rules if x.rule_id == "D3")
    assert d3.status.value == "FAIL", d3.summary
    # no view of the harness's settings nor the user's home; no write outside the working copy
    assert seen["attack_toml"] == f"refused {errno.ENOENT}"
    assert seen["attack_home_file"] == f"refused {errno.ENOENT}"
    # /tmp is the script's own (a private tmpfs): fixed names there work, nothing reaches the host's /tmp
    # (attack_run asserts the file is absent on the host)
    assert seen["attack_write_tmp"] == "wrote"
    # the submission's own folder: read-only, or not there at all when it lives under the host's /tmp
    assert seen["attack_write_origin"] in (f"refused {errno.EROFS}", f"refused {errno.ENOENT}")
    # a file named like a library's is not a library
    assert seen["fake_site_packages"] == "blocked" and seen["compiled_as_library"] == "blocked"
    assert [(s["argv"], s["allowed"], s["origin"]) for s in r.subprocesses] == [(["true"], False, "script")] * 2
    # the ctypes fork + setsid daemon died with the namespace
    link = seen["daemon"].split(" ns ")[1]
    assert _procs_in_pid_ns(link) == []
    prot = r.sandbox["protections"]
    assert {"pid_namespace", "mount_namespace", "network_namespace", "read_only_system", "hidden_folders"} <= set(
        prot["on"]) and prot["net_refused_by_namespace"] >= 1


def test_without_namespaces_the_harness_survives_and_says_what_was_off(tmp_path: Path, data: Path) -> None:
    r, seen = attack_run(tmp_path, data, cfg_with(namespaces=False), contained=False)
    # its parent is the launcher, not the harness: the launcher dies, the harness writes its record
    assert seen["kill_parent"].startswith("ppid ") and (tmp_path / "out" / "run.json").is_file()
    assert seen["fake_site_packages"] == "blocked" and seen["compiled_as_library"] == "blocked"
    prot = r.sandbox["protections"]
    assert prot["off"]["pid_namespace"] == "turned off ([run] namespaces = false)"
    assert "pid ns (turned off" in protections_line(prot)


def test_a_legal_run_shows_its_protections(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    rc = main(["run", str(SCRIPTS / "normal.py"), "--data-path", str(data), "--out", str(tmp_path / "o"),
               "--no-trace", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc in (0, 2)
    line = next(ln for ln in out.splitlines() if ln.startswith("protections: on:"))
    if HAVE_NS:
        assert "pid ns, mount ns, net ns, read-only system" in line
    else:
        assert "off:" in line
