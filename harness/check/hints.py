"""Static hints: shapes in train_gpt.py that *may* break a rule. Never a verdict.

The run and its ledger decide; a hint only says "look here", with the rule it may break, a pattern id,
file:line and the line itself. Patterns (rule, what the code looks like):

  ttt_before_score            C3  a loop takes optimizer steps / backward over validation tokens with
                                  no scoring earlier in the same loop (train on all chunks, then eval)
  min_over_passes             C4  minimum / best-of over per-token losses, or scores overwritten inside
                                  an epoch loop that trains on validation (the last epoch's scores kept)
  target_in_hash              C1  a hashed key that mixes in the target token and is used to read a table
  delta_vs_targets            C1  a fresh requires_grad tensor (delta, logit bias) optimized against the
                                  targets before they are scored (SLOT)
  val_calibration             B4  validation data passed to a calibration / GPTQ / Hessian function
  train_loader_after_training D2  training data read after the main training loop
  gate_on_target              C1  a mixing choice that compares cache and model probabilities of the
                                  true token
  unparsed                    -   the source does not parse here (e.g. Python 3.12 f-strings under 3.11)
  wrapped                     -   the file is a compressed exec() wrapper: unwrap it before scanning

Precision matters more than recall here (legal score-first TTT must stay quiet):
- a step counts as score-first when, before it, the same loop (or a loop around every call of the
  function holding it) evaluates a loss under no_grad / inference_mode, calls an eval/score function,
  or adds to a score accumulator (loss_sum, byte_count, ...);
- a loop is TTT only if its backward() loss derives from validation data and it reads no training
  data (the main training loop validates inline, and may reuse names);
- a stepping function nobody calls or references is dead code and is not judged alone; otherwise the
  hint names the chain of callers that reach it without scoring first;
- "training data" means a read (a loader or stream built from the train files, a batch drawn from it),
  not a config class that only defines the path, nor values computed from batches (Hessians).
Data flow is tracked per function, flow-insensitively, by names (validation data, targets, values picked
by the target, training-data handles); nothing crosses function boundaries except calls by name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from harness.results import Hint

# ------------------------------------------------------------------ vocabulary

RULES: dict[str, str] = {
    "ttt_before_score": "C3",
    "min_over_passes": "C4",
    "target_in_hash": "C1",
    "delta_vs_targets": "C1",
    "val_calibration": "B4",
    "train_loader_after_training": "D2",
    "gate_on_target": "C1",
    "unparsed": "-",
    "wrapped": "-",
}

_VAL_DATA = re.compile(
    r"(?:^|_)val(?:id|idation)?_?(?:tokens?|toks?|data|ids|files?|docs?|documents?|stream|loader|np|arr"
    r"|array|buf|buffer|seqs?|sequences?|chunks?|set|split|shards?|pattern|glob|bins?|x|y|inputs?"
    r"|targets?|batch(?:es)?|windows?|text)(?:$|_)|(?:^|_)(?:val|valid|validation)$", re.I)
_CONFIGISH = re.compile(r"(?:size|len|length|every|steps?|stride|count|num|freq|interval|limit|max|min|frac"
                        r"|ratio|mode|enabled|only|path|dir|fraction|bytes|time|ms)$", re.I)
_TRAIN_DATA = re.compile(r"(?:^|_)train_(?:loader|files?|shards?|pattern|stream|data(?:set)?|ds|iter(?:ator)?"
                         r"|glob|bins?)(?:$|_)|^DistributedTokenLoader$", re.I)
_TARGET = re.compile(r"(?:^|_)(?:y|ys|yb|tgt|tgts|target|targets|label|labels|next_tok|next_token|next_tokens"
                     r"|next_ids)(?:$|_)", re.I)
_TARGET_NOT = re.compile(r"pred|hat|logit|prob|dim|axis|size|len|lim|shape|mask|scale|min|max|key|count", re.I)
_LOSSY = re.compile(r"(?:^|_)(?:nll|nlls|loss|losses|logp|logps|log_probs?|logprobs?|bpb|bits|scores?|surprisal"
                    r"|ce)(?:$|_)", re.I)
_CACHEY = re.compile(r"ngram|n_gram|cache|gram|ppm|backoff|count|table|hist|unigram|memo", re.I)
_EVALISH = re.compile(r"(?:^|_)(?:eval|evaluate|validate|validation|score|scoring|scored|bpb)(?:$|_)"
                      r"|(?:^|_)val_(?:loss|bpb)(?:$|_)", re.I)
# eval_model(x, y) is a forward pass; load_validation_tokens(...) reads data
_NOT_EVAL_CALL = re.compile(r"model|net$|module|mode$|load|read|fetch|^get_|tokens|data|shard|file|loader", re.I)


def _evalish(name: str) -> bool:
    return bool(name and _EVALISH.search(name) and not _NOT_EVAL_CALL.search(name))


_LOSS_CALL = re.compile(r"(?:^|_)(?:cross_entropy|nll_loss|log_softmax|loss_bpb|nll|bpb)(?:$|_)", re.I)
_SCORE_SUM = re.compile(r"^(?!(?:epoch|train|ttt|running|step|micro)_)\w*(?:loss_sum|nll_sum|sum_nll|total_nll"
                        r"|nll_total|byte_sum|bytes_sum|byte_count|bytes_count|token_count|tok_count|bits_sum"
                        r"|scored\w*)$", re.I)
_OPT_RECV = re.compile(r"opt|sgd|adam|muon|lion|lamb|lbfgs|rmsprop", re.I)
_NOT_OPT = re.compile(r"sched|lr_|warmup|swa|ema|progress|pbar|bar\b", re.I)
_OPT_CTOR = re.compile(r"(?:^|\.)(?:SGD|Adam\w*|LBFGS|RMSprop|Adagrad|Adadelta|Muon\w*|Lion|NAdam|RAdam)$")
_CALIB = re.compile(r"calib|gptq|hessian|awq|quantiz|smoothquant", re.I)
_NOT_CALIB = re.compile(r"eval|score|bpb|loss|dequant", re.I)
_LOG_CALL = re.compile(r"^(?:print|log\d*|logger|logging|info|debug|warning|warn|error|write|format|print0"
                       r"|pprint|tqdm|set_description|set_postfix)$", re.I)
_EPOCHY = re.compile(r"epoch|(?:^|_)ep(?:$|_)|(?:^|_)pass(?:es)?(?:$|_)|pass_idx|(?:^|_)rounds?(?:$|_)|trajector"
                     r"|(?:^|_)reps?(?:$|_)", re.I)
_DELTAY = re.compile(r"delta|bias|slot|shift|offset|logit|tweak|perturb|adj", re.I)
_NOGRAD = re.compile(r"no_grad|inference_mode")
_STORE_CALLS = re.compile(r"(?:^|\.)(?:add\.at|index_add_?|scatter_add_?|scatter_|bincount|index_put_?|put_"
                          r"|setdefault)$")
_HASH_OPS = (ast.Mult, ast.BitXor, ast.Mod, ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr)

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


# ------------------------------------------------------------------ small AST helpers

def _walk_scope(node: ast.AST) -> Iterator[ast.AST]:
    """Descendants of node, not entering nested functions, lambdas or classes."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        n = stack.pop()
        yield n
        if not isinstance(n, _SCOPES):
            stack.extend(ast.iter_child_nodes(n))


def _callee(call: ast.Call) -> str:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return ""


def _callee_or_attr(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


def _text(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # unparse of odd nodes: text only feeds regexes
        return ""


def _pos(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 0), getattr(node, "col_offset", 0)


def _end(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "end_lineno", 0) or 0, getattr(node, "end_col_offset", 0) or 0


def _inside(node: ast.AST, outer: ast.AST) -> bool:
    return _pos(outer) <= _pos(node) and _end(node) <= _end(outer)


def _names(node: ast.AST, skip_calls=None, deep: bool = False) -> Iterator[tuple[str, ast.AST]]:
    """Identifiers (Name ids, attribute names, string constants) in node, skipping calls whose callee
    matches skip_calls (their arguments are not data flowing here: logging, eval calls ...). Nested
    functions and classes are entered only when deep (or when node itself is one)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Call) and skip_calls is not None and skip_calls.search(_callee(n) or "-"):
            continue
        if isinstance(n, ast.Name):
            yield n.id, n
        elif isinstance(n, ast.Attribute):
            yield n.attr, n
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) < 300:
            yield n.value, n
        if n is node or deep or not isinstance(n, _SCOPES):
            stack.extend(ast.iter_child_nodes(n))


def _is_val_ident(s: str) -> bool:
    if "fineweb_val" in s:
        return True
    return bool(s.isidentifier() and _VAL_DATA.search(s) and not _CONFIGISH.search(s))


def _is_train_ident(s: str) -> bool:
    return "fineweb_train" in s or bool(s.isidentifier() and _TRAIN_DATA.search(s) and not _CONFIGISH.search(s))


def _is_target_ident(s: str) -> bool:
    return bool(s.isidentifier() and _TARGET.search(s) and not _TARGET_NOT.search(s))


def _assigned_names(target: ast.AST) -> Iterator[str]:
    for n in ast.walk(target):
        if isinstance(n, ast.Name):
            yield n.id


# ------------------------------------------------------------------ the index

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


# ------------------------------------------------------------------ steps and scoring

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
    return Hint(rule_id=RULES[pattern], pattern=pattern, where=f"{filename}:{lineno}", message=message,
                snippet=ix.line(lineno, col))


# ------------------------------------------------------------------ patterns

_NEW_TENSOR = {"zeros", "ones", "empty", "full", "randn", "rand", "tensor", "zeros_like", "ones_like", "empty_like",
               "full_like", "randn_like", "new_zeros", "new_ones", "new_full", "new_empty", "clone", "detach"}


def _delta_vars(ix: _Index, scope: ast.AST) -> dict[str, ast.AST]:
    """Tensors created with requires_grad in this scope (not module parameters in __init__)."""
    if getattr(scope, "name", "") == "__init__":
        return {}
    out: dict[str, ast.AST] = {}
    fresh_tensors = {t.id for n in ix.walk(scope) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                     and _callee(n.value) in _NEW_TENSOR for t in n.targets if isinstance(t, ast.Name)}
    for n in ix.walk(scope):
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call):
            v = n.value
            fresh = any(k.arg == "requires_grad" and _text(k.value) == "True" for k in v.keywords)
            fresh = fresh or _dotted(v.func).endswith("Parameter")
            fresh = fresh or (isinstance(v.func, ast.Attribute) and v.func.attr == "requires_grad_"
                              and (not v.args or _text(v.args[0]) == "True"))
            if fresh:
                for name in _assigned_names(n.targets[0]):
                    out.setdefault(name, n)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "requires_grad_":
            # x.requires_grad_() counts only for a tensor made here (x = torch.zeros(...)), not for
            # existing parameters switched on for TTT (for p in params: p.requires_grad_(True))
            if isinstance(n.func.value, ast.Name) and (not n.args or _text(n.args[0]) == "True") and \
                    n.func.value.id in fresh_tensors:
                out.setdefault(n.func.value.id, n)
    return out


def _target_loss(ix: _Index, scope: ast.AST) -> ast.AST | None:
    for n in ix.walk(scope):
        if isinstance(n, ast.Call) and (_LOSS_CALL.search(_callee(n) or "-") or _LOSSY.search(_callee(n) or "-")):
            if any(ix.refs_target(a, scope) is not None for a in [*n.args, *(k.value for k in n.keywords)]):
                return n
    return None


def _single_value(ix: _Index, scope: ast.AST, name: str) -> ast.AST | None:
    """The value of the only assignment `name = value` in scope, else None."""
    vals = [n.value for n in ix.walk(scope) if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)]
    return vals[0] if len(vals) == 1 else None


def _head_slice(expr: ast.AST) -> ast.Slice | None:
    """The slice of `y[:s]` / `y.squeeze(0)[:s]` / `y[0, :s]` (the last slice of a subscript)."""
    if not isinstance(expr, ast.Subscript):
        return None
    sl = expr.slice
    if isinstance(sl, ast.Tuple):
        sl = next((e for e in reversed(sl.elts) if isinstance(e, ast.Slice)), None)
    return sl if isinstance(sl, ast.Slice) else None


def _fit_on_context_only(ix: _Index, scope: ast.AST, name: str) -> bool:
    """True when every loss that `name` is fitted against takes its targets from a prefix slice `[:u]`
    and the scope also slices from `u` on (`[u:...]`): the sliding-window pattern that fits on the window's
    context (scored by earlier windows) and scores the tokens after it. SLOT fits on the scored slice."""
    losses = [n for n in ix.walk(scope) if isinstance(n, ast.Call)
              and (_LOSS_CALL.search(_callee(n) or "-") or _LOSSY.search(_callee(n) or "-"))
              and any(s == name for s, _ in _names(n))]
    if not losses:
        return False
    uppers: set[str] = set()
    for loss in losses:
        tgts = [a for a in [*loss.args, *(k.value for k in loss.keywords)]
                if ix.refs_target(a, scope) is not None and not any(s == name for s, _ in _names(a))]
        if not tgts:
            return False
        for a in tgts:
            v = _single_value(ix, scope, a.id) if isinstance(a, ast.Name) else a
            sl = _head_slice(v) if v is not None else None
            if sl is None or sl.lower is not None or sl.upper is None or sl.step is not None:
                return False
            uppers.add(_text(sl.upper))
    lowers = {_text(sl.lower) for n in ix.walk(scope) if (sl := _head_slice(n)) is not None and sl.lower is not None}
    return bool(uppers) and uppers <= lowers


def _steps_context_fit(ix: _Index, scope: ast.AST, step: ast.Call) -> bool:
    """`opt.step()` where opt optimizes only fresh tensors fitted on context slices (_fit_on_context_only),
    or `loss.backward()` where loss is such a fit (a step on other parameters is its own site)."""
    if not (isinstance(step.func, ast.Attribute) and isinstance(step.func.value, ast.Name)):
        return False
    if step.func.attr == "backward":
        value = _single_value(ix, scope, step.func.value.id)
        deltas = _delta_vars(ix, scope)
        fitted = {s for s, _ in _names(value)} & set(deltas) if value is not None else set()
        return bool(fitted) and all(_fit_on_context_only(ix, scope, d) for d in fitted)
    ctor = _single_value(ix, scope, step.func.value.id)
    if not (isinstance(ctor, ast.Call) and _OPT_CTOR.search(_dotted(ctor.func)) and ctor.args):
        return False
    deltas = _delta_vars(ix, scope)
    params = {s for s, _ in _names(ctor.args[0])}
    return bool(params) and params <= set(deltas) and all(_fit_on_context_only(ix, scope, p) for p in params)


def _p_steps(ix: _Index, fn: str) -> list[Hint]:
    """ttt_before_score and delta_vs_targets: gradient steps on validation data not preceded by scoring."""
    hints: list[Hint] = []
    direct: dict[ast.AST, list[ast.Call]] = {}
    for node in ast.walk(ix.tree):
        if isinstance(node, ast.Call) and _is_direct_step(node):
            direct.setdefault(ix.scope_of(node), []).append(node)

    # functions that contain an unscored step (directly, or by calling such a function)
    unscored: set[str] = set()
    for scope, steps in direct.items():
        if isinstance(scope, _FUNCS) and any(not any(_scored_before(ix, lp, s) for lp in ix.loops_around(s))
                                             for s in steps):
            unscored.add(scope.name)
    changed = True
    while changed:
        changed = False
        for name, calls in ix.calls.items():
            if name not in unscored:
                continue
            for c in calls:
                sc = ix.scope_of(c)
                if isinstance(sc, _FUNCS) and sc.name not in unscored and sc.name != name:
                    if not any(_scored_before(ix, lp, c) for lp in ix.loops_around(c)):
                        unscored.add(sc.name)
                        changed = True

    flagged_funcs: set[str] = set()
    seen_loops: set[ast.AST] = set()

    # 1. SLOT-like: a fresh requires_grad tensor optimized against the targets
    for scope in ix.scopes:
        deltas = _delta_vars(ix, scope)
        if not deltas:
            continue
        loss = _target_loss(ix, scope)
        if loss is None:
            continue
        for name, created in deltas.items():
            optimized = any(
                isinstance(n, ast.Call)
                and (_OPT_CTOR.search(_dotted(n.func)) or _dotted(n.func).endswith("autograd.grad"))
                and any(s == name for s, _ in _names(n))
                for n in ix.walk(scope)
            )
            if not optimized or _fit_on_context_only(ix, scope, name):
                continue
            steps = [s for s in direct.get(scope, []) if not _score_first(ix, s)
                     and not any(ix.reads_train(lp) is not None for lp in ix.loops_around(s))]
            evalish = (ix.refs_val(scope, scope) is not None or _EVALISH.search(ix.scopes[scope].name)
                       or _DELTAY.search(name) or re.search(r"ttt|slot|adapt", ix.scopes[scope].name, re.I))
            if steps and evalish:
                hints.append(_hint(
                    ix, fn, "delta_vs_targets", created,
                    f"'{name}' is created with requires_grad and optimized against the targets "
                    f"(loss at line {loss.lineno}, step at line {steps[0].lineno}) before they are scored; "
                    f"C1/C3 forbid choosing parameters with the tokens being scored (SLOT)."))
                flagged_funcs.add(ix.scopes[scope].name)
                break

    # 2. TTT before score: steps (or calls to unscored-stepping functions) in loops over validation data
    sites: list[tuple[ast.AST, ast.Call, bool]] = []
    for scope, steps in direct.items():
        sites += [(scope, s, False) for s in steps]
    for name in unscored:
        for c in ix.calls.get(name, []):
            sites.append((ix.scope_of(c), c, True))
    sites.sort(key=lambda t: (0 if not t[2] else 1, _pos(t[1])))
    for scope, site, via_call in sites:
        sname = ix.scopes[scope].name if scope in ix.scopes else "<module>"
        if sname in flagged_funcs:
            continue
        if via_call and _callee(site) in flagged_funcs:
            continue  # the callee already carries the hint
        if via_call and ix.reads_train(site) is not None:
            continue  # it trains on training data (the main training run), even if it is handed val data
        if _score_first(ix, site):
            continue
        if _steps_context_fit(ix, scope, site):
            continue  # fits a fresh delta on the window's already-scored context, then scores after it
        if isinstance(scope, _FUNCS) and scope.name not in ix.used:
            continue  # never called nor passed anywhere: its callers would decide, and there are none
        loops = ix.loops_around(site)
        outer = loops[-1] if loops else None
        if outer is not None:
            if outer in seen_loops or ix.reads_train(outer) is not None:
                continue  # the main training loop (it reads training data) is not TTT
            ref = _val_loss_ref(ix, outer, scope) if not via_call else ix.refs_val(outer, scope)
        elif via_call:
            ref = next((r for a in [*site.args, *(k.value for k in site.keywords)]
                        if (r := ix.refs_val(a, scope)) is not None), None)
        else:
            continue  # a lone step outside any loop: its callers decide
        if ref is None:
            continue
        if outer is not None:
            seen_loops.add(outer)
        chain = _call_chain(ix, scope)
        flagged_funcs.update(name for name, _ in chain)
        if isinstance(scope, _FUNCS):
            flagged_funcs.add(scope.name)
        what = f"calls {_callee(site)}(), which takes gradient steps," if via_call else "takes a gradient step"
        where = (f"The loop at line {outer.lineno} {what}" if outer is not None else f"This code {what}")
        scored = "with no scoring before it in the same loop" if outer is not None else "with nothing scored first"
        reached = (" (reached from " + " <- ".join(f"{n}() line {ln}" if n != "<module>" else f"module line {ln}"
                                                   for n, ln in chain) + ")") if chain else ""
        hints.append(_hint(
            ix, fn, "ttt_before_score", site,
            f"{where} on validation data ('{_text(ref)[:40]}', line {getattr(ref, 'lineno', '?')}) {scored}"
            f"{reached}; C3 requires every token to be scored before any update uses it."))
    return hints


def _call_chain(ix: _Index, scope: ast.AST, depth: int = 4) -> list[tuple[str, int]]:
    """Who calls this function without scoring first: [(caller, line), ...] up to `depth` levels."""
    chain: list[tuple[str, int]] = []
    seen: set[str] = set()
    while depth > 0 and isinstance(scope, _FUNCS) and scope.name not in seen:
        seen.add(scope.name)
        site = next((c for c in ix.calls.get(scope.name, [])
                     if not _inside(c, scope) and not _score_first(ix, c)), None)
        if site is None:
            break
        scope = ix.scope_of(site)
        chain.append((getattr(scope, "name", "<module>"), site.lineno))
        depth -= 1
    return chain


def _val_loss_ref(ix: _Index, loop: ast.AST, scope: ast.AST) -> ast.AST | None:
    """The validation data a loop's gradient comes from: what its backward() losses derive from; for
    loops without backward() (closures, manual updates) any validation read in the loop."""
    backs = [c for c in ix.walk(loop) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
             and c.func.attr == "backward"]
    if not backs:
        return ix.refs_val(loop, scope)
    val = ix.scopes[scope].val
    if not any(s in val or _is_val_ident(s) for b in backs for s, _ in _names(b.func.value)):
        return None
    return ix.refs_val(loop, scope)


_STACKING = ("stack", "vstack", "hstack", "cat", "concatenate", "array", "tensor")


def _loss_like(node: ast.AST) -> bool:
    return any(_LOSSY.search(s) for s, _ in _names(node) if s.isidentifier())


def _eval_context(ix: _Index, scope: ast.AST, node: ast.AST) -> bool:
    """Evaluation code (touches validation data, or is named like it), or per-token losses (nll)."""
    if any(re.search(r"nll|per_tok|token_loss|tok_loss", s, re.I) for s, _ in _names(node)):
        return True
    name = getattr(scope, "name", "")
    return bool(re.search(r"eval|ttt|score|pass|val", name, re.I)) or ix.refs_val(scope, scope) is not None


def _p_min_over_passes(ix: _Index, fn: str) -> list[Hint]:
    hints: list[Hint] = []
    for scope in ix.scopes:
        for n in ix.walk(scope):
            if isinstance(n, ast.Call):
                name = _callee(n)
                d = _dotted(n.func)
                args = [*n.args, *(k.value for k in n.keywords)]
                hit = False
                if name in ("minimum", "fmin") and any(_loss_like(a) for a in args):
                    hit = True  # torch.minimum(best_nll, nll), np.minimum(...)
                elif name in ("min", "amin", "nanmin") and isinstance(n.func, ast.Attribute):
                    stacked = any(isinstance(x, ast.Call) and _callee(x) in _STACKING
                                  for a in [n.func.value, *args] for x in ast.walk(a))
                    two_tensors = len(n.args) >= 2 and not any(isinstance(a, ast.Constant) for a in n.args[:2])
                    if (stacked or two_tensors) and (_loss_like(n) or _loss_like(n.func.value)):
                        hit = True  # torch.min(torch.stack(per_pass_nll), dim=0), torch.min(a_nll, b_nll)
                elif name == "min" and isinstance(n.func, ast.Name) and ix.loops_around(n) and len(n.args) >= 2 \
                        and all(isinstance(a, (ast.Name, ast.Subscript, ast.Attribute)) for a in n.args):
                    # min(best_nll[i], nll[i]); not min(nll.numel(), limit)
                    if any(re.search(r"nll|per_tok|tok(?:en)?_loss|losses", s) for a in args for s, _ in _names(a)):
                        hit = True
                elif name == "where" and n.args and isinstance(n.args[0], ast.Compare):
                    cmp = n.args[0]
                    if isinstance(cmp.ops[0], (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) and \
                            _loss_like(cmp.left) and _loss_like(cmp.comparators[0]):
                        hit = True  # torch.where(nll < best_nll, nll, best_nll)
                if hit and not d.startswith(("math.", "builtins.")) and _eval_context(ix, scope, n):
                    hints.append(_hint(ix, fn, "min_over_passes", n,
                                       "Per-token losses are combined with a minimum / best-of; C4 forbids "
                                       "picking, per token, the best of several passes after seeing the target."))
        # scores overwritten inside an epoch/pass loop that trains on validation: the last epoch's are kept
        for loop in (n for n in ix.walk(scope) if isinstance(n, (ast.For, ast.AsyncFor))):
            if not (_EPOCHY.search(_text(loop.target)) or _EPOCHY.search(_text(loop.iter))):
                continue
            if ix.refs_val(loop, scope) is None or not ix.steps_in(loop):
                continue
            for st in ix.walk(loop):
                if not isinstance(st, ast.Assign):
                    continue
                t = st.targets[0]
                kept = isinstance(t, ast.Subscript) and _loss_like(t.value)
                if isinstance(st.value, ast.Call) and isinstance(t, (ast.Name, ast.Tuple)):
                    # val_loss, val_bpb = ttt_epoch(...) / eval_val(...): rebound every pass
                    callee = _callee(st.value)
                    scores = _evalish(callee) and callee != "eval"
                    scores = scores or (callee in ix.stepping() and _loss_like(t))
                    kept = kept or scores
                if kept:
                    hints.append(_hint(ix, fn, "min_over_passes", st,
                                       f"Scores are assigned inside the epoch/pass loop at line {loop.lineno} that "
                                       f"trains on validation, so the last pass's scores are kept; C4 requires "
                                       f"one scoring pass."))
                    break
    return hints


def _hash_exprs(node: ast.AST) -> Iterator[ast.AST]:
    """Top-level hashing expressions inside node: a BinOp tree using a hashing operator, or a hash() call."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.BinOp) and any(isinstance(b, ast.BinOp) and isinstance(b.op, _HASH_OPS)
                                            for b in ast.walk(n)):
            yield n
            continue
        if isinstance(n, ast.Call) and re.search(r"hash", _callee(n) or "", re.I):
            yield n
            continue
        if not isinstance(n, _SCOPES):
            stack.extend(ast.iter_child_nodes(n))


_READ_CALLS = ("get", "take", "gather", "index_select", "take_along_dim", "take_along_axis", "lookup")


def _read_sites(ix: _Index, scope: ast.AST) -> Iterator[tuple[ast.AST, ast.AST]]:
    """(read node, key expression): table[key], table.get(key), torch.gather(t, d, key), key in table."""
    for n in ix.walk(scope):
        if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Load):
            yield n, n.slice
        elif isinstance(n, ast.Call) and _callee(n) in _READ_CALLS and n.args:
            for a in n.args:
                yield n, a
        elif isinstance(n, ast.Compare) and any(isinstance(o, (ast.In, ast.NotIn)) for o in n.ops):
            yield n, n.left


def _p_target_in_hash(ix: _Index, fn: str) -> list[Hint]:
    hints: list[Hint] = []
    for scope in ix.scopes:
        # keys: names assigned from a hash expression that mixes in the target
        keys: dict[str, ast.AST] = {}
        for n in ix.walk(scope):
            if isinstance(n, ast.Assign):
                for h in _hash_exprs(n.value):
                    if ix.refs_target(h, scope) is not None:
                        for name in _assigned_names(n.targets[0]):
                            keys.setdefault(name, h)
        done: set[int] = set()
        for read, key in _read_sites(ix, scope):
            h = next((h for h in _hash_exprs(key) if ix.refs_target(h, scope) is not None), None)
            if h is None:
                used = [s for s, _ in _names(key) if s in keys]
                h = keys[used[0]] if used else None
            if h is None or read.lineno in done or _is_update_read(ix, read):
                continue
            done.add(read.lineno)
            hints.append(_hint(ix, fn, "target_in_hash", read,
                               f"A table is read with a hashed key that includes the target token "
                               f"('{_text(h)[:60]}', line {h.lineno}); C1/C2 require the distribution to be "
                               f"fixed before the target is looked at and normalized over the whole vocabulary."))
    return hints


def _is_update_read(ix: _Index, read: ast.AST) -> bool:
    """A read that only serves an update: table[k] = table[k] + 1, np.add.at(table, k, 1), ..."""
    p = ix.parent.get(read)
    while p is not None and not isinstance(p, ast.stmt):
        if isinstance(p, ast.Call) and _STORE_CALLS.search(_dotted(p.func) or "-"):
            return True
        p = ix.parent.get(p)
    if isinstance(p, ast.Assign) and isinstance(read, ast.Subscript):
        for t in p.targets:
            if isinstance(t, ast.Subscript) and _text(t.value) == _text(read.value) and \
                    _text(t.slice) == _text(read.slice):
                return True
    return False


def _target_prob(ix: _Index, node: ast.AST, scope: ast.AST) -> bool:
    """Does node carry the probability (or loss) of the true token?"""
    sc = ix.scopes[scope]
    if any(isinstance(n, ast.Name) and n.id in sc.tprob for n in ast.walk(node)):
        return True  # p_model = probs[..., y] earlier in the scope
    return ix._picks_target(node, sc)


def _p_gate_on_target(ix: _Index, fn: str) -> list[Hint]:
    hints: list[Hint] = []
    for scope in ix.scopes:
        for n in ix.walk(scope):
            pairs: list[tuple[ast.AST, ast.AST]] = []
            if isinstance(n, ast.Compare) and len(n.ops) == 1 and \
                    isinstance(n.ops[0], (ast.Lt, ast.LtE, ast.Gt, ast.GtE)):
                pairs.append((n.left, n.comparators[0]))
            elif isinstance(n, ast.Call) and _callee(n) in ("maximum", "max", "fmax") and len(n.args) == 2:
                pairs.append((n.args[0], n.args[1]))
            for a, b in pairs:
                texts = [_text(a), _text(b)]
                cachey = [bool(_CACHEY.search(t)) for t in texts]
                if not (any(cachey) and not all(cachey)):
                    continue
                if _target_prob(ix, a, scope) and _target_prob(ix, b, scope):
                    hints.append(_hint(ix, fn, "gate_on_target", n,
                                       "The cache and the model are compared on the true token's probability to "
                                       "choose the mix; C1 forbids a mixing weight that depends on the target."))
                    break
    return hints


def _p_val_calibration(ix: _Index, fn: str) -> list[Hint]:
    hints: list[Hint] = []
    done: set[int] = set()
    for scope in ix.scopes:
        for n in ix.walk(scope):
            if not isinstance(n, ast.Call):
                continue
            name = _callee(n)
            if not (name and _CALIB.search(name) and not _NOT_CALIB.search(name)):
                continue
            for a in [*n.args, *(k.value for k in n.keywords)]:
                ref = ix.refs_val(a, scope)
                if ref is not None and n.lineno not in done:
                    done.add(n.lineno)
                    hints.append(_hint(ix, fn, "val_calibration", n,
                                       f"Validation data ('{_text(ref)[:40]}') is passed to {name}(); B4/D1 forbid "
                                       f"calibrating quantization (GPTQ, Hessians) on validation tokens."))
                    break
    # calibration functions that read validation data themselves
    for name, fs in ix.funcs.items():
        if not (_CALIB.search(name) and not _NOT_CALIB.search(name)):
            continue
        for f in fs:
            for s, node in _names(f, _SKIP_DATA):
                if _is_val_ident(s) and not any(_is_val_ident(a.arg) for a in f.args.args):
                    ln = getattr(node, "lineno", f.lineno)
                    if ln not in done:
                        done.add(ln)
                        hints.append(_hint(ix, fn, "val_calibration", ln,
                                           f"{name}() reads validation data ('{s}'); B4/D1 forbid calibrating "
                                           f"quantization on validation tokens."))
                    break
    return hints


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


def _p_train_after_training(ix: _Index, fn: str) -> list[Hint]:
    reads_train = ix.reads_train

    # the main training loop: the largest loop that steps and reads training data
    best: tuple[int, ast.AST, ast.AST] | None = None
    for scope in ix.scopes:
        for loop in (n for n in ix.walk(scope) if isinstance(n, _LOOPS)):
            if ix.loops_around(loop):
                continue  # outermost loops only
            if not ix.steps_in(loop):
                continue
            if reads_train(loop) is None:
                continue
            span = _end(loop)[0] - loop.lineno
            if best is None or span > best[0]:
                best = (span, loop, scope)
    if best is None:
        return []
    _, loop, scope = best
    # positions, not lines: minified and unwrapped sources put several statements on one line
    regions: list[tuple[ast.AST, tuple[int, int]]] = [(scope, _end(loop))]
    if isinstance(scope, _FUNCS):  # the loop's function is called: what follows the call also counts
        for c in ix.calls.get(scope.name, []):
            regions.append((ix.scope_of(c), _end(c)))
    hints: list[Hint] = []
    for region, after in regions:
        body = getattr(region, "body", [])
        found = 0
        for stmt in _stmts_after(body, after):
            hit = reads_train(stmt)
            if hit is None:
                continue
            node, what = hit
            hints.append(_hint(ix, fn, "train_loader_after_training", node,
                               f"Training data is read after the main training loop (line {loop.lineno}) via "
                               f"{what}; D2/B2 require training-data reads (GPTQ calibration, Hessians) to finish "
                               f"inside the 600 s training budget."))
            found += 1
            if found >= 3:
                break
    return hints


def _stmts_after(body: list[ast.stmt], pos: tuple[int, int]) -> Iterator[ast.stmt]:
    """Statements starting at or after pos (line, column), recursing into compound statements that
    straddle it. `a = train(); serialize()` on one line: serialize() is after the call."""
    for st in body:
        if _pos(st) >= pos:
            yield st
        elif _end(st) > pos and not isinstance(st, _SCOPES):
            for part in ("body", "orelse", "finalbody", "handlers"):
                yield from _stmts_after(getattr(st, part, []) or [], pos)


# ------------------------------------------------------------------ parsing (with repair) and fallback

_FSTRING_START = re.compile(r"""(?<![\w])(?:[rR]?[fF]|[fF][rR])(['"])""")


def _blank_fstrings(line: str) -> str | None:
    """Replace the f-strings on one line by "" (columns shift; line numbers do not)."""
    out, i, changed = [], 0, False
    while True:
        m = _FSTRING_START.search(line, i)
        if not m:
            break
        q = m.group(1)
        last = line.rfind(q)
        if last <= m.end() - 1:
            return None  # unterminated on this line (a multi-line string): give up
        out.append(line[i:m.start()] + '""')
        i = last + 1
        changed = True
    if not changed:
        return None
    out.append(line[i:])
    return "".join(out)


def _parse(source: str) -> tuple[ast.Module | None, list[int], SyntaxError | None]:
    """Parse; on a syntax error blank f-strings on the failing line and retry (PEP 701 under 3.11)."""
    lines = source.splitlines(keepends=True)
    repaired: list[int] = []
    first_err: SyntaxError | None = None
    for _ in range(200):
        try:
            return ast.parse("".join(lines)), repaired, first_err
        except SyntaxError as e:
            first_err = first_err or e
            ln = e.lineno or 0
            if not 0 < ln <= len(lines) or ln in repaired:
                return None, repaired, first_err
            fixed = _blank_fstrings(lines[ln - 1])
            if fixed is None:
                return None, repaired, first_err
            lines[ln - 1] = fixed
            repaired.append(ln)
        except (ValueError, RecursionError, MemoryError) as e:  # NUL bytes, absurd nesting
            return None, repaired, SyntaxError(str(e))
    return None, repaired, first_err


def parse_lenient(source: str) -> ast.Module | None:
    """The module's AST, blanking f-strings this Python cannot parse (PEP 701 sources under 3.11);
    None when it still does not parse. Shared with the code-file scan in harness.submission."""
    return _parse(source)[0]


_REGEX_FALLBACK: list[tuple[str, re.Pattern[str], str]] = [
    ("min_over_passes", re.compile(r"\b(?:torch|np|numpy)\.(?:minimum|fmin)\s*\(.*(?:nll|loss)", re.I),
     "Per-token losses combined with a minimum (line scan); C4 forbids best-of over passes."),
    ("delta_vs_targets", re.compile(r"\b\w*(?:delta|bias|slot)\w*\s*=.*requires_grad\s*=\s*True", re.I),
     "A delta/bias tensor with requires_grad is created (line scan); C1/C3 forbid optimizing it against the "
     "targets before scoring."),
    ("target_in_hash", re.compile(r"(?:hash\w*\s*\(|\^|%).*\b(?:tgt|targets?|next_tok\w*|target_tok\w*)\b", re.I),
     "A hash that includes the target token (line scan); C1/C2 forbid keys that look at the target."),
    ("val_calibration", re.compile(r"(?:calib|gptq|hessian)\w*\s*\(.*\bval_(?:tokens|data|files)", re.I),
     "Validation data passed to calibration (line scan); B4/D1 forbid calibrating on validation."),
    ("train_loader_after_training", re.compile(r"(?:calib|gptq|hessian)\w*\s*\(.*\b(?:train_loader|train_files)",
                                               re.I),
     "Training data passed to calibration (line scan); D2/B2 require it inside the training budget."),
]


def _regex_scan(lines: list[str], filename: str) -> list[Hint]:
    hints = []
    for i, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        for pattern, rx, msg in _REGEX_FALLBACK:
            if rx.search(s):
                hints.append(Hint(RULES[pattern], pattern, f"{filename}:{i}", msg, s[:200]))
    return hints


def _wrapper_call(tree: ast.Module) -> ast.Call | None:
    """exec(<decompress>(<b85/b64 decode>(...))) at module level: a compressed-code wrapper."""
    for st in tree.body:
        if isinstance(st, ast.Expr) and isinstance(st.value, ast.Call) and _callee(st.value) == "exec":
            txt = _text(st.value)
            if re.search(r"decompress", txt) and re.search(r"b85decode|b64decode|a85decode|b32decode", txt):
                return st.value
    return None


# ------------------------------------------------------------------ entry point

def scan_source(source: str, filename: str = "train_gpt.py") -> list[Hint]:
    """Static hints for a submission script: where to look, never whether it is legal."""
    lines = source.splitlines()
    tree, repaired, err = _parse(source)
    hints: list[Hint] = []
    if err is not None:
        where = f"{filename}:{max(err.lineno or 1, 1)}"
        if tree is None:
            return [Hint(RULES["unparsed"], "unparsed", where,
                         f"The source does not parse ({err.msg or err}); only a line scan ran, so these hints "
                         f"are coarse and most patterns were not checked.",
                         lines[err.lineno - 1].strip()[:200] if err.lineno and err.lineno <= len(lines) else "")
                    ] + _regex_scan(lines, filename)
        hints.append(Hint(RULES["unparsed"], "unparsed", where,
                          f"The source does not parse under this Python ({err.msg}); f-strings on "
                          f"{len(repaired)} line(s) were blanked to analyse the rest (run it with Python >= 3.12).",
                          lines[err.lineno - 1].strip()[:200] if err.lineno and err.lineno <= len(lines) else ""))
    wrapper = _wrapper_call(tree)
    if wrapper is not None:
        hints.append(Hint(RULES["wrapped"], "wrapped", f"{filename}:{wrapper.lineno}",
                          "The script is a compressed exec() wrapper; hints need the unwrapped source.",
                          lines[wrapper.lineno - 1].strip()[:200] if wrapper.lineno <= len(lines) else ""))
        return hints
    try:
        ix = _Index(tree, lines)
        for finder in (_p_steps, _p_min_over_passes, _p_target_in_hash, _p_gate_on_target, _p_val_calibration,
                       _p_train_after_training):
            hints.extend(finder(ix, filename))
    except RecursionError:  # absurdly deep expressions: fall back to the line scan, say so
        return [Hint(RULES["unparsed"], "unparsed", f"{filename}:1",
                     "The source is too deeply nested to analyse; only a line scan ran, so these hints are coarse.",
                     lines[0].strip()[:200] if lines else "")] + _regex_scan(lines, filename)
    return _dedupe(hints)


def _dedupe(hints: Iterable[Hint]) -> list[Hint]:
    seen: set[tuple[str, str]] = set()
    out = []
    for h in hints:
        key = (h.pattern, h.where)
        if key not in seen:
            seen.add(key)
            out.append(h)

    def line_of(h: Hint) -> int:
        try:
            return int(h.where.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            return 0

    return sorted(out, key=lambda h: (line_of(h), h.pattern))
