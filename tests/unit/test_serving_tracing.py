from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from truthwatch import inference_tracing
from truthwatch.inference_tracing import LazyXRayProvider, NoSegment


class FakeRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any):
        self.calls.append(("in_subsegment", name))
        yield "segment"

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any):
        self.calls.append(("in_subsegment_async", name))
        yield "async segment"

    def put_annotation(self, key: str, value: Any) -> None:
        self.calls.append(("put_annotation", (key, value)))

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.calls.append(("put_metadata", (key, value, namespace)))


def test_disabled_provider_yields_a_segment_that_keeps_nothing(monkeypatch):
    monkeypatch.setattr(inference_tracing, "sdk_enabled", lambda: False)
    provider = LazyXRayProvider()

    with provider.in_subsegment("## handler") as segment:
        segment.put_annotation("ColdStart", True)
        segment.put_metadata("response", {"a": 1})
    provider.put_annotation("key", "value")

    assert isinstance(segment, NoSegment)
    assert provider._recorder is None


def test_enabled_provider_hands_every_call_to_the_sdk_recorder(monkeypatch):
    monkeypatch.setattr(inference_tracing, "sdk_enabled", lambda: True)
    provider = LazyXRayProvider()
    fake = FakeRecorder()
    provider._recorder = fake

    with provider.in_subsegment("## handler") as segment:
        provider.put_annotation("ColdStart", True)
        provider.put_metadata("rows", 3, namespace="svc")

    assert segment == "segment"
    assert fake.calls == [
        ("in_subsegment", "## handler"),
        ("put_annotation", ("ColdStart", True)),
        ("put_metadata", ("rows", 3, "svc")),
    ]


def test_async_subsegment_follows_the_same_switch(monkeypatch):
    provider = LazyXRayProvider()
    fake = FakeRecorder()
    provider._recorder = fake

    async def enter() -> object:
        async with provider.in_subsegment_async("## async") as segment:
            return segment

    monkeypatch.setattr(inference_tracing, "sdk_enabled", lambda: False)
    off = asyncio.run(enter())
    monkeypatch.setattr(inference_tracing, "sdk_enabled", lambda: True)
    on = asyncio.run(enter())

    assert isinstance(off, NoSegment)
    assert on == "async segment"
    assert fake.calls == [("in_subsegment_async", "## async")]


def test_the_inference_tracer_keeps_its_settings_to_itself():
    from aws_lambda_powertools import Tracer

    from functions.inference import app

    other = Tracer(disabled=True)

    assert isinstance(app.tracer.provider, LazyXRayProvider)
    assert app.tracer.auto_patch is False
    assert not isinstance(other.provider, LazyXRayProvider)
    assert other.auto_patch is not False
