"""The HTTP-level defences of the server and the demo (ASGI middleware; no model, no Gradio
import at module level).

- :class:`FramingHeaderGuard`, the outermost layer of ``lang-sam serve`` and ``lang-sam app``:
  a request whose framing headers could be read two ways is a 400 before anything reads it;
- :class:`UploadOnlyGuard`, in front of the demo: it reads and serves only files in Gradio's
  upload area, and answers 404 to calls of what the demo does not have;
- :func:`check_uploads`: Gradio's own uploaded-files check, on in a mounted demo too.

The serving guide's threat model says what each layer stops and which tests show it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from typing import Any, Sequence

from lang_sam.serving.service import DEFAULT_MAX_BODY_MB, MAX_JSON_DEPTH, json_depth

logger = logging.getLogger(__name__)

__all__ = ["FramingHeaderGuard", "UploadOnlyGuard", "check_uploads", "gradio_upload_dir", "inside",
           "send_json", "refuse", "FRAMING_HEADERS"]


async def send_json(send, status: int, body: dict, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer an ASGI request with ``status`` and the JSON ``body``."""
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


async def refuse(send, status: int, message: str) -> None:
    """Answer an ASGI request with ``status`` and ``{"error": message}``."""
    await send_json(send, status, {"error": message})


#: The headers that say how a request's body is framed and how it is to be parsed; each may come once.
FRAMING_HEADERS = (b"content-type", b"content-length", b"transfer-encoding")


class FramingHeaderGuard:
    """ASGI, the outermost layer of the server and of the standalone demo: an HTTP request that
    carries a :data:`FRAMING_HEADERS` header more than once (names compared without case), or both
    ``Content-Length`` and ``Transfer-Encoding``, is answered 400 (a JSON ``{"error": message}``)
    before anything reads its headers' values or its body.

    Why: the layers behind this one read headers in different ways (Starlette's ``Headers.get``
    keeps the first of a repeated header, ``dict(scope["headers"])`` the last, HTTP parsers differ
    on repeated lengths), so a request with two ``Content-Type`` headers could be checked as one
    type and parsed as another (issue 25: a JSON body declared ``application/json`` and then
    ``multipart/form-data`` passed the demo's file check as an upload and was read as JSON)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        counts = dict.fromkeys(FRAMING_HEADERS, 0)
        for name, _ in scope["headers"]:
            name = name.lower()
            if name in counts:
                counts[name] += 1
        repeated = [name.decode().title() for name, n in counts.items() if n > 1]
        if repeated:
            message = (f"the request carries more than one {' and more than one '.join(repeated)} header; "
                       f"send each of Content-Type, Content-Length and Transfer-Encoding at most once")
        elif counts[b"content-length"] and counts[b"transfer-encoding"]:
            message = "the request carries both Content-Length and Transfer-Encoding; send one of them"
        else:
            return await self.app(scope, receive, send)
        logger.warning("refused a request to %s with ambiguous framing headers", scope.get("path", ""))
        return await refuse(send, 400, message)


def gradio_upload_dir() -> str:
    """Where Gradio keeps uploads and its file cache: ``$GRADIO_TEMP_DIR``, else ``<temp>/gradio``
    (Gradio's own rule, read from Gradio when it exposes it)."""
    try:
        from gradio.utils import get_upload_folder
    except ImportError:
        return os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")
    return get_upload_folder()


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_FILE_ROUTE = re.compile(r"/file[=/](.*)$", re.DOTALL)


def inside(path: Any, folder: str) -> bool:
    """True when ``path`` (a client's string) names a file inside ``folder`` (a real path), after
    resolving symbolic links and ``..``; never for a URL, an empty or a non-string value."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path or _SCHEME.match(path):
        return False
    try:
        real = os.path.realpath(path)
    except (ValueError, OSError):  # a NUL byte, a loop of links
        return False
    return real != folder and real.startswith(folder + os.sep)


_API_ROUTE = re.compile(r"^/gradio_api/(?:call|run|api)/([^/]+)/?$")
_COMPONENT_SERVER = re.compile(r"^/gradio_api/component_server/?$")
_BOUNDARY = re.compile(rb';\s*boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))', re.IGNORECASE)


class UploadOnlyGuard:
    """ASGI middleware in front of the demo (served under ``prefix``: ``"/gradio"`` in the
    server, ``""`` standalone): the demo reads and serves only files in Gradio's upload area.

    Gradio accepts a file argument as ``{"path": ..., "meta": {"_type": "gradio.FileData"}}`` in
    the JSON body of its API calls, copies that file into its cache and then serves the copy
    at ``<prefix>/gradio_api/file=<copy>``; its own "uploaded by a user" check returns early when
    the Blocks was not started with ``launch()``, which is so for a demo mounted with
    ``gr.mount_gradio_app`` unless :func:`check_uploads` turns it on (issue 18: any file of the
    server could be read). This guard does not rely on that check:

    - a request with more than one ``Content-Type`` header is refused with 400 (the framework
      parses by the first, a ``dict`` of the headers keeps the last: issue 25);
    - every request body is read (at most ``max_body_bytes``) and, if it parses as JSON
      (nesting at most :data:`~lang_sam.serving.service.MAX_JSON_DEPTH`), whatever type it is
      declared as, every object in it with a ``"path"`` string (a file argument, with or without
      ``meta``) must name a file inside the upload area, after resolving symbolic links and ``..``:
      a URL, a relative path or any other file is refused with 403 before Gradio sees it. Only a
      ``multipart/form-data`` body that starts with its boundary (an upload: the parts are the
      uploaded files) streams through unread;
    - ``GET``/``HEAD`` ``.../file=<path>`` (and the old ``.../file/<path>``) are answered 403
      unless the path, resolved the same way, is inside the upload area (never a URL);
    - with ``blocks`` (the demo's Blocks), calls that name what the demo does not have are
      answered 404 before Gradio looks them up (Gradio answered 500): an API name
      (``.../call/<name>``, ``.../run/<name>``), a ``fn_index``, or the component server of a
      demo whose components have no server functions.

    The upload area is Gradio's (``$GRADIO_TEMP_DIR``, else ``<temp dir>/gradio``), where Gradio
    writes the files uploaded through the page and the images it shows.
    """

    def __init__(self, app, prefix: str = "", upload_dir: str | None = None,
                 max_body_bytes: int | None = int(DEFAULT_MAX_BODY_MB * 2**20), blocks: Any = None):
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.upload_dir = os.path.realpath(upload_dir or gradio_upload_dir())
        self.max_body_bytes = max_body_bytes
        # what the demo has (None when no Blocks was given: nothing is checked against it)
        self.api_names: set[str] | None = None
        self.fn_indices: set[int] = set()
        self.server_components: set[int] = set()
        if blocks is not None:
            self.api_names = {fn.api_name for fn in blocks.fns.values() if isinstance(fn.api_name, str)}
            self.fn_indices = set(blocks.fns)
            self.server_components = {i for i, block in blocks.blocks.items() if any(
                getattr(getattr(type(block), name, None), "_is_server_fn", False) for name in dir(type(block)))}

    def allowed(self, path: Any) -> bool:
        """True when ``path`` (a client's string) names a file inside the upload area."""
        return inside(path, self.upload_dir)

    def _file_paths(self, value: Any):
        """Every ``"path"`` string of an object in the parsed JSON ``value`` (depth is bounded)."""
        if isinstance(value, dict):
            if "path" in value:
                yield value["path"]
            for item in value.values():
                yield from self._file_paths(item)
        elif isinstance(value, list):
            for item in value:
                yield from self._file_paths(item)

    def _unknown(self, route: str, parsed: Any) -> str | None:
        """Why the call names something the demo does not have (None when it does not, or when
        the guard was given no Blocks)."""
        if self.api_names is None:
            return None
        name = _API_ROUTE.match(route)
        if name and name[1] not in self.api_names:
            return (f"this demo has no API endpoint named {name[1]!r:.60}; it has "
                    f"{', '.join(sorted(self.api_names))}")
        if _COMPONENT_SERVER.match(route) and not self.server_components:
            return "this demo's components have no server functions"
        if isinstance(parsed, dict):
            index = _as_int(parsed.get("fn_index"))
            if index is not None and index not in self.fn_indices:
                return (f"this demo has no function {str(index):.20}; its fn_index values are "
                        f"{', '.join(map(str, sorted(self.fn_indices)))}")
            component = _as_int(parsed.get("component_id")) if _COMPONENT_SERVER.match(route) else None
            if component is not None and component not in self.server_components:
                return f"this demo has no component {str(component):.20} with server functions"
        return None

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(self.prefix + "/") and path != self.prefix:
            return await self.app(scope, receive, send)
        route = path[len(self.prefix):]
        method = scope["method"]
        if method in ("GET", "HEAD"):
            served = _FILE_ROUTE.search(route)
            if served and not self.allowed(served[1]):
                return await refuse(send, 403, "this demo serves only the files uploaded through it "
                                                "and the images it made")
            return await self.app(scope, receive, send)
        types = [value for name, value in scope["headers"] if name.lower() == b"content-type"]
        if len(types) > 1:
            return await refuse(send, 400, "the request carries more than one Content-Type header; "
                                            "send one")
        declared = types[0] if types else b""
        kind = declared.split(b";")[0].strip().lower()
        unknown = self._unknown(route, None)
        if unknown:
            return await refuse(send, 404, unknown)
        body = bytearray()
        boundary = _BOUNDARY.search(declared) if kind == b"multipart/form-data" else None
        delimiter = b"--" + (boundary[1] or boundary[2]) if boundary else None
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if self.max_body_bytes is not None and len(body) > self.max_body_bytes:
                return await refuse(send, 413, f"request body is over this demo's limit of "
                                                f"{self.max_body_bytes:,} bytes")
            if delimiter and len(body) >= len(delimiter):
                if body.startswith(delimiter):  # an upload: its parts are the files, no JSON
                    return await self.app(scope, _replay(bytes(body), more, receive), send)
                delimiter = None  # declared multipart, but not: read it all and check it
        body = bytes(body)
        if json_depth(body) > MAX_JSON_DEPTH:
            return await refuse(send, 400, f"the request nests JSON deeper than {MAX_JSON_DEPTH}")
        try:
            parsed = json.loads(body) if body.strip() else None
        except ValueError:  # not JSON: nothing in it names a file for Gradio to read
            if kind in (b"", b"application/json"):
                return await refuse(send, 400, "the request body is not valid JSON")
            parsed = None
        if any(not self.allowed(p) for p in self._file_paths(parsed)):
            logger.warning("refused a file argument outside the demo's upload area on %s", path)
            return await refuse(send, 403, "this demo accepts only files uploaded through it")
        unknown = self._unknown(route, parsed)
        if unknown:
            return await refuse(send, 404, unknown)
        return await self.app(scope, _replay(body, False, receive), send)


def _as_int(value: Any) -> int | None:
    """``value`` as the integer Gradio's request models would read from it (None when they would
    not read one: the framework then answers 422 itself)."""
    try:
        from pydantic import TypeAdapter, ValidationError
    except ImportError:  # pragma: no cover - Gradio depends on pydantic
        return None
    if value is None:
        return None
    try:
        return TypeAdapter(int).validate_python(value)
    except ValidationError:
        return None


def _replay(head: bytes, more: bool, receive):
    """A ``receive`` that gives ``head`` (what was read already) first, then the rest of the body."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": head, "more_body": more}

    return replay


def check_uploads(demo) -> None:
    """Turn on, in a demo mounted with ``gr.mount_gradio_app``, Gradio's own check that a file
    argument of an event was uploaded (it is in Gradio's upload area, else the event fails with
    "it was not uploaded by a user"), as ``Blocks.launch()`` turns it on.

    Gradio (6.x) runs that check only when ``Blocks.has_launched`` is true, which ``launch()``
    sets and ``mount_gradio_app`` does not; the attribute is read by that check only. Call this
    after mounting (issue 25: with the check off, a request that got past the guard had the
    demo read any file of the server)."""
    if not hasattr(demo, "has_launched"):
        raise TypeError(f"expected a gradio Blocks with a has_launched attribute, got "
                        f"{type(demo).__name__}: this Gradio version checks uploads another way")
    demo.has_launched = True
