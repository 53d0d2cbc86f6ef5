"""The dashboard's HTTP server (aiohttp): page routes, JSON API, token and Host guard.

aiohttp because Ray's own dashboard already depends on it (no new package to install) and it is
a whole HTTP server in one library. Database reads are blocking calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import ipaddress
import json
import math
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from typing import Any

from aiohttp import web

from hpsearch.errors import HpsearchError
from hpsearch.ui import DEFAULT_HOST, DEFAULT_PORT, data
from storage import StorageError
from storage._dashboard import run_sql_limited

SQL_SHOWN_ROWS = 5000
PAGE_ROUTES = (
    "/",
    "/sql",
    "/study/{name}",
    "/study/{name}/stage/{stage}",
    "/study/{name}/trials",
    "/study/{name}/curves",
    "/study/{name}/params",
    "/study/{name}/parallel",
)
COOKIE = "hpsearch_token"
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Settings:
    db: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    sql_seconds: float = 10.0


def needs_token(host: str) -> bool:
    """Only the default loopback addresses may serve without a token."""
    return host not in _LOCAL_NAMES


def settle_token(host: str, token: str | None) -> str | None:
    """The token to require: the one given, else a new one when the address needs one."""
    if token is not None:
        if not token.strip():
            raise HpsearchError("--token: must not be empty")
        return token
    return secrets.token_hex(24) if needs_token(host) else None


def check_host(host: str) -> None:
    if host in _LOCAL_NAMES:
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise HpsearchError(
            f"--host {host}: not an IP address (use 127.0.0.1, or 0.0.0.0 for every interface)"
        ) from None


def url_of(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def _dump(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite_only(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_only(v) for v in value]
    return _clean(value)


def _json(payload: Any, status: int = 200) -> web.Response:
    try:
        text = json.dumps(payload, default=_dump, allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere: JSON has no word for it
        text = json.dumps(_finite_only(payload), default=_dump)
    return web.Response(text=text, status=status, content_type="application/json")


def _token_guard(token: str | None, host: str) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None:
            if request.host.rsplit(":", 1)[0].strip("[]") not in _LOCAL_NAMES | {host}:
                return web.Response(status=403, text="403: unknown Host header")
            return await handler(request)
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("token "):
            given = auth[len("token ") :]
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(
                status=403,
                text="403: this hpsearch dashboard needs its token: "
                "open the URL that `hpsearch ui` printed",
            )
        response = await handler(request)
        if request.query.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    return guard


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (StorageError, HpsearchError) as exc:
        message = str(exc)
        status = 404 if "no study named" in message or "has no stage" in message else 400
        return _json({"error": message}, status)


def _static(name: str) -> bytes:
    return resources.files("hpsearch.ui").joinpath("static", name).read_bytes()


class Api:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def db(self) -> str:
        return self.settings.db

    async def page(self, _request: web.Request) -> web.Response:
        return web.Response(body=_static("index.html"), content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        kinds = {".js": "text/javascript", ".css": "text/css", ".json": "application/json"}
        kind = next((k for s, k in kinds.items() if name.endswith(s)), None)
        if kind is None or "/" in name or name.startswith("."):
            raise web.HTTPNotFound()
        try:
            body = _static(name)
        except FileNotFoundError:
            raise web.HTTPNotFound() from None
        return web.Response(body=body, content_type=kind)

    async def studies(self, _request: web.Request) -> web.Response:
        return _json(await asyncio.to_thread(data.studies, self.db))

    async def study(self, request: web.Request) -> web.Response:
        return _json(await asyncio.to_thread(data.study, self.db, request.match_info["name"]))

    async def live(self, request: web.Request) -> web.Response:
        q = request.query
        after = (q["at"], _int(q, "id", 0) or 0) if q.get("at") else None
        stage = _int(request.match_info, "stage", 0) or 0
        payload = await asyncio.to_thread(
            data.live, self.db, request.match_info["name"], stage, after
        )
        return _json(payload)

    async def trials(self, request: web.Request) -> web.Response:
        q = request.query
        filters = [_param_filter(f) for f in q.getall("range", [])]
        query = {
            "sort": q.get("sort", "trial_id"),
            "descending": q.get("desc") == "1",
            "status": q.get("status") or None,
            "stage": _int(q, "stage", None),
            "ranges": filters,
            "offset": max(0, _int(q, "offset", 0) or 0),
            "limit": min(500, max(1, _int(q, "limit", 50) or 50)),
        }
        name = request.match_info["name"]
        return _json(await asyncio.to_thread(data.trials, self.db, name, **query))

    async def points(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return _json(await asyncio.to_thread(data.scatter_points, self.db, name))

    async def curves(self, request: web.Request) -> web.Response:
        q = request.query
        top = min(100, max(0, _int(q, "top", 10) or 0))
        picked = [int(t) for t in q.get("trials", "").split(",") if t.strip().isdigit()]
        name = request.match_info["name"]
        return _json(await asyncio.to_thread(data.learning_curves, self.db, name, top, picked))

    async def first_layer(self, request: web.Request) -> web.Response:
        """A trial's first-layer grid as a PNG; 404 when it has no kept checkpoint to draw."""
        trial = _int(request.match_info, "trial", 0) or 0
        name = request.match_info["name"]
        try:
            png = await asyncio.to_thread(data.first_layer_png, self.db, name, trial)
        except (StorageError, HpsearchError) as exc:
            return web.Response(status=404, text=str(exc))
        return web.Response(body=png, content_type="image/png")

    async def sql(self, request: web.Request) -> web.Response:
        body = await request.json()
        query = str(body.get("sql", ""))
        result = await asyncio.to_thread(run_sql_limited, self.db, query, self.settings.sql_seconds)
        rows = [[_clean(v) for v in r] for r in result.rows[:SQL_SHOWN_ROWS]]
        return _json({"columns": result.columns, "rows": rows, "total": len(result.rows)})

    async def sql_csv(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        result = await asyncio.to_thread(run_sql_limited, self.db, query, self.settings.sql_seconds)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow(["" if _clean(v) is None else _dump_cell(v) for v in row])
        return web.Response(
            text=buffer.getvalue(),
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="query.csv"'},
        )


def _dump_cell(value: Any) -> Any:
    return value if isinstance(value, int | float | str) else _dump(value)


def _int(source: Any, key: str, default: int | None) -> int | None:
    raw = source.get(key)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise HpsearchError(f"{key}: must be an integer, got {raw!r}") from None


def _param_filter(text: str) -> data.ParamFilter:
    """`name:low:high`, either bound may be empty."""
    name, _, rest = text.partition(":")
    low, _, high = rest.partition(":")
    try:
        return data.ParamFilter(
            name, float(low) if low.strip() else None, float(high) if high.strip() else None
        )
    except ValueError:
        raise HpsearchError(f"range: expected NAME:LOW:HIGH with numbers, got {text!r}") from None


def _warm(db: str) -> None:
    """Read the plots' data of every study ahead of the first visit; errors show on visits."""
    try:
        data.warm(db)
    except (StorageError, HpsearchError):
        pass


async def _no_content(_request: web.Request) -> web.Response:
    return web.Response(status=204)


def make_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[_token_guard(settings.token, settings.host), _errors])
    api = Api(settings)
    for route in PAGE_ROUTES:
        app.router.add_get(route, api.page)
    app.router.add_get("/static/{file}", api.static)
    app.router.add_get("/favicon.ico", _no_content)
    app.router.add_get("/api/studies", api.studies)
    app.router.add_get("/api/study/{name}", api.study)
    app.router.add_get("/api/study/{name}/live/{stage}", api.live)
    app.router.add_get("/api/study/{name}/trials", api.trials)
    app.router.add_get("/api/study/{name}/points", api.points)
    app.router.add_get("/api/study/{name}/curves", api.curves)
    app.router.add_get("/api/study/{name}/first_layer/{trial}.png", api.first_layer)
    app.router.add_post("/api/sql", api.sql)
    app.router.add_get("/api/sql.csv", api.sql_csv)
    return app


async def serve(settings: Settings, on_ready: Callable[[str], None]) -> None:
    """Serve until cancelled (Ctrl-C); `on_ready` gets the URL once the socket listens."""
    runner = web.AppRunner(make_app(settings), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise HpsearchError(
                f"--host {settings.host} --port {settings.port}: cannot listen "
                f"({exc.strerror or exc}): pick another --port"
            ) from None
        port = runner.addresses[0][1]
        on_ready(url_of(settings.host, port, settings.token))
        # a daemon thread, not the loop's executor: Ctrl-C never waits for the warming to end
        threading.Thread(target=_warm, args=(settings.db,), daemon=True).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
