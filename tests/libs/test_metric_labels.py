"""The bus metrics' label values come from the code, never from a message: a wildcard
subscription receiving requests on ever new subjects (as a fuzzer or a hostile client sends
them) keeps one ``subject`` label, the subscription's, so a process's metric registry cannot
grow with the subjects it is sent."""

from __future__ import annotations

import asyncio

import pytest

from libs import lifecycle, messages, serving

pytestmark = pytest.mark.integration

SUBSCRIPTION = messages.CONTROL_ALL
SUBJECTS = 200


async def refused(request: messages.ControlRequest) -> messages.Reply:
    raise AssertionError("no request here decodes")


def label_values(rt: lifecycle.Runtime, label: str) -> set[str]:
    return {
        sample.labels[label]
        for family in rt.metrics.registry.collect()
        if family.name.startswith("sluice_")
        for sample in family.samples
        if label in sample.labels
    }


async def test_rejected_requests_on_many_subjects_keep_one_subject_label(
    runtime: lifecycle.Runtime,
) -> None:
    task = asyncio.create_task(
        serving.serve_requests(runtime, SUBSCRIPTION, "q", messages.CONTROL_DECODER, refused)
    )
    try:
        await asyncio.sleep(0)
        await runtime.nc.flush()
        for i in range(SUBJECTS):
            subject = f"sluice.control.ns-{i}.canary-{i}.abort-{i}"
            reply = await runtime.nc.request(subject, b"\xff not json", timeout=5)
            assert isinstance(messages.REPLY_DECODER.decode(reply.data), messages.CommandFailed)
        rejected = runtime.metrics.registry.get_sample_value(
            "sluice_messages_rejected_total", {"subject": SUBSCRIPTION, "reason": "undecodable"}
        )
        assert rejected == SUBJECTS
        assert label_values(runtime, "subject") == {SUBSCRIPTION}
    finally:
        runtime.stopping.set()
        await asyncio.wait_for(task, timeout=10)
