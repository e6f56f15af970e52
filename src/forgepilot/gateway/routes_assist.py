"""The assistant's endpoints: completion at a cursor (served by a deployment), chat tasks and repository actions."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request

from forgepilot.assist import TASKS, AssistCompletion, CompletionInput, TaskInput
from forgepilot.context import Document, OpenFile
from forgepilot.deploy import CANARY, ServingDeployment
from forgepilot.errors import BackendError, ForgePilotError, ModelError, UnknownModel
from forgepilot.gateway.errors import HTTPError
from forgepilot.gateway.schemas import AssistCompleteBody, AssistTaskBody
from forgepilot.gateway.state import GatewayState, client_host, finish_reason, gateway_state, new_id, usage_record
from forgepilot.monitor import served_completion

router = APIRouter()
State = Annotated[GatewayState, Depends(gateway_state)]
Authorization = Annotated[str | None, Header()]
_STAGES = ("context", "render", "first_token", "model", "postprocess", "total")


def _completion_input(body: AssistCompleteBody, budget_s: float) -> CompletionInput:
    doc = Document.at(
        body.path,
        body.text,
        line=body.cursor.line,
        character=body.cursor.character,
        offset=body.cursor.offset,
        language=body.language,
        repository=body.repository,
    )
    return CompletionInput(
        document=doc,
        recent=[OpenFile(f.path, f.text) for f in body.recent_files],
        mode=body.mode,
        model=body.model,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        context=body.context,
        use_cache=body.cache,
        priority="interactive",
        deadline_s=budget_s,
    )


async def _complete(
    st: GatewayState, request: Request, inp: CompletionInput, deployment: ServingDeployment, degraded: bool
) -> AssistCompletion:
    return await st.until_disconnect(
        request, lambda token: st.assistant.completions.complete(st.serving(inp, deployment, degraded), token)
    )


def _observe(st: GatewayState, request: Request, result: AssistCompletion) -> None:
    request.state.model_s = result.timings.get("model", 0.0)
    st.metrics.cache.labels("hit" if result.cached else "miss").inc()
    for stage in _STAGES:
        if stage in result.timings:
            st.metrics.stage_seconds.labels(stage).observe(result.timings[stage])
    if result.reason:
        st.metrics.empty.labels(result.reason).inc()
    for step in result.steps:
        if step.startswith("guard_"):
            st.metrics.guard_actions.labels(step.removeprefix("guard_")).inc()
    st.count_tokens(result.model, result.usage)


@router.post("/v1/assist/complete")
async def assist_complete(
    body: AssistCompleteBody, request: Request, st: State, authorization: Authorization = None
) -> dict[str, Any]:
    user = st.caller(request, authorization)
    if body.model:
        st.model_or_404(body.model)
    inp = _completion_input(body, st.settings.gateway.request_budget_s)
    # A canary's share is sticky per user: the API key, else the id the client sends, else its address.
    who = user or request.headers.get("x-forgepilot-user") or body.user or client_host(request)
    deployment = st.router.choose(who)
    degraded = st.monitoring.mode.degraded
    cid = new_id("cmpl")
    language = inp.document.language.name if inp.document.language else None
    started = time.perf_counter()

    def failed(exc: ForgePilotError) -> None:  # the service failed: a client's bad request spends no budget
        st.monitoring.failed(
            time.perf_counter() - started,
            completion_id=cid,
            deployment=deployment.alias,
            model=st.serving(inp, deployment, degraded).model or deployment.model,
            language=language,
            error=exc.one_line(),
            user=who,
        )

    try:
        result = await _complete(st, request, inp, deployment, degraded)
    except (UnknownModel, ModelError) as exc:
        if deployment.alias != CANARY or st.controller is None:
            if isinstance(exc, ModelError):
                failed(exc)
            raise
        # A canary that cannot serve is rolled back, not an outage: this request and the rest go to the champion.
        st.controller.fail_canary(st.router.split().rollout_id or "", f"the canary failed to load: {exc.one_line()}")
        st.router.refresh()
        deployment = st.router.choose(who)
        result = await _complete(st, request, inp, deployment, degraded)
    except BackendError as exc:
        failed(exc)
        raise
    _observe(st, request, result)
    st.monitoring.served(
        served_completion(cid, result, deployment=deployment.alias, language=language, user=who, degraded=degraded)
    )
    return {
        "id": cid,
        "object": "assist.completion",
        "created": int(time.time()),
        "model": result.model,
        "text": result.text,
        "mode": result.mode,
        "reason": result.reason,
        "why": result.why(),
        "usage": usage_record(result.usage),
        "deployment": deployment.alias,
        "degraded": degraded,
        **result.template,
    }


@router.post("/v1/assist/prepare", status_code=202)
async def assist_prepare(
    body: AssistCompleteBody, request: Request, st: State, authorization: Authorization = None
) -> dict[str, Any]:
    """An editor opened a file (or moved to a new part of it): warm the model's cache for completions there, in
    the background, so the first completion at the cursor does not wait for the whole prompt to be evaluated."""
    user = st.caller(request, authorization)
    if body.model:
        st.model_or_404(body.model)
    inp = _completion_input(body, st.settings.gateway.request_budget_s)
    who = user or request.headers.get("x-forgepilot-user") or body.user or client_host(request)
    deployment = st.router.choose(who)  # the deployment this user's completions will come from
    warming = st.assistant.completions.warm_later(st.serving(inp, deployment, st.monitoring.mode.degraded))
    return {"object": "assist.prepare", "warming": warming, "deployment": deployment.alias}


async def _run_task(
    st: GatewayState, request: Request, name: str, body: AssistTaskBody, action: bool
) -> dict[str, Any]:
    st.chat_allowed()
    if body.model:
        st.model_or_404(body.model)
    inp = TaskInput(**body.model_dump(), priority="chat", deadline_s=st.settings.gateway.request_budget_s)
    tasks = st.assistant.tasks
    if action:
        result = await st.until_disconnect(request, lambda token: tasks.action(name, inp, token))
    else:
        result = await st.until_disconnect(request, lambda token: tasks.run(name, inp, token))
    st.count_tokens(result.model, result.usage)
    return {
        "id": new_id("task"),
        "object": "assist.task",
        "task": result.task,
        "model": result.model,
        "text": result.text,
        "code": result.code,
        "citations": result.citations,
        "sources": result.sources,
        "framework": result.framework,
        "finish_reason": finish_reason(result.finish_reason),
        "usage": usage_record(result.usage),
        "cost_usd": result.cost_usd,
        "timings_ms": {k: round(v * 1000, 3) for k, v in result.timings.items()},
        **result.template,
    }


@router.get("/v1/assist/actions")
async def list_actions(
    request: Request, st: State, repository: str | None = None, authorization: Authorization = None
) -> dict[str, Any]:
    st.caller(request, authorization)
    registry = st.assistant.tasks.action_registry(repository)
    return {
        "object": "list",
        "data": [
            {
                "name": registry.get(n).name.removeprefix("actions/"),
                "description": registry.get(n).description,
                "variables": sorted(registry.get(n).variables),
                "template_version": registry.get(n).version,
            }
            for n in registry.names()
        ],
    }


@router.post("/v1/assist/actions/{name}")
async def run_action(
    name: str, body: AssistTaskBody, request: Request, st: State, authorization: Authorization = None
) -> dict[str, Any]:
    st.caller(request, authorization)
    return await _run_task(st, request, name, body, action=True)


@router.post("/v1/assist/{task}")
async def assist_task(
    task: str, body: AssistTaskBody, request: Request, st: State, authorization: Authorization = None
) -> dict[str, Any]:
    st.caller(request, authorization)
    if task not in TASKS:
        raise HTTPError(404, f"no task {task!r}; tasks: {', '.join(TASKS)}, actions/NAME", code="not_found")
    return await _run_task(st, request, task, body, action=False)
