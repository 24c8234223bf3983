"""`worldmodels play`: a page on 127.0.0.1 to drive inside M's dream (or the real env) from a browser.

The standard library's HTTP server and one static page (play/static: HTML, JS, CSS; no build step, nothing
fetched from the internet). The page asks for a session, then posts the keys held 20 times a second and
draws the frame each answer carries. JSON API (every POST body and answer is a JSON object):

    GET  /api/info             the agent: env, controls (key, label), z size, whether C exists
    POST /api/new              {} -> {"id": ...}: a new session (the oldest of more than 8 is closed)
    POST /api/reset            {id, where: dream|real, driver: you|agent, temperature, seed?} -> a frame
    POST /api/step             {id, keys: [...], driver?, temperature?} -> the next frame
    POST /api/decode           {id, z: [...]} -> {"frame"}: the V-only panel

A frame answer holds the 64x64 RGB pixels (base64), V's reconstruction in the real env, z, the action, the
reward (M's prediction in the dream), the total, M's done probability and whether the episode ended.
"""

from __future__ import annotations

import errno
import itertools
import json
import signal
import sys
import threading
import webbrowser
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from worldmodels.errors import WorldModelsError
from worldmodels.play.session import PlaySession, Source

STATIC = {"/": ("index.html", "text/html"), "/play.js": ("play.js", "text/javascript"),
          "/play.css": ("play.css", "text/css")}  # fmt: skip
MAX_SESSIONS = 8
MAX_BODY = 1 << 16


class PlayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], source: Source) -> None:
        super().__init__(address, Handler)
        self.source = source
        self.sessions: OrderedDict[str, PlaySession] = OrderedDict()
        self.lock = (
            threading.Lock()
        )  # one session steps at a time: torch and the envs are not shared
        self.ids = itertools.count(1)
        self.info = PlaySession(source).info()

    def new_session(self) -> str:
        sid = str(next(self.ids))
        self.sessions[sid] = PlaySession(self.source, seed=int(sid) * 1000)
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)[1].close()
        return sid

    def session(self, body: dict[str, Any]) -> PlaySession:
        sid = str(body.get("id", ""))
        if sid not in self.sessions:
            raise WorldModelsError(f"no session {sid!r} (reload the page)")
        return self.sessions[sid]

    def close_sessions(self) -> None:
        for s in self.sessions.values():
            s.close()
        self.sessions.clear()


class Handler(BaseHTTPRequestHandler):
    server: PlayServer

    def log_message(self, format: str, *args: Any) -> None:  # requests are not news
        pass

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/api/info":
            return self._json(self.server.info)
        if path == "/favicon.ico":
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        if path not in STATIC:
            return self._json({"error": f"no page {path}"}, HTTPStatus.NOT_FOUND)
        name, kind = STATIC[path]
        self._send(
            HTTPStatus.OK, resources.files(__package__).joinpath("static", name).read_bytes(), kind
        )

    def do_POST(self) -> None:
        try:
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                raise WorldModelsError(f"request body of {n} bytes is too large")
            body = json.loads(self.rfile.read(n) or b"{}")
            if not isinstance(body, dict):
                raise WorldModelsError("the request body must be a JSON object")
            with self.server.lock:
                out = self._route(self.path, body)
        except (WorldModelsError, ValueError, TypeError) as e:
            return self._json({"error": str(e)}, HTTPStatus.BAD_REQUEST)
        self._json(out)

    def _route(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/api/new":
            return {"id": self.server.new_session()}
        s = self.server.session(body)
        if path == "/api/reset":
            return s.reset(
                body.get("where"), body.get("driver"), body.get("seed"), body.get("temperature")
            )
        if path == "/api/step":
            keys = body.get("keys") or []
            if not isinstance(keys, list):
                raise WorldModelsError("keys must be a list of key names")
            return s.step([str(k) for k in keys], body.get("driver"), body.get("temperature"))
        if path == "/api/decode":
            return s.decode(body.get("z") or [])
        raise WorldModelsError(f"no API {path}")


def serve(source: Source, port: int, open_browser: bool, host: str = "127.0.0.1") -> int:
    """Serve until Ctrl-C (then stop cleanly and return 0). A port in use is a one-line error."""
    try:
        server = PlayServer((host, port), source)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise WorldModelsError(
                f"--port {port}: already in use; choose another (--port 0 takes a free one)"
            ) from None
        raise
    url = f"http://{host}:{server.server_address[1]}/"

    def stop(
        signum: int, frame: Any
    ) -> None:  # SIGTERM stops as Ctrl-C does: the real envs are closed
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        # SIGINT too, where it was inherited ignored (a process started with & by a script)
        signal.signal(signal.SIGINT, stop)
    try:  # from here on, Ctrl-C is the way to stop
        print(f"worldmodels play: {source.name} ({source.models.cfg.env.id}) at {url}  (Ctrl-C stops)",
              flush=True)  # fmt: skip
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.close_sessions()
    print("worldmodels play: stopped", file=sys.stderr, flush=True)
    return 0


def play_command(
    run_dir: Path | None, pretrained: str | None, port: int, open_browser: bool
) -> int:
    if (run_dir is None) == (pretrained is None):
        raise WorldModelsError("give one of --pretrained NAME and --run-dir DIR")
    if not 0 <= port <= 65535:
        raise WorldModelsError(f"--port {port}: not a port number (0-65535)")
    if pretrained is not None:
        from worldmodels.pretrained import pretrained_dir

        source = Source.of_run(pretrained_dir(pretrained), name=f"--pretrained {pretrained}")
    else:
        source = Source.of_run(Path(run_dir))  # type: ignore[arg-type]
    return serve(source, port, open_browser)
