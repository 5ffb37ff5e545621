"""The pytest plugin (entry point `pytest11: pgolf_harness`): fixtures, a marker, failure reports.

    def test_my_eval(harness_trace):                 # harness_trace(tokens, **traced_options) == traced(...)
        with harness_trace(tokens) as t: ...

    @pytest.mark.harness(vocab_size=64, seq_len=8)   # default traced() options for the test's blocks

    pytest --harness-report DIR                      # a failing test writes DIR/<test>.json: the report
                                                     # (docs/report-schema.md) of its last traced block

The fixture is session-scoped so that hypothesis `@given` tests may use it (no function-scoped-fixture
health check); which test is running is tracked by the hooks below. Every traced() block counts, with
or without the fixture; under hypothesis the last block of a failing test is the shrunk example's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.testing import session
from harness.testing.outcome import Outcome, RuleAssertion

_KEEP = 4  # blocks remembered per test (the last one is reported)


class _State:
    """The running test and its last judged blocks. A stack: pytester runs a pytest session inside a test."""

    def __init__(self) -> None:
        self.stack: list[tuple[pytest.Item, list[Outcome]]] = []
        self.sessions = 0

    @property
    def item(self) -> pytest.Item | None:
        return self.stack[-1][0] if self.stack else None

    @property
    def outcomes(self) -> list[Outcome]:
        return self.stack[-1][1] if self.stack else []

    def observe(self, t: session.Trace) -> None:
        if self.stack:
            kept = self.stack[-1][1]
            kept.append(t.outcome)
            del kept[:-_KEEP]


_STATE = _State()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgolf-harness", "Parameter Golf harness (harness.testing)")
    group.addoption("--harness-report", metavar="DIR", default=None,
                    help="write the harness report (JSON) of each failing test's last traced block into DIR")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "harness(**options): default harness.testing.traced() options for this "
                                       "test's harness_trace blocks (vocab_size=, seq_len=, tokenizer=, ...)")
    _STATE.sessions += 1
    if _STATE.observe not in session.OBSERVERS:
        session.OBSERVERS.append(_STATE.observe)


def pytest_unconfigure(config: pytest.Config) -> None:
    _STATE.sessions -= 1
    if _STATE.sessions <= 0 and _STATE.observe in session.OBSERVERS:
        session.OBSERVERS.remove(_STATE.observe)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _STATE.stack.append((item, []))


def _leaves(exc: BaseException | None) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            yield from _leaves(e)
    elif exc is not None:
        yield exc


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    out_dir = item.config.getoption("--harness-report")
    if not out_dir or rep.when != "call" or not rep.failed:
        return
    exc = call.excinfo.value if call.excinfo is not None else None
    # hypothesis reports several distinct failures as a group: the first RuleAssertion in it
    exc = next((e for e in _leaves(exc) if isinstance(e, RuleAssertion)), exc)
    found = exc.outcome if isinstance(exc, RuleAssertion) else (_STATE.outcomes[-1] if _STATE.outcomes else None)
    if found is None:
        return
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid).strip("_")[:180]
    path = found.write_report(Path(out_dir) / f"{name}.json", name=item.nodeid)
    rep.sections.append(("harness report", str(path)))


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _STATE.stack and _STATE.stack[-1][0] is item:
        _STATE.stack.pop()


@pytest.fixture(scope="session")
def harness_trace() -> Callable[..., Any]:
    """`harness_trace(tokens, **options)`: harness.testing.traced with the test's `harness` marker options
    as defaults; the evidence cites the test's own folder unless `code=` says otherwise."""

    def make(tokens: Any, **options: Any) -> Any:
        item = _STATE.item
        marker = item.get_closest_marker("harness") if item is not None else None
        merged = {**(marker.kwargs if marker is not None else {}), **options}
        if "code" not in merged and item is not None:
            merged["code"] = str(Path(str(item.path)).parent)
        return session.traced(tokens, **merged)

    return make
