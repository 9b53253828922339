"""Standalone mode under the shipped NATS authorization (deploy/nats/authorization.conf): each
user can do its part of a standalone canary's life, and a viewer cannot change one."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from libs import errors, messages, streams
from libs.model import canary as canary_model
from libs.model.documents import load_documents
from libs.standalone import applying
from libs.standalone import store as canary_store
from tests.fixtures import secured_nats

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CANARY = """
apiVersion: sluice.dev/v1alpha1
kind: ApisixCanary
metadata: {name: podinfo, namespace: shop}
spec:
  route: {id: podinfo}
  upstreams:
    canary: {nodes: ["10.0.0.12:9898"]}
  analysis: {interval: 10s, threshold: 5, maxWeight: 50, stepWeight: 10}
"""
REF = messages.CanaryRef(namespace="shop", name="podinfo")


@pytest.fixture
def shipped(tmp_path: pathlib.Path) -> Iterator[secured_nats.ShippedNats]:
    server = secured_nats.ShippedNats(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def users(shipped: secured_nats.ShippedNats) -> AsyncIterator[dict[str, Client]]:
    clients: dict[str, Client] = {}

    async def quiet(_: Exception) -> None:  # permission violations: the tests look at results
        return None

    try:
        for user in ("admin", "operator", "watcher", "analyzer", "traffic-shifter",
                     "webhook-runner", "viewer"):  # fmt: skip
            clients[user] = await nats.connect(
                shipped.url_for(user), allow_reconnect=False, error_cb=quiet
            )
        # what the services declare at start
        await streams.declare(
            clients["admin"].jetstream(),
            streams=(streams.EVENTS,),
            buckets=(streams.CANARIES, streams.TEMPLATES, streams.WORKLOADS, streams.ROUTES),
        )
        yield clients
    finally:
        for client in clients.values():
            await client.close()


async def serve_rollouts(watcher: Client) -> None:
    """Answer every rollout request as the watcher does (accepted)."""

    async def answer(msg: Msg) -> None:
        request = messages.ROLLOUT_DECODER.decode(msg.data)
        reply = messages.RolloutAnswer(
            canary=request.canary, revision=request.revision, accepted=True, message="ok"
        )
        await msg.respond(messages.ENCODER.encode(reply))

    await watcher.subscribe("sluice.rollout.>", queue="watcher", cb=answer)
    await watcher.flush()


async def store_of(client: Client, timeout_s: float = 2.0) -> canary_store.CanaryStore:
    return canary_store.CanaryStore(
        await client.jetstream().key_value(streams.CANARIES.name), timeout_s
    )


async def test_each_user_does_its_part(users: dict[str, Client]) -> None:
    # operator: sluice apply
    js = users["operator"].jetstream()
    applied = await applying.apply(
        load_documents(CANARY, "podinfo.yaml"),
        await js.key_value(streams.CANARIES.name),
        await js.key_value(streams.TEMPLATES.name),
    )
    assert [a.outcome for a in applied] == ["created"]

    # watcher answers rollout requests from the operator and the webhook-runner
    await serve_rollouts(users["watcher"])
    for user in ("operator", "webhook-runner"):
        request = messages.RolloutRequest(canary=REF, revision="v2", by=user)
        msg = await users[user].request(
            messages.rollout_subject("shop", "podinfo"), messages.ENCODER.encode(request), 5
        )
        assert isinstance(messages.REPLY_DECODER.decode(msg.data), messages.RolloutAnswer)

    # analyzer: the status
    analyzer = await store_of(users["analyzer"])
    observed = await analyzer.get("shop", "podinfo")
    assert observed is not None
    status = canary_model.CanaryStatus(phase=canary_model.Phase.INITIALIZED)
    await analyzer.write_status(REF, observed.resource_version, status)

    # traffic-shifter: the target, the finalizer, the route's record
    shifter = await store_of(users["traffic-shifter"])
    assert (await shifter.target(REF)).route_id == "podinfo"
    await shifter.set_finalizer(REF, True)
    routes = await users["traffic-shifter"].jetstream().key_value(streams.ROUTES.name)
    await routes.create("shop.podinfo", b'{"uri": "/*"}')
    assert (await routes.get("shop.podinfo")).value == b'{"uri": "/*"}'
    await routes.delete("shop.podinfo")

    # operator: sluice delete canary; the traffic-shifter's last word deletes it
    operator = await store_of(users["operator"])
    assert await operator.delete(REF) == "deleting"
    await shifter.set_finalizer(REF, False)
    assert await operator.get("shop", "podinfo") is None


async def test_a_viewer_cannot_change_a_canary(users: dict[str, Client]) -> None:
    js = users["operator"].jetstream()
    await applying.apply(
        load_documents(CANARY, "podinfo.yaml"),
        await js.key_value(streams.CANARIES.name),
        await js.key_value(streams.TEMPLATES.name),
    )
    viewer = await store_of(users["viewer"], timeout_s=1.0)
    assert await viewer.get("shop", "podinfo") is not None  # reading is fine
    with pytest.raises(errors.SluiceError):
        await viewer.delete(REF)
    await serve_rollouts(users["watcher"])  # answers whoever may ask: not the viewer
    request = messages.RolloutRequest(canary=REF, revision="v3", by="viewer")
    with pytest.raises(nats.errors.TimeoutError):
        await users["viewer"].request(
            messages.rollout_subject("shop", "podinfo"), messages.ENCODER.encode(request), 1
        )
    observed = await viewer.get("shop", "podinfo")
    assert observed is not None
    assert observed.canary is not None
    assert not observed.canary.metadata.deletion_timestamp
