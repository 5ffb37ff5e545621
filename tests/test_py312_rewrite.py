"""Python 3.12 f-strings on a 3.11 host (harness.run.py312): the rewrite keeps every line and the
program's meaning, is proven by comparing parse trees, unwraps exec'd compressed scripts, and refuses in
one line what it cannot prove."""

from __future__ import annotations

import base64
import lzma
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.run import py312
from harness.run.py312 import NeedsPython312, compiles, rewrite_source, rewrite_workdir

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12), reason="the rewrite is for hosts older than 3.12")

SCRIPTS = Path(__file__).parent / "scripts"


def run_both(src: str, env: dict) -> dict:
    new, _ = rewrite_source(src)
    assert compiles(new) is None
    ns = dict(env)
    exec(compile(new, "<rewritten>", "exec"), ns)
    return ns


# -- fixtures: one feature each ----------------------------------------------------------------------

CASES = [
    # (3.12 source, variable, expected value)
    ('x = f"{d["k"]}"\n', "x", "5"),  # same-quote nesting
    ("x = f'{d['k']!r:>6}'\n", "x", "     5"),  # single quotes, conversion and spec
    ('x = f"{f"{f"{a}"}"}"\n', "x", "7"),  # three levels of the same quote
    ('x = f"""{f"{f"{f"{a}"}"}"}"""\n', "x", "7"),  # four levels: needs every quote kind
    ('x = f"{w:{"<"}{n}}|"\n', "x", "hi    |"),  # format spec with nested fields holding strings
    ('x = f"{"\\n".join(l)}"\n', "x", "p\nq"),  # a backslash inside a field
    ('x = f"{"a\'b\\"c%d"}"\n', "x", "a'b\"c%d"),  # both quotes and a percent inside a field
    ('x = f"{d["k"]=}"\n', "x", 'd["k"]=5'),  # a self-documenting field keeps its text
    ('x = f"tab\\t{d["k"]}\\"q\\""\n', "x", 'tab\t5"q"'),  # escapes in the outer text stay as written
    ('x = f"{" ".join(f"{v:.1f}" for v in [1, 2])}"\n', "x", "1.0 2.0"),
    ('x = (f"{d["k"]}"\n     f"{a}")\n', "x", "57"),  # implicit concatenation over two lines
]
ENV = {"d": {"k": 5}, "a": 7, "l": ["p", "q"], "w": "hi", "n": 6}


@pytest.mark.parametrize("src,var,want", CASES)
def test_fixture_rewrites_and_evaluates_the_same(src: str, var: str, want: str) -> None:
    assert compiles(src) is not None  # 3.11 cannot parse the original
    new, lines = rewrite_source(src)
    assert lines and lines[0] == 1
    assert new.count("\n") == src.count("\n")
    assert run_both(src, ENV)[var] == want


def test_only_the_fstring_lines_change_and_line_numbers_hold() -> None:
    src = (
        "import sys\n"
        "def f(d):\n"
        "    # a comment with \"quotes\"\n"
        '    s = f"{d["a"]} and {d["b"]}"\n'
        "    raise ValueError(s)\n"
        'y = f"{sys.version_info[0]}"  # fine on 3.11 already\n'
        "\n"
        'z = f"{ {"k": 1}["k"] }"\n'
    )
    new, lines = rewrite_source(src)
    assert lines == [4, 8]
    old_l, new_l = src.splitlines(), new.splitlines()
    assert len(old_l) == len(new_l)
    assert [i for i, (a, b) in enumerate(zip(old_l, new_l), 1) if a != b] == [4, 8]
    ns: dict = {}
    exec(compile(new, "train_gpt.py", "exec"), ns)
    with pytest.raises(ValueError) as ei:
        ns["f"]({"a": 1, "b": 2})
    assert str(ei.value) == "1 and 2"
    tb = ei.tb
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_lineno == 5  # the original line of the raise


def test_source_3_11_already_parses_is_left_alone() -> None:
    src = 'x = f"{d[\'k\']}"\n'
    assert rewrite_source(src) == (src, [])


def test_broken_source_is_left_to_python() -> None:
    src = "def f(:\n    pass\n"
    assert rewrite_source(src) == (src, [])  # not 3.12 either: the script's own SyntaxError


def test_unprovable_rewrite_is_refused_in_one_line() -> None:
    # a comment inside a replacement field: 3.12 allows it, no 3.11 spelling keeps it on its lines
    src = 'x = 1\ny = f"{x # the x\n}"\n'
    with pytest.raises(NeedsPython312) as ei:
        rewrite_source(src, "train_gpt.py")
    msg = str(ei.value)
    assert "\n" not in msg and "train_gpt.py line 2" in msg


def test_pep695_generics_are_refused() -> None:
    with pytest.raises(NeedsPython312):
        rewrite_source("def first[T](xs: list[T]) -> T:\n    return xs[0]\n", "train_gpt.py")


def test_self_documenting_field_changes_would_be_refused() -> None:
    # the outer quote cannot move (its text holds both quotes), and `=` prints the field's own text
    src = 'x = f"\'\\"{d["k"]=}"\n'
    with pytest.raises(NeedsPython312):
        rewrite_source(src)


# -- property: generated nested f-strings -----------------------------------------------------------

_leaf = st.one_of(
    st.integers(-50, 50).map(lambda i: (repr(i), i)),
    st.text(alphabet="ab '\"%\n\t\\{}", max_size=6).map(lambda s: (None, s)),
)


def _build(draw_tree, quote: str) -> tuple[str, str]:
    """A 3.12 f-string source using `quote` at every level, and the value it evaluates to, computed
    independently of any parser: (source, value)."""
    kind, payload = draw_tree
    if kind == "leaf":
        code, value = payload
        if code is None:  # a string literal nested in the field, spelled with the same quote
            body = "".join({"\n": "\\n", "\t": "\\t", "\\": "\\\\", quote: "\\" + quote}.get(c, c) for c in value)
            return f"{quote}{body}{quote}", value
        return code, str(value)
    pieces, spec = payload
    src_parts, val_parts = [], []
    for text, child in pieces:
        src_parts.append(text.replace("{", "{{").replace("}", "}}"))
        val_parts.append(text)
        csrc, cval = _build(child, quote)
        if spec:
            src_parts.append("{" + csrc + ":>{" + quote + "8" + quote + "}}")
            val_parts.append(format(cval, ">8"))
        else:
            src_parts.append("{" + csrc + "}")
            val_parts.append(cval)
    return f"f{quote}{''.join(src_parts)}{quote}", "".join(val_parts)


_trees = st.recursive(
    _leaf.map(lambda p: ("leaf", p)),
    lambda children: st.tuples(
        st.lists(st.tuples(st.text(alphabet="xy =:", max_size=3), children), min_size=1, max_size=3),
        st.booleans(),
    ).map(lambda p: ("node", p)),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees.filter(lambda t: t[0] == "node"), quote=st.sampled_from(['"', "'"]))
def test_generated_nested_fstrings_evaluate_the_same(tree, quote) -> None:
    src, want = _build(tree, quote)
    code = f"result = {src}\n"
    try:
        new, lines = rewrite_source(code)
    except NeedsPython312:
        # refusing is allowed only where 3.11 really has no spelling: more levels than quote kinds, or three
        # levels whose string literal holds a quote itself (f"{f"{"\'\'\'"}"}": every delimiter family
        # left for the two outer levels is one the literal's text would end)
        depth = _depth(tree)
        assert depth > 3 or (depth == 3 and _quoted_leaf(tree)), (code, depth)
        return
    assert new.count("\n") == 1 and compiles(new) is None
    ns: dict = {}
    exec(new, ns)
    assert ns["result"] == want, (code, new)


def _depth(tree) -> int:
    kind, payload = tree
    if kind == "leaf":
        return 1 if payload[0] is None else 0
    pieces, spec = payload
    return 1 + max(max(_depth(c) for _, c in pieces), 1 if spec else 0)


def _quoted_leaf(tree) -> bool:
    """A string literal somewhere in the tree whose text holds both quote characters or three of one in a
    row: it then needs a delimiter family of its own (one lone quote is spelled by the other family)."""
    kind, payload = tree
    if kind == "leaf":
        t = payload[1]
        return payload[0] is None and ("'''" in t or '"""' in t or ("'" in t and '"' in t))
    return any(_quoted_leaf(c) for _, c in payload[0])


# -- the working copy: plain and wrapped scripts ----------------------------------------------------

INNER = (
    "import sys\n"
    "cfg = {'name': 'tiny', 'n': 3}\n"
    'print(f"run {cfg["name"]} n={cfg["n"]}")\n'
    "def boom():\n"
    '    raise RuntimeError(f"at {cfg["name"]}")\n'
)


def wrap(source: str) -> str:
    blob = base64.b85encode(lzma.compress(source.encode())).decode()
    return f'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("{blob}")))\n'


def test_wrapped_script_is_unwrapped_rewritten_and_emitted_plain(tmp_path: Path) -> None:
    script = tmp_path / "train_gpt.py"
    script.write_text(wrap(INNER))
    assert compiles(script.read_text()) is None  # the wrapper itself parses; its payload does not
    res = rewrite_workdir(tmp_path, script)
    assert [(f.path, f.lines, f.unwrapped) for f in res.files] == [("train_gpt.py", [3, 5], True)]
    note = res.notes()[0]
    assert note.startswith("source rewritten for Python 3.11: 2 f-strings at lines 3, 5 of train_gpt.py")
    assert "unwrapped" in note and "lzma" in note
    plain = script.read_text()
    assert plain.count("\n") == INNER.count("\n")  # the unwrapped source's lines, one for one
    ns: dict = {"__name__": "x"}
    exec(compile(plain, str(script), "exec"), ns)
    with pytest.raises(RuntimeError) as ei:
        ns["boom"]()
    tb = ei.tb
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_lineno == 5  # what `harness check` cites for the unwrapped source


def test_helper_module_rewritten_and_clean_files_untouched(tmp_path: Path) -> None:
    script = tmp_path / "train_gpt.py"
    script.write_text("from helper import g\nprint(g())\n")
    (tmp_path / "helper.py").write_text('d = {"a": 1}\ndef g():\n    return f"{d["a"]}"\n')
    res = rewrite_workdir(tmp_path, script)
    assert [(f.path, f.lines) for f in res.files] == [("helper.py", [3])]
    assert script.read_text() == "from helper import g\nprint(g())\n"
    assert res.count == 1


def test_host_decision() -> None:
    assert py312.host_needs_rewrite(sys.executable, "%d.%d" % sys.version_info[:2])
    assert not py312.host_needs_rewrite("/usr/bin/python3.12", "3.12")  # --python picks another one


# -- the run ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.data.shards import write_shard

    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name, n in (("fineweb_train_000000.bin", 3000), ("fineweb_val_000000.bin", 5000)):
        write_shard(d / name, rng.integers(1, 1024, size=n).astype(np.uint16))
    return d


def test_run_rewrites_and_reports_it(data: Path, tmp_path: Path) -> None:
    from harness.config import load_config
    from harness.run import run_submission

    r = run_submission(SCRIPTS / "py312.py", load_config(), data_path=str(data), out_dir=tmp_path / "out",
                       trace=False)
    assert r.reason == "ok", r.message + r.stderr_tail
    assert r.notes == ["source rewritten for Python 3.11: 1 f-strings at lines 13 of py312.py"]
    assert r.source_rewrite["count"] == 1


def test_run_refuses_what_it_cannot_prove(data: Path, tmp_path: Path) -> None:
    from harness.config import load_config
    from harness.run import run_submission

    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "train_gpt.py").write_text('x = 1\nprint(f"{x # c\n}")\n')
    r = run_submission(sub, load_config(), data_path=str(data), out_dir=tmp_path / "out", trace=False)
    assert r.reason == "needs_python" and r.failed and r.rc is None
    assert r.message.startswith("needs Python 3.12: train_gpt.py line 2") and "\n" not in r.message
