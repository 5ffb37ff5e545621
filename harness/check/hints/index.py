"""The per-script index every hint pattern reads: scopes and flow-insensitive data flow by name
(validation data, targets, values picked by the target, training-data handles), which reads are
training-data reads, which functions take optimizer steps, and what counts as scoring first.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from harness.check.hints.patterns import HINT_PATTERNS
from harness.check.hints.syntax import (
    _assigned_names, _callee, _callee_or_attr, _dotted, _inside, _is_target_ident, _is_train_ident, _is_val_ident,
    _names, _pos, _text, _walk_scope,
)
from harness.check.hints.vocabulary import (
    _FUNCS, _LOG_CALL, _LOOPS, _LOSSY, _LOSS_CALL, _NOGRAD, _NOT_OPT, _OPT_RECV, _SCOPES, _SCORE_SUM, _evalish,
)
from harness.results import Hint


class _SkipData:
    """Callees whose arguments are not data flowing onward: eval/score calls and logging."""

    @staticmethod
    def search(name: str) -> bool:
        return _evalish(name) or bool(_LOG_CALL.search(name))


_SKIP_DATA = _SkipData()


@dataclass
class _Scope:
    node: ast.AST  # Module or FunctionDef
    name: str
    val: set[str]  # names holding validation data (or derived from it)
    tgt: set[str]  # aliases of the targets (t = y[i].item(), tgt_np = y.cpu().numpy())
    tprob: set[str]  # values picked out by the target (p_model = probs[..., y], cache.prob(ctx, tgt))
    train: set[str] = field(default_factory=set)  # training-data handles (stream = TokenStream(train_files))


class _Index:
    def __init__(self, tree: ast.Module, lines: list[str]) -> None:
        self.tree = tree
        self.lines = lines
        self._walks: dict[ast.AST, list[ast.AST]] = {}
        self._readers: dict[str, str] | None = None
        self._stepping: set[str] | None = None
        self._assigns: dict[ast.AST, list[tuple[ast.AST, ast.AST]]] = {}
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for ch in ast.iter_child_nodes(node):
                self.parent[ch] = node
        self.funcs: dict[str, list[ast.AST]] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        for node in ast.walk(tree):
            if isinstance(node, _FUNCS):
                self.funcs.setdefault(node.name, []).append(node)
            elif isinstance(node, ast.ClassDef):
                self.classes.setdefault(node.name, node)
        self.scopes: dict[ast.AST, _Scope] = {}
        for node in [tree, *[f for fs in self.funcs.values() for f in fs]]:
            name = getattr(node, "name", "<module>")
            sc = _Scope(node, name, self._taint(node, _is_val_ident, _SKIP_DATA), set(), set())
            self.scopes[node] = sc
            sc.tgt = self._aliases(node, _is_target_ident)
            sc.tprob = self._taint(node, lambda s, sc=sc: False, None,
                                   start=lambda v, sc=sc: self._picks_target(v, sc))
            sc.train = self._handles(node)
        self.nograd_funcs = {
            name for name, fs in self.funcs.items()
            if any(_NOGRAD.search(_text(d)) for f in fs for d in getattr(f, "decorator_list", []))
        }
        # names used anywhere (calls, callbacks, getattr strings): a function never used is dead code
        self.used: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self.used.add(node.id)
            elif isinstance(node, ast.Attribute):
                self.used.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                self.used.add(node.value)
        self.evidence: dict[ast.AST, bool] = {}
        self.calls: dict[str, list[ast.Call]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _callee(node)
                if name:
                    self.calls.setdefault(name, []).append(node)

    # ---- scopes and loops
    def walk(self, node: ast.AST) -> list[ast.AST]:
        """_walk_scope(node), memoized: the finders walk the same scopes and loops many times."""
        got = self._walks.get(node)
        if got is None:
            got = self._walks[node] = list(_walk_scope(node))
        return got

    def scope_of(self, node: ast.AST) -> ast.AST:
        p = self.parent.get(node)
        while p is not None and not isinstance(p, (*_FUNCS, ast.Module)):
            p = self.parent.get(p)
        return p if p is not None else self.tree

    def loops_around(self, node: ast.AST) -> list[ast.AST]:
        """Enclosing loops inside node's own scope, innermost first."""
        out = []
        p = self.parent.get(node)
        while p is not None and not isinstance(p, (*_SCOPES, ast.Module)):
            if isinstance(p, _LOOPS):
                out.append(p)
            p = self.parent.get(p)
        return out

    def in_call(self, node: ast.AST, pattern: re.Pattern[str]) -> bool:
        """Is node inside (an argument of) a call whose callee matches pattern, within its scope?"""
        p = self.parent.get(node)
        while p is not None and not isinstance(p, (*_SCOPES, ast.Module, ast.stmt)):
            if isinstance(p, ast.Call) and pattern.search(_callee(p) or "-"):
                return True
            p = self.parent.get(p)
        return False

    def stepping(self) -> set[str]:
        """Names of functions that take gradient steps, directly or through others."""
        if self._stepping is None:
            self._stepping = _stepping_functions(self)
        return self._stepping

    def steps_in(self, node: ast.AST) -> bool:
        """Does node take a gradient step, directly or by calling a function that does?"""
        stepping = self.stepping()
        return any(isinstance(c, ast.Call) and (_is_direct_step(c) or _callee(c) in stepping)
                   for c in self.walk(node))

    def reads_train(self, node: ast.AST) -> tuple[ast.AST, str] | None:
        """First read of training data in node: a train-data name handed to a call or iterated over,
        or a call to a function/class that reads training data (directly or through others)."""
        if self._readers is None:
            self._readers = _train_readers(self)
        scope = node if isinstance(node, _FUNCS) else self.scope_of(node)
        return _train_read(node, self._readers, self.scopes[scope].train)

    def line(self, lineno: int, col: int = 0) -> str:
        """The line as evidence; on a long (minified) line, the part starting at col."""
        if not 0 < lineno <= len(self.lines):
            return ""
        text = self.lines[lineno - 1]
        if len(text.strip()) <= 200 or col <= 0:
            return text.strip()[:200]
        return "…" + text[col:col + 199].strip()

    # ---- taint: names whose value derives from seed identifiers (flow-insensitive, per scope)
    def _assignments(self, scope: ast.AST) -> list[tuple[ast.AST, ast.AST]]:
        if scope in self._assigns:
            return self._assigns[scope]
        pairs: list[tuple[ast.AST, ast.AST]] = []
        self._assigns[scope] = pairs
        for n in self.walk(scope):
            if isinstance(n, ast.Assign):
                pairs += [(t, n.value) for t in n.targets]
            elif isinstance(n, (ast.AnnAssign, ast.AugAssign)) and n.value is not None:
                pairs.append((n.target, n.value))
            elif isinstance(n, (ast.For, ast.AsyncFor, ast.comprehension)):
                pairs.append((n.target, n.iter))
            elif isinstance(n, ast.withitem) and n.optional_vars is not None:
                pairs.append((n.optional_vars, n.context_expr))
            elif isinstance(n, ast.NamedExpr):
                pairs.append((n.target, n.value))
        return pairs

    def _aliases(self, scope: ast.AST, seed) -> set[str]:
        """Names bound to (a piece of) a seed name: t = y[i], t = int(y[0, i].item()), y_np = y.cpu()."""
        out: set[str] = set()
        pairs = [(t, v) for t, v in self._assignments(scope) if isinstance(t, ast.Name)]
        changed = True
        while changed:
            changed = False
            for t, v in pairs:
                base = v
                while True:
                    if isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute):
                        base = base.func.value  # y.cpu(), y[i].item(), y.reshape(-1)
                    elif isinstance(base, ast.Call) and _callee(base) in ("int", "long", "np.int64", "torch.tensor",
                                                                          "tensor", "asarray", "array") and base.args:
                        base = base.args[0]
                    elif isinstance(base, (ast.Subscript, ast.Attribute)):
                        base = base.value
                    else:
                        break
                if isinstance(base, ast.Name) and (base.id in out or seed(base.id)) and t.id not in out:
                    out.add(t.id)
                    changed = True
        return out

    def _handles(self, scope: ast.AST) -> set[str]:
        """Names bound to a training-data handle: stream = TokenStream(args.train_files),
        loader = DistributedTokenLoader(...), it = iter(train_loader). Batches drawn from a handle and
        values computed from them (Hessians) are data already read, not handles."""
        out: set[str] = set()
        pairs = [(t, v) for t, v in self._assignments(scope) if isinstance(v, ast.Call)]
        changed = True
        while changed:
            changed = False
            for target, call in pairs:
                name = _callee(call)
                if _NOT_READ.search(name or "-"):
                    continue
                args = [*call.args, *(k.value for k in call.keywords)]
                made = _is_train_ident(name or "-") or any(
                    isinstance(a, (ast.Name, ast.Attribute)) and (_is_train_ident(_callee_or_attr(a)) or
                                                                  _callee_or_attr(a) in out)
                    or isinstance(a, ast.Constant) and isinstance(a.value, str) and "fineweb_train" in a.value
                    for a in args)
                if made:
                    for n in _assigned_names(target):
                        if n not in out:
                            out.add(n)
                            changed = True
        return out

    def _picks_target(self, value: ast.AST, sc: _Scope) -> bool:
        for n in ast.walk(value):
            if isinstance(n, ast.Subscript) and self._has_target(n.slice, sc):
                return True
            if isinstance(n, ast.Call) and _callee(n) not in ("cross_entropy", "nll_loss") and \
                    any(self._has_target(a, sc) for a in n.args[1:]):
                return True  # probs.gather(-1, y), cache.prob(ctx, tgt)
        return False

    @staticmethod
    def _has_target(node: ast.AST, sc: _Scope) -> bool:
        return any(isinstance(n, ast.Name) and (n.id in sc.tgt or _is_target_ident(n.id)) for n in ast.walk(node))

    def _taint(self, scope: ast.AST, seed, blocker=None, start=None) -> set[str]:
        tainted: set[str] = set()
        if isinstance(scope, _FUNCS):
            a = scope.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                if seed(arg.arg):
                    tainted.add(arg.arg)
        prepared: list[tuple[list[str], set[str], bool]] = []
        for target, value in self._assignments(scope):
            if isinstance(value, ast.Call) and blocker is not None and blocker.search(_callee(value) or "-"):
                continue  # a score or a log line is not data
            names = {s for s, _ in _names(value, blocker)}
            hit = any(seed(x) for x in names) or (start is not None and start(value))
            prepared.append((list(_assigned_names(target)), names, hit))
        changed = True
        while changed:
            changed = False
            for targets, names, hit in prepared:
                if hit or not names.isdisjoint(tainted):
                    for name in targets:
                        if name not in tainted:
                            tainted.add(name)
                            changed = True
        return tainted

    def refs_val(self, node: ast.AST, scope: ast.AST) -> ast.AST | None:
        """Reference to validation data in node (outside eval/log calls), or None: the earliest direct
        name (val_tokens, args.val_files) if any, else the earliest name derived from one."""
        val = self.scopes[scope].val
        direct, derived = [], []
        for s, n in _names(node, _SKIP_DATA):
            if _is_val_ident(s):
                direct.append(n)
            elif s in val:
                derived.append(n)
        for group in (direct, derived):
            if group:
                return min(group, key=_pos)
        return None

    def refs_target(self, node: ast.AST, scope: ast.AST) -> ast.AST | None:
        tgt = self.scopes[scope].tgt
        for s, n in _names(node):
            if s in tgt or _is_target_ident(s):
                return n
        return None


def _is_direct_step(call: ast.Call) -> bool:
    f = call.func
    if not isinstance(f, ast.Attribute):
        return False
    if f.attr == "backward":
        return True
    if f.attr == "step":
        recv = _text(f.value)
        return bool(_OPT_RECV.search(recv)) and not _NOT_OPT.search(recv)
    if f.attr == "grad" and _dotted(f.value).endswith("autograd"):
        return True
    return False


def _stepping_functions(ix: _Index) -> set[str]:
    """Names of functions that take gradient steps, directly or through other functions."""
    stepping = {name for name, fs in ix.funcs.items()
                if any(isinstance(c, ast.Call) and _is_direct_step(c) for f in fs for c in ix.walk(f))}
    changed = True
    while changed:
        changed = False
        for name, fs in ix.funcs.items():
            if name not in stepping and any(isinstance(c, ast.Call) and _callee(c) in stepping
                                            for f in fs for c in ix.walk(f)):
                stepping.add(name)
                changed = True
    return stepping


def _is_score_evidence(ix: _Index, node: ast.AST) -> bool:
    hit = ix.evidence.get(node)
    if hit is None:
        hit = ix.evidence[node] = _score_evidence(ix, node)
    return hit


def _score_evidence(ix: _Index, node: ast.AST) -> bool:
    if isinstance(node, (ast.With, ast.AsyncWith)):
        if not any(_NOGRAD.search(_text(it.context_expr)) for it in node.items):
            return False
        for n in ix.walk(node):
            if isinstance(n, ast.Call) and (_LOSS_CALL.search(_callee(n) or "-") or _evalish(_callee(n))):
                return True
            if isinstance(n, ast.AugAssign):
                return True
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    base = t.value if isinstance(t, ast.Subscript) else t
                    if any(_LOSSY.search(s) for s in _assigned_names(base)):
                        return True
        return False
    if isinstance(node, ast.Call):
        name = _callee(node)
        if not name:
            return False
        if name == "eval" and isinstance(node.func, ast.Attribute) and not node.args:
            return False  # model.eval(): a mode switch, not a score
        if _evalish(name) or name in ix.nograd_funcs:
            return not ix.in_call(node, _LOG_CALL)
        return False
    if isinstance(node, ast.AugAssign):
        return any(_SCORE_SUM.search(s) for s in _assigned_names(node.target))
    return False


def _scored_before(ix: _Index, loop: ast.AST, node: ast.AST) -> bool:
    """Does loop's body score something before node (in source order)?"""
    p = _pos(node)
    for n in ix.walk(loop):
        if _pos(n) < p and not _inside(node, n) and _is_score_evidence(ix, n):
            return True
    return False


def _score_first(ix: _Index, node: ast.AST, depth: int = 3) -> bool:
    """Is node (a step or a call to a stepping function) preceded by scoring in an enclosing loop,
    locally or around every call of its function (up to `depth` callers up)?"""
    if any(_scored_before(ix, loop, node) for loop in ix.loops_around(node)):
        return True
    scope = ix.scope_of(node)
    if depth <= 0 or not isinstance(scope, _FUNCS):
        return False
    sites = [c for c in ix.calls.get(scope.name, []) if not _inside(c, scope)]
    return bool(sites) and all(_score_first(ix, c, depth - 1) for c in sites)


def _hint(ix: _Index, filename: str, pattern: str, node_or_line: ast.AST | int, message: str) -> Hint:
    lineno = node_or_line if isinstance(node_or_line, int) else getattr(node_or_line, "lineno", 0)
    col = 0 if isinstance(node_or_line, int) else getattr(node_or_line, "col_offset", 0) or 0
    return Hint(rule_id=HINT_PATTERNS[pattern], pattern=pattern, where=f"{filename}:{lineno}", message=message,
                snippet=ix.line(lineno, col))


# calls that name a path or list files without reading tokens (config classes build these)
_NOT_READ_CALLS = re.compile(r"^(?:join|environ|get|getenv|str|format|Path|expanduser|abspath|dirname|basename"
                             r"|glob|iglob|listdir|scandir|len|sorted|exists|isfile|isdir|setattr|getattr)$")


_LOADER_NAME = re.compile(r"loader|stream|dataset|sampler|batch|shard|calib", re.I)


class _NotRead:
    """Callees that name or list training files without reading tokens, and logging."""

    @staticmethod
    def search(name: str) -> bool:
        return bool(_NOT_READ_CALLS.search(name) or _LOG_CALL.search(name))


_NOT_READ = _NotRead()


def _train_read(node: ast.AST, readers: dict[str, str], handles: set[str] | frozenset[str] = frozenset()
                ) -> tuple[ast.AST, str] | None:
    """First read of training data in node. handles: names holding training data in node's scope."""

    def is_train(s: str) -> bool:
        return s in handles or _is_train_ident(s)

    for c in ast.walk(node):
        if isinstance(c, ast.Call):
            name = _callee(c)
            if _LOG_CALL.search(name or "-"):
                continue
            if name in readers:
                return c, f"{name}() ({readers[name]})"
            if _is_train_ident(name or "-"):
                return c, f"{name}()"  # DistributedTokenLoader(...)
            if _NOT_READ_CALLS.search(name or "-"):
                continue
            parts = [*c.args, *(k.value for k in c.keywords)]
            if isinstance(c.func, ast.Attribute):
                parts.append(c.func.value)  # train_loader.next_batch(...)
            for part in parts:
                hit = next((s for s, _ in _names(part, _LOG_CALL) if is_train(s)), None)
                if hit:
                    return c, f"'{hit}'"
        elif isinstance(c, (ast.For, ast.AsyncFor, ast.comprehension)):
            hit = next((s for s, _ in _names(c.iter, _LOG_CALL) if is_train(s)), None)
            if hit:
                return c.iter, f"'{hit}'"
    return None


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _train_readers(ix: _Index) -> dict[str, str]:
    """Functions/classes that read training data, directly or through others: name -> how. A loader-like
    name that merely mentions the training files counts; a config class that defines the path does not."""
    readers: dict[str, str] = {}
    bodies: dict[str, list[ast.AST]] = {name: fs for name, fs in ix.funcs.items()}
    for cname, c in ix.classes.items():
        bodies.setdefault(cname, []).append(c)
    for name, nodes in bodies.items():
        if _is_dunder(name):
            continue  # every class has an __init__: the class itself carries what its methods read
        for node in nodes:
            hit = _train_read(node, {}, ix.scopes[node].train if node in ix.scopes else frozenset())
            if hit is None and _LOADER_NAME.search(name):
                s = next((s for s, _ in _names(node, _LOG_CALL, deep=True) if _is_train_ident(s)), None)
                hit = (node, f"'{s}'") if s else None
            if hit:
                readers[name] = f"reads {hit[1]}"
                break
    changed = True
    while changed:
        changed = False
        for name, nodes in bodies.items():
            if name in readers or name in ("main",) or _is_dunder(name):
                continue
            for node in nodes:
                callee = next((_callee(c) for c in ast.walk(node) if isinstance(c, ast.Call)
                               and _callee(c) in readers and _callee(c) != name), None)
                if callee:
                    readers[name] = f"calls {callee}()"
                    changed = True
                    break
    return readers
