"""Offline stand-in for `huggingface_hub` (harness/runtime/offline_fallback): importable, never downloads."""

from __future__ import annotations

from typing import Any

__version__ = "0.0.0+harness-offline"
_HOST = "huggingface.co"


def _refuse(what: str, repo_id: Any = None) -> OSError:
    from harness.runtime import io_hooks

    st = io_hooks._STATE  # noqa: SLF001 - the hooks' own state: None when no harness runtime runs
    if st is not None:
        st.net(_HOST, 443, f"huggingface_hub.{what}({repo_id!r})")
    return OSError(f"huggingface_hub.{what}: no network under the harness (offline stand-in; repo {repo_id!r})")


def snapshot_download(repo_id: Any = None, *args: Any, **kwargs: Any) -> str:
    raise _refuse("snapshot_download", repo_id)


def hf_hub_download(repo_id: Any = None, *args: Any, **kwargs: Any) -> str:
    raise _refuse("hf_hub_download", repo_id)


def login(*args: Any, **kwargs: Any) -> None:
    raise _refuse("login")


class HfApi:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise _refuse(f"HfApi.{name}", kwargs.get("repo_id", args[0] if args else None))

        return call
