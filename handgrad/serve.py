"""`handgrad serve`: a local web page and JSON API for deriving and checking derivations.

The standard library's ThreadingHTTPServer answers; the work runs in warm worker processes
(torch and handgrad imported once, at start), one request at a time each, so a request
never waits for an import.  A worker that passes the time limit is killed and replaced:
the server keeps serving.  Each worker's memory is capped (RLIMIT_AS), and sizes a page
would never need (a declared 100000 x 100000 matrix) are refused before any work.

The JSON is built by the functions the CLI's derive command calls
(handgrad.verify.derive.expression_report / text_report), so

    GET  /api/derive?expr=..&let=..&wrt=..[&hessian=1][&emit=torch]
    POST /api/check[?name=F.hg]   (body: the .hg text)

return the object `derive --expr ... --json` / `derive --file F.hg --json` prints; bad
input is HTTP 400 with the CLI's one-line message, as {"error": ..., "status": 2} (the
object the CLI prints under --json).  A pasted derivation is only ever parsed as the .hg
notation: no Python file is run.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from handgrad.present import page

MAX_BODY = 256 * 1024  # bytes of a POST body
MAX_EXPR = 2000  # characters of an expression
MAX_DECLS = 2000  # characters of the declarations (let)
MAX_WRT = 200
MAX_TEXT = 50_000  # characters of a pasted .hg derivation
MAX_DIM = 2000  # a declared size
MAX_ENTRIES = 1_000_000  # entries of one declared array
TIME_LIMIT = 20.0  # seconds of work per request
MEMORY_LIMIT = 4 << 30  # bytes of address space per worker
WORKERS = 2
START_LIMIT = 120.0  # seconds for a worker to import torch and handgrad
LOOPBACK = ("127.0.0.1", "localhost")  # the server listens on IPv4 only


class Refused(Exception):
    """A request the server answers with an error: (HTTP status, one-line message)."""

    def __init__(self, message: str, http_status: int = 400, status: int = 2):
        super().__init__(message)
        self.http_status = http_status
        self.status = status


# ----------------------------------------------------------------------------- workers


def worker_main(memory_limit: int = MEMORY_LIMIT) -> None:  # pragma: no cover - the child
    """A warm worker (its own process): imports once, then answers one JSON line per JSON
    line on stdin: ["ok", the derive JSON text] or ["error", message, HTTP status]."""
    import os

    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the answers; stray prints: stderr
    os.dup2(2, 1)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    except (ImportError, ValueError, OSError):
        pass
    import warnings

    from handgrad.errors import UserError
    from handgrad.present import io
    from handgrad.verify import derive

    warnings.simplefilter("ignore")

    def answer(*reply):
        proto.write(json.dumps(reply) + "\n")
        proto.flush()

    try:  # the first derivation pays for lazy imports and caches: pay it now
        derive.expression_report("x'*A*x", "x: n; A: n x n", "x", hessian=True, emit="torch")
    except Exception:  # noqa: BLE001 - a warm-up only
        pass
    answer("ready")
    memory = (f"the derivation needs more memory than the page allows ({memory_limit >> 30} "
              "GiB); smaller sizes, or the command line")
    for line in sys.stdin:
        try:
            job = json.loads(line)
            if job["kind"] == "derive":
                out = derive.expression_report(**job["kwargs"])
            else:
                out = derive.text_report(**job["kwargs"])
            answer("ok", io.dumps(out))
        except UserError as exc:
            answer("error", _first(exc) or type(exc).__name__, 400)
        except MemoryError:
            answer("error", memory, 400)
        except Exception as exc:  # noqa: BLE001 - as the CLI: one line, no traceback
            if "can't allocate memory" in str(exc) or "not enough memory" in str(exc):
                answer("error", memory, 400)
            else:
                answer("error", f"internal error ({type(exc).__name__}: {_first(exc)})", 500)


def _first(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]


class _Worker:
    """One worker process and the thread that reads its answers into a queue."""

    def __init__(self, memory_limit: int):
        code = f"from handgrad.serve import worker_main; worker_main({int(memory_limit)})"
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, encoding="utf-8")
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.answers.put(json.loads(line))
            except ValueError:
                pass
        self.answers.put(None)  # the process ended

    def send(self, job: dict) -> None:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass


class Workers:
    """Warm worker processes; ``call`` runs one job on a free one under a deadline."""

    def __init__(self, n: int = WORKERS, *, memory_limit: int = MEMORY_LIMIT):
        self._idle: queue.Queue = queue.Queue()
        self._memory_limit = memory_limit
        self._lock = threading.Lock()
        self._all: set = set()
        self._closed = False
        self.n = n
        self.restarts = 0
        for _ in range(n):
            self._start()

    def _start(self) -> None:
        w = _Worker(self._memory_limit)
        with self._lock:
            self._all.add(w)

        def ready():
            try:
                ok = w.answers.get(timeout=START_LIMIT) == ["ready"]
            except queue.Empty:
                ok = False
            if ok and not self._closed:
                self._idle.put(w)
            else:
                self._drop(w)

        threading.Thread(target=ready, daemon=True).start()

    def _drop(self, w: _Worker) -> None:
        w.kill()
        with self._lock:
            self._all.discard(w)

    def wait_ready(self, timeout: float = START_LIMIT) -> bool:
        """Block until every worker has started (True), or the timeout passed."""
        end = time.monotonic() + timeout
        while self._idle.qsize() < self.n and time.monotonic() < end:
            time.sleep(0.05)
        return self._idle.qsize() >= self.n

    def call(self, kind: str, kwargs: dict, time_limit: float) -> str:
        """Run one job; its JSON text.  Refused on bad input, past the deadline, when busy."""
        try:
            w = self._idle.get(timeout=time_limit + START_LIMIT)
        except queue.Empty:
            raise Refused("the server is busy (every worker is taken); try again", 503,
                          1) from None
        try:
            w.send({"kind": kind, "kwargs": kwargs})
            reply = w.answers.get(timeout=time_limit)
        except queue.Empty:
            self._replace(w)
            raise Refused(f"the derivation took longer than {time_limit:g} s, the page's "
                          "limit per request; the command line (handgrad derive) has none") \
                from None
        except OSError:
            reply = None
        if reply is None:  # the process ended under the job
            self._replace(w)
            raise Refused("the worker stopped during the derivation (out of memory?); it has "
                          "been restarted", 500, 1)
        self._idle.put(w)
        if reply[0] == "ok":
            return reply[1]
        _, message, http_status = reply
        raise Refused(message, http_status, 2 if http_status == 400 else 1)

    def _replace(self, w: _Worker) -> None:
        self._drop(w)
        self.restarts += 1
        if not self._closed:
            self._start()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers = list(self._all)
        for w in workers:
            w.kill()


# ----------------------------------------------------------------------------- limits


def _check_sizes(decls: list[tuple[str, str]]) -> None:
    """Refuse declared sizes no page needs before any work: ``[(name, shape text)]``."""
    for name, shape in decls:
        nums = [int(x) for x in re.findall(r"\b\d+\b", shape)]
        entries = 1
        for x in nums:
            entries *= x
        if any(x > MAX_DIM for x in nums) or entries > MAX_ENTRIES:
            raise Refused(f"{name}: {shape.strip()} is larger than the page takes (sizes up to "
                          f"{MAX_DIM}, at most {MAX_ENTRIES:,} entries per array); letters "
                          "(n x n) let handgrad choose the sizes, or use the command line")


def _let_sizes(let: str) -> list[tuple[str, str]]:
    out = []
    for part in re.split(r"[;\n]", let):
        m = re.match(r"\s*(?:let\s+)?([A-Za-z_]\w*)\s*:(.*)$", part)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _hg_sizes(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*let\s+([A-Za-z_]\w*)\s*:([^#]*)", line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _cap(value: str, limit: int, what: str) -> str:
    if len(value) > limit:
        raise Refused(f"the {what} is {len(value):,} characters; the page takes at most "
                      f"{limit:,} (the command line has no such limit)")
    return value


def derive_args(params: dict) -> dict:
    """Query parameters -> derive's arguments, within the page's limits."""
    expr = params.get("expr", "")
    if not expr.strip():
        raise Refused("give an expression: expr=... (e.g. expr=x'*A*x&let=x: n; A: n x n&wrt=x)")
    _cap(expr, MAX_EXPR, "expression")
    let = _cap(params.get("let", ""), MAX_DECLS, "list of declarations")
    wrt = _cap(params.get("wrt", ""), MAX_WRT, "list of variables")
    _check_sizes(_let_sizes(let))
    hessian = params.get("hessian", "").lower() in ("1", "true", "on", "yes")
    emit = params.get("emit") or None
    if emit not in (None, "torch"):
        raise Refused(f"emit={emit!r}: the only choice is emit=torch")
    return {"expr": expr, "let": let, "wrt": wrt, "hessian": hessian, "emit": emit}


def check_args(text: str, name: str = "pasted.hg") -> dict:
    _cap(text, MAX_TEXT, "derivation")
    if not text.strip():
        raise Refused("paste a derivation in the .hg notation (let ..., wrt ..., f = ..., "
                      "df = ..., grad ... = ...)")
    _check_sizes(_hg_sizes(text))
    name = name if re.fullmatch(r"[\w.\-/ <>]{1,200}", name or "") else "pasted.hg"
    return {"text": text, "path": name}


# ----------------------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    server_version = "handgrad-serve"
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a connection may sit idle or half-sent before it is closed

    def log_message(self, fmt, *args):  # quiet unless asked
        if getattr(self.server, "verbose", False):
            sys.stderr.write(f"{self.address_string()} - {fmt % args}\n")

    # -- plumbing
    def _send(self, status: int, body: str, ctype: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if ctype.startswith("text/html"):
            self.send_header("Content-Security-Policy",
                             "default-src 'none'; style-src 'unsafe-inline'; "
                             "script-src 'unsafe-inline'; img-src data:; form-action 'self'")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status: int, text: str) -> None:
        self._send(status, text + "\n", "application/json; charset=utf-8")

    def _error_json(self, exc: Refused) -> None:
        self._json(exc.http_status, json.dumps({"error": str(exc), "status": exc.status}))

    def _body(self) -> str:
        """The POST body; a refused one closes the connection (its unread bytes must not be
        read as the next request)."""
        length = self.headers.get("Content-Length")
        keep, self.close_connection = self.close_connection, True
        if length is None:
            raise Refused("a POST needs a Content-Length header", 411)
        try:
            n = int(length)
        except ValueError:
            raise Refused("Content-Length is not a number", 400) from None
        if n < 0:
            raise Refused("Content-Length is negative", 400)
        if n > MAX_BODY:
            raise Refused(f"the request body is {n:,} bytes; the server takes at most "
                          f"{MAX_BODY:,}", 413)
        data = self.rfile.read(n)
        self.close_connection = keep
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("the request body is not UTF-8 text") from None

    def _work(self, kind: str, kwargs: dict) -> str:
        return self.server.workers.call(kind, kwargs, self.server.time_limit)

    # -- routes
    def do_HEAD(self):
        self.do_GET()

    def _host_ok(self) -> bool:
        """On a loopback address, only requests addressed to it (a page on another site
        whose name resolves here, DNS rebinding, gets 403)."""
        if self.server.server_address[0] not in LOOPBACK:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name in LOOPBACK:
            return True
        self._error_json(Refused(f"this server answers requests to 127.0.0.1 or localhost, "
                                 f"not {host or 'no Host'}", 403))
        return False

    def _url(self):
        """The request's path and its query parameters (the last value of each)."""
        url = urllib.parse.urlsplit(self.path)
        return url, {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}

    def do_GET(self):
        if not self._host_ok():
            return
        url, params = self._url()
        if url.path == "/api/derive":
            try:
                self._json(200, self._work("derive", derive_args(params)))
            except Refused as exc:
                self._error_json(exc)
        elif url.path == "/":
            self._page(params)
        elif url.path == "/api/check":
            self._error_json(Refused("POST the .hg text to /api/check", 405))
        else:
            self._error_json(Refused(f"no such page: {url.path}", 404))

    def do_POST(self):
        if not self._host_ok():
            self.close_connection = True
            return
        url, params = self._url()
        if url.path == "/api/check":
            try:
                args = check_args(self._body(), params.get("name", "pasted.hg"))
                self._json(200, self._work("check", args))
            except Refused as exc:
                self._error_json(exc)
        elif url.path == "/":
            try:
                form = urllib.parse.parse_qs(self._body(), keep_blank_values=True)
            except Refused as exc:
                self._send(exc.http_status, page.page(checked=page.error_html(str(exc), "check")),
                           "text/html; charset=utf-8")
                return
            text = (form.get("hg") or [""])[-1].replace("\r\n", "\n")
            self._check_page(text)
        else:
            self._error_json(Refused(f"no such page: {url.path}", 404))

    def _page(self, params: dict) -> None:
        if params.get("check"):  # /?check=NAME: one of the offered derivations, checked
            text = page.derivation_text(params["check"])
            if text is None:
                self._send(404, page.page(checked=page.error_html(
                    f"no derivation named {params['check']!r}", "check")),
                    "text/html; charset=utf-8")
            else:
                self._check_page(text)
            return
        status, derived = 200, ""
        if params.get("expr", "").strip():
            try:
                out = json.loads(self._work("derive", {**derive_args(params), "emit": "torch"}))
                derived = page.result_html(out, panel="derive")
            except Refused as exc:
                status, derived = exc.http_status, page.error_html(str(exc), "derive")
        values = {k: params.get(k, "") for k in ("expr", "let", "wrt")}
        values["hessian"] = params.get("hessian", "").lower() in ("1", "true", "on", "yes")
        self._send(status, page.page(values=values, derived=derived), "text/html; charset=utf-8")

    def _check_page(self, text: str) -> None:
        status = 200
        try:
            out = json.loads(self._work("check", check_args(text)))
            checked = page.result_html(out, panel="check")
        except Refused as exc:
            status, checked = exc.http_status, page.error_html(str(exc), "check")
        self._send(status, page.page(hg=text, checked=checked), "text/html; charset=utf-8")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, *, workers: int = WORKERS, time_limit: float = TIME_LIMIT,
                 memory_limit: int = MEMORY_LIMIT, verbose: bool = False, handler=None):
        super().__init__(address, handler or Handler)
        self.time_limit = time_limit
        self.verbose = verbose
        self.workers = Workers(workers, memory_limit=memory_limit)

    def server_close(self):
        super().server_close()
        if getattr(self, "workers", None) is not None:  # None when the bind failed
            self.workers.close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(host: str = "127.0.0.1", port: int = 8765, **kw) -> Server:
    """A server bound to (host, port) (port 0: a free one); its workers start now."""
    return Server((host, port), **kw)


def run(host: str = "127.0.0.1", port: int = 8765, *, say=print, **kw) -> None:
    """`handgrad serve`: start the workers, print the address, serve until Ctrl-C."""
    server = make_server(host, port, **kw)
    try:
        say(f"starting {server.workers.n} workers (importing torch)...")
        if not server.workers.wait_ready():
            say("warning: the workers did not start in time; requests will wait for them")
        say(f"handgrad serve: open {server.url}  (Ctrl-C stops it)")
        if host not in LOOPBACK:
            say(f"note: listening on {host}, reachable from other machines")
        server.serve_forever()
    except KeyboardInterrupt:
        say("stopped")
    finally:
        server.server_close()


__all__ = ["Handler", "Refused", "Server", "Workers", "check_args", "derive_args",
           "make_server", "run"]
