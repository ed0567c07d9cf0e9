"""The labelling web app: a :class:`LabellingSession` (state) behind a JSON API on 127.0.0.1.

API (all JSON unless stated; POST bodies are ``application/json``):

| route | what |
|---|---|
| ``GET /`` | the page (``static/index.html``) |
| ``GET /api/config`` | surface, categories (key order), labeller, whether a model is loaded |
| ``GET /api/next`` | the frame to label now (``null`` when done), the one after it, progress |
| ``GET /api/frame/<name>.png`` | the frame drawn for display (PNG) |
| ``GET /api/guess/<name>`` | the model's class probabilities for the frame (only with a model) |
| ``GET /api/progress`` | counts for this labeller and the merged sheet |
| ``POST /api/vote`` | ``{"frame": name, "classes": [...]}`` |
| ``POST /api/skip`` | ``{"frame": name}`` |
| ``POST /api/undo`` | ``{}``: cancels the latest vote or skip; that frame is shown again |

Every vote, skip and undo is appended to ``votes/<labeller>.csv`` and re-merged
into ``labels.csv`` at once; the first vote on a frame also writes its data to
``images/<name>`` (``.npy``, row 0 the bottom line) for training. One session writes a
labeller's log at a time (a second one is refused on start, naming the first one's port
and PID); a session whose log another one took over (``--take-over``) answers its votes,
skips and undos with 409.

Requests are bounded: the request line and headers must arrive within ``timeout``
seconds in all (else the connection is closed); a POST body needs a ``Content-Length``
that is a non-negative integer (else 400) of at most ``max_body_bytes`` (else 413), and
must arrive within ``timeout`` seconds in all (else 408; a body shorter than declared
is 400). A body that
is not UTF-8 JSON, or nests deeper than :data:`MAX_JSON_DEPTH`, is 400 — never 500.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from qcodes_stmtip.labelling.lock import LogTakenOverError
from qcodes_stmtip.labelling.merge import MergeResult, column_title, merge_votes
from qcodes_stmtip.labelling.render import frame_png
from qcodes_stmtip.labelling.sources import FrameRef
from qcodes_stmtip.labelling.votes import VoteStore

#: Static files the page may request, with their content types.
STATIC_FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "label.js": "text/javascript; charset=utf-8",
    "label.css": "text/css; charset=utf-8",
}
_PNG_CACHE_SIZE = 16
#: Largest POST body (bytes): a vote is about a hundred.
MAX_BODY_BYTES = 1 << 16
#: Seconds a request (its line, headers and body) may take to arrive.
REQUEST_TIMEOUT_S = 10.0
#: Deepest nesting of arrays/objects accepted in a POST body.
MAX_JSON_DEPTH = 32
_JSON_TOKEN = re.compile(r'\\.|[\[\]{}"]', re.DOTALL)
#: Button titles where the Title Case of the category name is not clear enough.
DISPLAY_TITLES: dict[str, str] = {
    "dimers_asymmetries": "Dimers / asymmetries",
    "generic_defect": "Generic defect (bad, blurry)",
}


class LabellingError(ValueError):
    """A request the session cannot honour (unknown frame, bad classes…); carries an HTTP status."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = int(status)


class LabellingSession:
    """One labeller working through ``frames`` of ``surface``, writing into ``out_dir``.

    ``model``: path of a classifier bundle whose guess is shown (loaded, with
    TensorFlow, on the first guess asked for). The session is the only writer of the
    labeller's log while it lives (:class:`~qcodes_stmtip.labelling.votes.VoteStore`): a
    second session of the same labeller on the same folder raises
    :class:`~qcodes_stmtip.labelling.lock.LogInUseError`, unless ``take_over`` is true (the
    first one's writes are then refused with HTTP 409). :meth:`close` lets go of the log.
    Thread-safe.
    """

    def __init__(self, frames: Sequence[FrameRef], *, surface: str, labeller: str,
                 out_dir: str | Path, model: str | Path | None = None,
                 take_over: bool = False) -> None:
        if not frames:
            raise ValueError("frames must hold at least one frame to label")
        self.out_dir = Path(out_dir)
        self.surface = surface
        self.frames = list(frames)
        self._by_name: dict[str, FrameRef] = {}
        for ref in self.frames:
            if ref.name in self._by_name:
                raise ValueError(f"frames: two frames are named {ref.name!r}")
            self._by_name[ref.name] = ref
        self.model_path = None if model is None else Path(model)
        if self.model_path is not None and not self.model_path.exists():
            raise FileNotFoundError(f"model bundle {self.model_path} does not exist")
        self.store = VoteStore(self.out_dir, labeller, surface, take_over=take_over)
        self._lock = threading.RLock()
        self._pending: tuple[str, tuple[str, ...]] | None = None
        self._png: OrderedDict[str, bytes] = OrderedDict()
        self._ensemble: Any = None
        self._model_lock = threading.Lock()
        self._guesses: dict[str, dict[str, Any]] = {}
        try:
            self.merged = self._merge()
        except BaseException:
            self.store.close()
            raise

    def close(self) -> None:
        """Let go of the labeller's log (another session may write it from now on)."""
        self.store.close()

    def __enter__(self) -> LabellingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _merge(self) -> MergeResult:
        """Re-merge all logs (this labeller's from memory) into labels.csv."""
        return merge_votes(self.out_dir, self.surface,
                           known={self.store.labeller: self.store.events})

    # ---- frames ----------------------------------------------------------------------------
    def frame(self, name: str) -> FrameRef:
        """The frame called ``name``; :class:`LabellingError` (404) if it is not in this session."""
        try:
            return self._by_name[name]
        except KeyError:
            raise LabellingError(f"no frame named {name!r} in this session",
                                 HTTPStatus.NOT_FOUND) from None

    def _undecided(self) -> list[FrameRef]:
        decided = self.store.decisions()
        return [f for f in self.frames if f.name not in decided]

    def next_frame(self) -> dict[str, Any]:
        """The frame to show now (the one just undone, else the first undecided) and the next one."""
        with self._lock:
            todo = self._undecided()
            preselect: tuple[str, ...] = ()
            current = todo[0] if todo else None
            if self._pending is not None and self._pending[0] in {f.name for f in todo}:
                current = self._by_name[self._pending[0]]
                preselect = self._pending[1]
            upcoming = next((f.name for f in todo if current is not None and f is not current),
                            None)
            return {
                "frame": None if current is None else self._describe(current, preselect),
                "upcoming": upcoming,
                "progress": self.progress(),
            }

    def _describe(self, ref: FrameRef, preselect: tuple[str, ...]) -> dict[str, Any]:
        return {
            "name": ref.name,
            "session": ref.session,
            "source": ref.source,
            "index": self.frames.index(ref),
            "image": f"/api/frame/{ref.name}.png",
            "preselect": list(preselect),
        }

    def png(self, name: str) -> bytes:
        """The display PNG of frame ``name`` (cached); :class:`LabellingError` (422) if unreadable."""
        ref = self.frame(name)
        with self._lock:
            if name in self._png:
                self._png.move_to_end(name)
                return self._png[name]
        try:
            data = frame_png(ref.load())
        except (ValueError, OSError) as exc:
            raise LabellingError(f"cannot read frame {name!r} from {ref.source}: {exc}",
                                 HTTPStatus.UNPROCESSABLE_ENTITY) from exc
        with self._lock:
            self._png[name] = data
            while len(self._png) > _PNG_CACHE_SIZE:
                self._png.popitem(last=False)
        return data

    def _export(self, ref: FrameRef) -> Path:
        target = self.out_dir / "images" / ref.name
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = ref.load()
        except (ValueError, OSError) as exc:
            raise LabellingError(f"cannot read frame {ref.name!r} from {ref.source}: {exc}",
                                 HTTPStatus.UNPROCESSABLE_ENTITY) from exc
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(data, dtype=np.float64), allow_pickle=False)
        os.replace(tmp, target)
        return target

    # ---- decisions -------------------------------------------------------------------------
    def vote(self, name: str, classes: Sequence[str]) -> dict[str, Any]:
        """Record this labeller's vote ``classes`` on frame ``name``; export it; re-merge."""
        ref = self.frame(name)
        if isinstance(classes, str) or not isinstance(classes, Sequence):
            raise LabellingError(f"classes must be a list of category names, got {classes!r}")
        unknown = [c for c in classes if c not in self.store.categories]
        if unknown or not classes:
            raise LabellingError(f"classes must name at least one of {self.store.categories}; "
                                 f"got {list(classes)}")
        with self._lock:
            self._export(ref)
            try:
                self.store.vote(name, list(classes), session=ref.session, source=ref.source)
            except ValueError as exc:
                raise LabellingError(str(exc)) from exc
            self._pending = None
            self.merged = self._merge()
            return self.next_frame()

    def skip(self, name: str) -> dict[str, Any]:
        """Record that this labeller skips frame ``name``; re-merge."""
        ref = self.frame(name)
        with self._lock:
            self.store.skip(name, session=ref.session, source=ref.source)
            self._pending = None
            self.merged = self._merge()
            return self.next_frame()

    def undo(self) -> dict[str, Any]:
        """Cancel the latest vote or skip; its frame comes back with its classes preselected."""
        with self._lock:
            event = self.store.undo()
            if event is not None and event.frame in self._by_name:
                self._pending = (event.frame, event.classes)
            self.merged = self._merge()
            out = self.next_frame()
            out["undone"] = None if event is None else {
                "frame": event.frame, "action": event.action, "classes": list(event.classes)}
            return out

    def progress(self) -> dict[str, Any]:
        """Counts: frames in the session, voted / skipped by this labeller, left; merged sheet."""
        decided = self.store.decisions()
        mine = [d for name, d in decided.items() if name in self._by_name]
        voted = sum(1 for d in mine if d.action == "vote")
        skipped = sum(1 for d in mine if d.action == "skip")
        return {
            "total": len(self.frames),
            "voted": voted,
            "skipped": skipped,
            "remaining": len(self.frames) - voted - skipped,
            "merged_frames": len(self.merged.frames),
            "labellers": list(self.merged.labellers),
            "labels_csv": str(self.merged.labels_path),
        }

    def config(self) -> dict[str, Any]:
        """What the page needs to draw its buttons."""
        cats = self.store.categories
        return {
            "surface": self.surface,
            "labeller": self.store.labeller,
            "categories": [{"name": c, "title": DISPLAY_TITLES.get(c, column_title(c)),
                            "key": str(i + 1)}
                           for i, c in enumerate(cats)],
            "model": None if self.model_path is None else str(self.model_path),
        }

    # ---- model guess -----------------------------------------------------------------------
    def guess(self, name: str) -> dict[str, Any]:
        """The model's guess on frame ``name``: mean probability per class, decision, tip change.

        Loads the bundle (TensorFlow) on first use. :class:`LabellingError` (404)
        when no model was given; a frame too short to classify gives ``error``.
        """
        ref = self.frame(name)
        if self.model_path is None:
            raise LabellingError("no model bundle was given (--model)", HTTPStatus.NOT_FOUND)
        if name in self._guesses:
            return self._guesses[name]
        from qcodes_stmtip.classify.preprocess import (
            IMAGE_SIZE,
            FrameTooShortError,
            preprocess_frame,
        )

        with self._model_lock:
            if self._ensemble is None:
                from qcodes_stmtip.classify.bundle import load_bundle

                self._ensemble = load_bundle(self.model_path, self.surface)
            ensemble = self._ensemble
            manifest = getattr(ensemble, "manifest", None) or {}
            size = int(manifest.get("preprocessing", {}).get("image_size", IMAGE_SIZE))
            try:
                image = preprocess_frame(ref.load(), size)
            except FrameTooShortError as exc:
                return {"frame": name, "error": str(exc)}
            pred = ensemble.predict(image[None, :, :, None])
        decision = int(pred.decision[0])
        out = {
            "frame": name,
            "classes": list(ensemble.classes),
            "probabilities": [float(p) for p in pred.mean[0]],
            "decision": None if decision < 0 else ensemble.classes[decision],
            "tip_change_probability": None if pred.tip_change_probability is None
            else float(pred.tip_change_probability[0]),
        }
        self._guesses[name] = out
        return out


def _json_depth(text: str, limit: int) -> int:
    """Nesting depth of the arrays/objects in JSON ``text``, counting stops past ``limit``."""
    depth = deepest = 0
    in_string = False
    for match in _JSON_TOKEN.finditer(text):  # one linear pass over the special characters
        token = match.group()
        if token[0] == "\\":  # an escape pair: never a quote or a bracket
            continue
        if token == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif token in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        else:
            depth -= 1
    return deepest


def parse_json_body(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The JSON object of a POST body (empty: ``{}``); :class:`LabellingError` (400) if it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LabellingError(f"request body is not UTF-8 text: {exc}") from None
    if not text.strip():
        return {}
    if _json_depth(text, max_depth) > max_depth:
        raise LabellingError(f"request body nests deeper than {max_depth} levels")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise LabellingError(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise LabellingError("request body must be a JSON object")
    return body


def _static(name: str) -> bytes:
    return resources.files("qcodes_stmtip.labelling").joinpath("static", name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    session: LabellingSession  # set on the subclass made by LabellingServer
    server_version = "stmtip-label"
    #: Socket timeout (s) while reading the request line and headers; the body has a
    #: deadline of this many seconds in all. Set on the subclass made by LabellingServer.
    timeout: float = REQUEST_TIMEOUT_S
    max_body_bytes: int = MAX_BODY_BYTES

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # keep the terminal quiet; votes are in the CSV

    def setup(self) -> None:
        super().setup()
        # The request line and headers must arrive within ``timeout`` in all, not per recv.
        self._header_watchdog = threading.Timer(self.timeout, self._hang_up)
        self._header_watchdog.daemon = True
        self._header_watchdog.start()

    def _hang_up(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def parse_request(self) -> bool:
        try:
            return super().parse_request()  # reads the headers
        finally:
            self._header_watchdog.cancel()

    def finish(self) -> None:
        self._header_watchdog.cancel()
        super().finish()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, payload: object, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _host_ok(self) -> bool:
        """Only loopback host names: a web page elsewhere cannot reach us by DNS rebinding."""
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host in ("127.0.0.1", "localhost", "::1"):
            return True
        self._error(HTTPStatus.FORBIDDEN, f"Host {host!r} is not a loopback name")
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        if not self._host_ok():
            return
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, _static("index.html"), STATIC_FILES["index.html"])
            elif path.startswith("/static/") and path[8:] in STATIC_FILES:
                self._send(HTTPStatus.OK, _static(path[8:]), STATIC_FILES[path[8:]])
            elif path == "/api/config":
                self._json(self.session.config())
            elif path == "/api/next":
                self._json(self.session.next_frame())
            elif path == "/api/progress":
                self._json(self.session.progress())
            elif path.startswith("/api/frame/") and path.endswith(".png"):
                self._send(HTTPStatus.OK, self.session.png(path[len("/api/frame/"):-4]),
                           "image/png")
            elif path.startswith("/api/guess/"):
                self._json(self.session.guess(path[len("/api/guess/"):]))
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such page {path!r}")
        except LabellingError as exc:
            self._error(exc.status, str(exc))
        except Exception as exc:  # report, keep serving
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        if not self._host_ok():
            return
        try:
            if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                raise LabellingError("POST bodies must be application/json",
                                     HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
            body = parse_json_body(self._read_body(self._content_length()))
            if path == "/api/vote":
                self._json(self.session.vote(str(body.get("frame", "")), body.get("classes")))
            elif path == "/api/skip":
                self._json(self.session.skip(str(body.get("frame", ""))))
            elif path == "/api/undo":
                self._json(self.session.undo())
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such action {path!r}")
        except LabellingError as exc:
            self._error(exc.status, str(exc))
        except LogTakenOverError as exc:  # another session of this labeller writes the log now
            self._error(HTTPStatus.CONFLICT, str(exc))
        except Exception as exc:  # report, keep serving
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _content_length(self) -> int:
        """The declared body size (bytes); 400 unless a non-negative integer, 413 past the cap."""
        if self.headers.get("Transfer-Encoding"):
            raise LabellingError("POST bodies need a Content-Length (no Transfer-Encoding)",
                                 HTTPStatus.LENGTH_REQUIRED)
        values = self.headers.get_all("Content-Length") or ["0"]
        text = values[0].strip()
        if len(set(values)) > 1 or not text.isascii() or not text.isdigit():
            raise LabellingError(f"Content-Length {', '.join(values)!r} is not a non-negative integer")
        if len(text) > 12 or int(text) > self.max_body_bytes:
            raise LabellingError(f"request body of {text} bytes exceeds the "
                                 f"{self.max_body_bytes}-byte limit",
                                 HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return int(text)

    def _read_body(self, length: int) -> bytes:
        """Exactly ``length`` body bytes within ``timeout`` seconds in all (408), else 400."""
        deadline = time.monotonic() + self.timeout
        chunks: list[bytes] = []
        got = 0
        while got < length:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                chunk = self.rfile.read1(length - got)
            except TimeoutError:
                self.close_connection = True
                raise LabellingError(f"request body: {got} of {length} bytes arrived within "
                                     f"{self.timeout:g} s", HTTPStatus.REQUEST_TIMEOUT) from None
            if not chunk:
                self.close_connection = True
                raise LabellingError(f"request body ended after {got} of {length} bytes "
                                     "(Content-Length)")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)


class LabellingServer:
    """Serve ``session`` on ``http://127.0.0.1:<port>/`` (``port=0``: a free port).

    :meth:`start` serves from a daemon thread, :meth:`serve_forever` from the
    caller's; :meth:`stop` closes the socket and the session. Context manager (starts, stops).
    ``timeout``: seconds a request may take to arrive; ``max_body_bytes``: largest POST body.
    """

    def __init__(self, session: LabellingSession, port: int = 0, *,
                 timeout: float = REQUEST_TIMEOUT_S, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not 0 < timeout < float("inf"):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) \
                or max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be a non-negative integer, got {max_body_bytes!r}")
        handler = type("LabellingHandler", (_Handler,), {
            "session": session, "timeout": float(timeout), "max_body_bytes": max_body_bytes})
        self.session = session
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        try:  # a refused second session of this labeller names this port
            session.store.announce(port=self.port, url=self.url)
        except Exception:
            self._httpd.server_close()
            raise

    @property
    def port(self) -> int:
        """The TCP port served."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> LabellingServer:
        """Serve from a background thread; returns self."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="stmtip-label",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from this thread until :meth:`stop` is called from another (or KeyboardInterrupt)."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop serving, close the socket and the session (which lets go of the labeller's log)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        self.session.close()

    def __enter__(self) -> LabellingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
