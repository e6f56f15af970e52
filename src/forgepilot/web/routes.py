"""The dashboard at ``/ui``: server-rendered pages (Jinja2), SVG charts, live numbers over server-sent events.

Auth is the API's: without keys (loopback) everyone is a local admin; with keys, the browser signs in with one
(kept in an HttpOnly, SameSite=Strict cookie), any key reads, and only an ``admin`` key may promote, roll back or
pause (each action asks for confirmation, checks the request comes from this origin, and is audit-logged).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from forgepilot.errors import UserError
from forgepilot.gateway.errors import HTTPError
from forgepilot.gateway.state import GatewayState, client_host, gateway_state
from forgepilot.web import charts, pages

router = APIRouter(prefix="/ui", include_in_schema=False)
State = Annotated[GatewayState, Depends(gateway_state)]
COOKIE = "fp_ui_key"
STATIC = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}
NAV = (
    ("overview", "/ui", "Overview"),
    ("deployments", "/ui/deployments", "Deployments"),
    ("releases", "/ui/releases", "Releases"),
    ("data", "/ui/data", "Data and models"),
    ("index", "/ui/index", "Index"),
    ("drift", "/ui/drift", "Drift"),
)

_env = Environment(loader=PackageLoader("forgepilot.web", "templates"), autoescape=select_autoescape(["html"]))
_env.filters["when"] = lambda ts: time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"
_env.filters["pct"] = lambda v: "-" if v is None else f"{v:.1%}"
_env.filters["ms"] = lambda v: "-" if v is None else f"{v:,.0f} ms"
_env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)


class SignIn(Exception):
    """The browser must sign in first (with auth on)."""


@dataclass(frozen=True)
class Viewer:
    name: str
    role: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def viewer(request: Request, st: State) -> Viewer:
    """Who is looking: a local admin without auth; else the key in the cookie or the Authorization header."""
    if not st.auth_required:
        return Viewer("local", "admin")
    cookie = request.cookies.get(COOKIE)
    key = st.store.verify(cookie) if cookie else st.guard.key(request.headers.get("authorization"))
    if key is None:
        raise SignIn()
    return Viewer(key.name, key.role)


Seen = Annotated[Viewer, Depends(viewer)]


def render(name: str, request: Request, who: Viewer, active: str, **context: Any) -> HTMLResponse:
    html = _env.get_template(name).render(nav=NAV, active=active, viewer=who, path=request.url.path, **context)
    return HTMLResponse(html, headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data:"})


async def form_fields(request: Request) -> dict[str, str]:
    """A URL-encoded form (what the pages' forms post)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def same_origin(request: Request) -> None:
    """Refuse a state-changing request another site's page made the browser send (CSRF)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPError(403, "cross-site request refused", code="cross_site")


# -- sign in -------------------------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, error: str = "") -> HTMLResponse:
    return render("login.html", request, Viewer("", "read"), "", error=error, next=request.query_params.get("next"))


@router.post("/login")
async def login(request: Request, st: State) -> Response:
    same_origin(request)
    fields = await form_fields(request)
    key = st.store.verify(fields.get("key", "").strip())
    target = fields.get("next") or "/ui"
    if not target.startswith("/ui"):  # never an open redirect
        target = "/ui"
    if key is None:
        st.monitoring.auth_failed(client_host(request), "invalid_api_key")
        return RedirectResponse("/ui/login?error=1", status_code=303)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, fields["key"].strip(), httponly=True, samesite="strict", path="/ui")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    same_origin(request)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPError(404, f"no static file {name!r}", code="not_found")
    body = files("forgepilot.web").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})


# -- pages ---------------------------------------------------------------------------------------------------
@router.get("", response_class=HTMLResponse)
async def overview_page(request: Request, st: State, who: Seen) -> HTMLResponse:
    data = await asyncio.to_thread(pages.overview, st)
    s = data["series"]
    return render(
        "overview.html",
        request,
        who,
        "overview",
        data=data,
        requests_chart=charts.line_chart(
            "Completions per hour", [charts.Series("served", s["requests"]), charts.Series("failed", s["errors"])]
        ),
        rates_chart=charts.line_chart(
            "Acceptance and retention per hour",
            [charts.Series("acceptance", s["acceptance_rate"]), charts.Series("retention", s["retention_rate"])],
            percent=True,
            y_max=1.0,
        ),
        latency_chart=charts.bar_chart(
            "Latency by mode (last 24 h)",
            [str(r["mode"]) for r in data["latency_by_mode"]],
            [(q, [r[f"{q}_ms"] for r in data["latency_by_mode"]]) for q in ("p50", "p95", "p99")],
        ),
    )


@router.get("/deployments", response_class=HTMLResponse)
async def deployments_page(request: Request, st: State, who: Seen) -> HTMLResponse:
    data = await asyncio.to_thread(pages.deployments, st)
    guard_charts = []
    looks = [d for d in data["decisions"] if d["guards"]]
    for metric in sorted({g["metric"] for d in looks for g in d["guards"]}):
        rows = [(i + 1, next(g for g in d["guards"] if g["metric"] == metric)) for i, d in enumerate(looks)]
        guard_charts.append(
            charts.line_chart(
                f"{metric}: canary vs champion at each look",
                [
                    charts.Series("canary", [(i, g["canary"]["rate"]) for i, g in rows]),
                    charts.Series("champion", [(i, g["champion"]["rate"]) for i, g in rows]),
                ],
                percent=True,
                time_axis=False,
            )
        )
        # The confidence sequence: at each look, how much worse the canary is, with the interval the look's
        # boundary gives; the dashed line is the margin (an interval wholly under it shows non-inferiority).
        spread = [(i, g["worse_by"], g["boundary"] * g.get("se", 0.0)) for i, g in rows]
        guard_charts.append(
            charts.line_chart(
                f"{metric}: how much worse the canary is, with its interval",
                [
                    charts.Series("worse by", [(i, w) for i, w, _ in spread]),
                    charts.Series("upper", [(i, w + h) for i, w, h in spread]),
                    charts.Series("lower", [(i, w - h) for i, w, h in spread]),
                ],
                percent=True,
                y_min=None,
                time_axis=False,
                reference=rows[0][1]["margin"] if rows else None,
            )
        )
    return render("deployments.html", request, who, "deployments", data=data, guard_charts=guard_charts)


@router.get("/releases", response_class=HTMLResponse)
async def releases_page(request: Request, st: State, who: Seen) -> HTMLResponse:
    data = await asyncio.to_thread(pages.releases, st)
    return render("releases.html", request, who, "releases", data=data)


@router.get("/releases/decisions/{decision_id}", response_class=HTMLResponse)
async def decision_page(decision_id: str, request: Request, st: State, who: Seen) -> HTMLResponse:
    data = await asyncio.to_thread(pages.decision, st, decision_id)
    return render("decision.html", request, who, "releases", data=data)


@router.get("/releases/compare", response_class=HTMLResponse)
async def compare_page(request: Request, st: State, who: Seen, a: str, b: str) -> HTMLResponse:
    data = await asyncio.to_thread(pages.comparison, st, a, b)
    return render("compare.html", request, who, "releases", data=data)


@router.get("/data", response_class=HTMLResponse)
async def data_page(request: Request, st: State, who: Seen) -> HTMLResponse:
    data = await asyncio.to_thread(pages.data_and_models, st)
    return render("data.html", request, who, "data", data=data)


@router.get("/data/{type_}/{id_}", response_class=HTMLResponse)
async def lineage_page(type_: str, id_: str, request: Request, st: State, who: Seen) -> HTMLResponse:
    data = await asyncio.to_thread(pages.lineage, st, type_, id_)
    graph = charts.lineage_graph(f"Lineage of {type_} {id_}", data["tree"])
    return render("lineage.html", request, who, "data", data=data, graph=graph)


@router.get("/index", response_class=HTMLResponse)
async def index_page(request: Request, st: State, who: Seen) -> HTMLResponse:
    data = await asyncio.to_thread(pages.index, st)
    return render("index.html", request, who, "index", data=data)


@router.get("/drift", response_class=HTMLResponse)
async def drift_page(request: Request, st: State, who: Seen) -> HTMLResponse:
    data = await asyncio.to_thread(pages.drift, st)
    feature_charts = []
    for f in data["features"]:
        ref, cur = f["reference"], f["current"]
        if "p50" in ref or "p50" in cur:
            keys = ["p50", "p95"]
        elif "rate" in ref or "rate" in cur:
            keys = ["rate"]
        else:
            keys = sorted(set(ref) | set(cur))[:8]
        feature_charts.append(
            charts.bar_chart(
                f"{f['name']}: reference vs current",
                keys,
                [
                    (side, [float(values.get(k, 0.0)) for k in keys])
                    for side, values in (("reference", ref), ("current", cur))
                ],
                percent=keys not in (["p50", "p95"],),
            )
        )
    return render("drift.html", request, who, "drift", data=data, feature_charts=feature_charts)


# -- the JSON each chart and table reads ---------------------------------------------------------------------
@router.get("/api/{page}")
async def page_json(page: str, request: Request, st: State, who: Seen) -> JSONResponse:
    builders = {
        "overview": pages.overview,
        "deployments": pages.deployments,
        "releases": pages.releases,
        "data": pages.data_and_models,
        "index": pages.index,
        "drift": pages.drift,
    }
    if page not in builders:
        raise HTTPError(404, f"no page {page!r}; pages: {', '.join(builders)}", code="not_found")
    data = await asyncio.to_thread(builders[page], st)
    return JSONResponse(json.loads(json.dumps(data, default=str)))


@router.get("/stream")
async def stream(request: Request, st: State, who: Seen) -> StreamingResponse:
    """Live numbers every two seconds (server-sent events) while a page is open."""

    async def events() -> AsyncIterator[bytes]:
        while not await request.is_disconnected():
            data = await asyncio.to_thread(pages.live, st)
            yield f"data: {json.dumps(data)}\n\n".encode()
            await asyncio.sleep(2.0)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


# -- actions (admin) -----------------------------------------------------------------------------------------
@router.post("/deployments/{action}")
async def deployment_action(action: str, request: Request, st: State, who: Seen) -> Response:
    same_origin(request)
    if not who.admin:
        raise HTTPError(403, f"{who.name} may look but not {action}: an admin key is needed", code="forbidden")
    fields = await form_fields(request)
    if fields.get("confirm") != "yes":
        raise HTTPError(400, "confirm the action (tick the box)", param="confirm", code="unconfirmed")
    if st.controller is None:
        raise HTTPError(409, "this server does not run rollouts", code="no_rollouts")
    reason = fields.get("reason") or f"{action} from the dashboard"
    controller = st.controller
    actions = {
        "rollback": lambda: controller.stop(reason, who.name),
        "pause": lambda: controller.pause(reason, who.name),
        "resume": lambda: controller.resume(reason, who.name),
        "promote": lambda: controller.promote_now(reason, who.name),
    }
    if action not in actions:
        raise HTTPError(404, f"no action {action!r}; actions: {', '.join(actions)}", code="not_found")
    try:
        done = await asyncio.to_thread(actions[action])
    except UserError as exc:
        raise HTTPError(409, exc.one_line(), code="conflict") from exc
    if done is None:
        raise HTTPError(409, f"no rollout to {action}", code="no_rollout")
    st.router.refresh()
    return RedirectResponse(f"/ui/deployments?done={quote(action)}", status_code=303)


def sign_in_redirect(request: Request) -> Response:
    """Where a browser without a valid key goes (JSON clients get a 401)."""
    if request.url.path.startswith(("/ui/api/", "/ui/stream")):
        return JSONResponse(
            {"error": {"message": "sign in with an API key", "type": "authentication_error", "param": None,
                       "code": "missing_api_key"}},
            status_code=401,
        )  # fmt: skip
    return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)
