"""The flagger-loadtester HTTP API, served by every webhook-runner replica.

Existing Canaries point their webhooks at ``http://flagger-loadtester.<ns>/``; a Service of that
name in front of the webhook-runner makes them work unchanged. Paths, methods, bodies and status
codes are flagger-loadtester's:

=====================================  =======================================================
``/``                                  run a task from the payload's ``metadata`` (``tasks``);
                                       no metadata → 400 "metadata not found in payload"
``/healthz``                           200 "OK"
``/metrics``                           this service's Prometheus metrics (load tests included)
``/gate/approve`` / ``/gate/halt``     200 "OK" / 403 "Forbidden", whatever the payload
``/gate/check``                        200 "Approved" while the canary's gate is open, else
                                       403 "Forbidden"; gates start closed
``/gate/open`` / ``/gate/close``       202 (the switch is stored in NATS KV: ``gates``)
``/rollback/check|open|close``         the same for the rollback switch
``POST /rollouts/<namespace>/<name>``  Sluice's, for CI in standalone mode: body
                                       ``{"revision": "v2", "by": "ci"}``; the new revision
                                       runs behind the canary upstream (a ``RolloutRequest``
                                       to the watcher). 202 accepted, 409 refused (why in
                                       ``message``), 404 unknown canary, 503 no watcher
=====================================  =======================================================

A body that is not a webhook payload is 400; a canary whose namespace does not match
``SLUICE_LOADTESTER_NAMESPACE_REGEXP`` (flagger-loadtester's ``-namespace-regexp``) is 403.
"""

from __future__ import annotations

import logging
import re

import msgspec
from aiohttp import web

from libs import bus, errors, lifecycle, logs, messages, metrics
from services.webhook_runner import gates, tasks

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """What Flagger posts to a webhook (``CanaryWebhookPayload``)."""

    name: str = ""
    namespace: str = ""
    phase: str = ""
    checksum: str = ""
    metadata: dict[str, str] = {}


_DECODER = msgspec.json.Decoder(Payload)


class RolloutBody(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /rollouts/<namespace>/<name>``: the revision now behind the canary upstream."""

    revision: str
    by: str = ""


_ROLLOUT_DECODER = msgspec.json.Decoder(RolloutBody)


class LoadtesterApi:
    def __init__(
        self,
        rt: lifecycle.Runtime,
        gate_store: gates.GateStore,
        runner: tasks.TaskRunner,
        namespace_regexp: re.Pattern[str] | None,
    ) -> None:
        self.rt = rt
        self.gates = gate_store
        self.runner = runner
        self.namespace_regexp = namespace_regexp

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_route("*", "/gate/approve", self.approve)
        app.router.add_route("*", "/gate/halt", self.halt)
        for kind in messages.GATE_KINDS:
            app.router.add_route("*", f"/{kind}/check", self._check(kind))
            app.router.add_route("*", f"/{kind}/open", self._switch(kind, open=True))
            app.router.add_route("*", f"/{kind}/close", self._switch(kind, open=False))
        app.router.add_post("/rollouts/{namespace}/{name}", self.rollout)
        app.router.add_route("*", "/", self.task)
        return app

    # --------------------------------------------------------------------- fixed answers

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def metrics(self, _: web.Request) -> web.Response:
        body, content_type = metrics.exposition(self.rt.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def approve(self, _: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def halt(self, _: web.Request) -> web.Response:
        return web.Response(status=403, text="Forbidden")

    # --------------------------------------------------------------------- gates

    def _check(self, kind: str):  # type: ignore[no-untyped-def]
        async def check(request: web.Request) -> web.Response:
            canary = await self._canary(request)
            if isinstance(canary, web.Response):
                return canary
            try:
                approved = await self.gates.is_open(kind, canary)
            except errors.SluiceError as exc:
                return _unavailable(exc)
            log.info("%s.%s %s check: approved %s", canary.name, canary.namespace, kind, approved)
            if approved:
                return web.Response(text="Approved")
            return web.Response(status=403, text="Forbidden")

        return check

    def _switch(self, kind: str, *, open: bool):  # type: ignore[no-untyped-def]
        async def switch(request: web.Request) -> web.Response:
            canary = await self._canary(request)
            if isinstance(canary, web.Response):
                return canary
            try:
                await self.gates.set(kind, canary, open=open, by=request.remote or "unknown")
            except errors.SluiceError as exc:
                return _unavailable(exc)
            return web.Response(status=202)

        return switch

    # --------------------------------------------------------------------- tasks

    async def task(self, request: web.Request) -> web.Response:
        payload = await self._payload(request)
        if isinstance(payload, web.Response):
            return payload
        canary = self._authorized(payload)
        if isinstance(canary, web.Response):
            return canary
        if not payload.metadata:
            return web.Response(status=400, text="metadata not found in payload")
        outcome = await self.runner.submit(canary, payload.metadata)
        return web.Response(status=outcome.status, text=outcome.body)

    # --------------------------------------------------------------------- rollouts

    async def rollout(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if self.namespace_regexp is not None and not self.namespace_regexp.search(namespace):
            return web.Response(status=403, text="Forbidden")
        try:
            body = _ROLLOUT_DECODER.decode(await request.read())
        except Exception as exc:  # any decoding failure is a bad request
            detail = str(exc) if isinstance(exc, msgspec.MsgspecError) else type(exc).__name__
            return web.Response(
                status=400,
                text=f'expected a body like {{"revision": "v2"}}: {logs.clip(detail)}',
            )
        try:
            ref = messages.CanaryRef(namespace=namespace, name=name)
            subject = messages.rollout_subject(namespace, name)
            ask = messages.RolloutRequest(canary=ref, revision=body.revision, by=body.by)
            with bus.nats_errors(f"request on {subject}", ask.timeout_s):
                msg = await self.rt.nc.request(
                    subject, messages.ENCODER.encode(ask), timeout=ask.timeout_s
                )
            reply = bus.decode(messages.REPLY_DECODER, msg.data)
        except errors.InvalidInput as exc:
            return web.Response(status=400, text=str(exc))
        except errors.SluiceError as exc:
            return web.Response(status=503, text=f"no watcher answered: {exc}")
        if isinstance(reply, messages.CommandFailed):
            return web.Response(status=400 if not reply.temporary else 503, text=reply.error)
        if not isinstance(reply, messages.RolloutAnswer):
            return web.Response(status=502, text=f"unexpected answer {type(reply).__name__}")
        status = 202 if reply.accepted else (404 if "not found" in reply.message else 409)
        return web.json_response(
            {"accepted": reply.accepted, "message": reply.message, "revision": reply.revision},
            status=status,
        )

    # --------------------------------------------------------------------- payloads

    async def _payload(self, request: web.Request) -> Payload | web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text=f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            return _DECODER.decode(body)
        except Exception as exc:  # any decoding failure (deep nesting too) is a bad request
            detail = str(exc) if isinstance(exc, msgspec.MsgspecError) else type(exc).__name__
            return web.Response(
                status=400, text=f"decoding the request body failed: {logs.clip(detail)}"
            )

    def _authorized(self, payload: Payload) -> messages.CanaryRef | web.Response:
        if self.namespace_regexp is not None and not self.namespace_regexp.search(
            payload.namespace
        ):
            return web.Response(status=403, text="Forbidden")
        return messages.CanaryRef(namespace=payload.namespace, name=payload.name)

    async def _canary(self, request: web.Request) -> messages.CanaryRef | web.Response:
        payload = await self._payload(request)
        if isinstance(payload, web.Response):
            return payload
        canary = self._authorized(payload)
        if isinstance(canary, web.Response):
            return canary
        try:  # a name that cannot be a key: the gate of no real canary
            messages.gate_key("gate", canary.namespace, canary.name)
        except errors.InvalidInput as exc:
            return web.Response(status=400, text=str(exc))
        return canary


def _unavailable(exc: errors.SluiceError) -> web.Response:
    log.warning("gate store unavailable: %s", exc)
    return web.Response(status=503, text=f"gate store unavailable: {exc}")
