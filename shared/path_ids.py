"""Ids that hold a slash reach their route: ``/v1/specialists/a%2Fb/kpis`` names ``a/b``.

The id rule allows ``/`` in ids (helpdesks use it: ``support/tier-1``), but the server decodes
``%2F`` before routing, so such an id used to split into two path segments and answer 404.
The HTTP guard rewrites the routed path from the raw one, keeping each encoded slash as a lone
surrogate (which no id can hold, and which decoding a client's UTF-8 path never yields), and
the ``str`` path convertor turns it back into ``/`` in the route's parameter. Everything else
decodes exactly as the server does (an encoded NUL stays a NUL: a 422 naming the field).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote_to_bytes

from starlette.convertors import StringConvertor, register_url_convertor
from starlette.types import Scope

SLASH: Final = "\udfff"


class _IdConvertor(StringConvertor):
    def convert(self, value: str) -> str:
        return value.replace(SLASH, "/")


def install() -> None:
    """Make ``{param}`` path parameters of routes created from now on decode slashes."""
    register_url_convertor("str", _IdConvertor())


def keep_encoded_slashes(scope: Scope) -> None:
    """Rewrite ``scope["path"]`` so that an encoded slash stays inside its segment."""
    raw: bytes | None = scope.get("raw_path")
    if not raw or b"%2f" not in raw.lower() or scope.get("root_path"):
        return
    segments = []
    for segment in raw.split(b"?", 1)[0].split(b"/"):
        text = unquote_to_bytes(segment).decode("utf-8", "replace")
        segments.append(text.replace("/", SLASH))
    scope["path"] = "/".join(segments)
