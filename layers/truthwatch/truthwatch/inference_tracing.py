"""An X-Ray provider for Powertools Tracer that imports the X-Ray SDK only when a trace needs it.

Powertools' Tracer imports ``aws_xray_sdk.core`` while it is built, even when tracing is off,
and outside Lambda the SDK's recorder then builds a botocore client for centralised sampling:
about half a second of a cold start spent before the first line of the handler runs, for a
tracer that will record nothing. :class:`LazyXRayProvider` keeps the Tracer's behaviour and
defers that import to the first subsegment of an enabled tracer. With tracing off (tests, the
local stack, benchmarks, ``POWERTOOLS_TRACE_DISABLED``) the SDK is never imported; in Lambda with
active tracing it is imported on the first request, which costs about 0.15 s there (inside
Lambda the SDK samples locally and builds no client).

Examples
--------
>>> from aws_lambda_powertools import Tracer
>>> tracer = Tracer(provider=LazyXRayProvider(), auto_patch=False)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

if TYPE_CHECKING:
    import numbers
    import traceback

logger = logging.getLogger(__name__)


class NoSegment(BaseSegment):
    """What a disabled tracer annotates: accepts everything and keeps nothing."""

    def close(self, end_time: int | None = None) -> None:
        """Do nothing."""

    def add_subsegment(self, subsegment: Any) -> None:
        """Do nothing."""

    def remove_subsegment(self, subsegment: Any) -> None:
        """Do nothing."""

    def put_annotation(self, key: str, value: str | numbers.Number | bool) -> None:
        """Do nothing."""

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Do nothing."""

    def add_exception(
        self, exception: BaseException, stack: list[traceback.StackSummary], remote: bool = False
    ) -> None:
        """Do nothing."""


def sdk_enabled() -> bool:
    """Whether the X-Ray SDK would record: the flag Powertools clears when tracing is disabled.

    ``aws_xray_sdk`` itself (not ``aws_xray_sdk.core``) holds only this flag and imports in
    well under a millisecond.
    """
    import aws_xray_sdk

    return bool(aws_xray_sdk.global_sdk_config.sdk_enabled())


class LazyXRayProvider(BaseProvider):
    """The X-Ray recorder behind Powertools' provider interface, imported on first real use."""

    def __init__(self) -> None:
        self._recorder: Any = None

    def _sdk(self) -> Any:
        if self._recorder is None:
            from aws_xray_sdk.core import xray_recorder

            # What Tracer does for its own X-Ray provider: send each subsegment as it closes
            # instead of batching them (Powertools issue 283).
            xray_recorder.configure(streaming_threshold=0)
            self._recorder = xray_recorder
            logger.debug("X-Ray SDK loaded")
        return self._recorder

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        """A subsegment of the current trace, or a :class:`NoSegment` when tracing is off."""
        if not sdk_enabled():
            yield NoSegment()
            return
        with self._sdk().in_subsegment(name=name, **kwargs) as subsegment:
            yield subsegment

    @asynccontextmanager
    async def in_subsegment_async(
        self, name: str | None = None, **kwargs: Any
    ) -> AsyncGenerator[BaseSegment, None]:
        """The asynchronous form of :meth:`in_subsegment`."""
        if not sdk_enabled():
            yield NoSegment()
            return
        async with self._sdk().in_subsegment_async(name=name, **kwargs) as subsegment:
            yield subsegment

    def put_annotation(self, key: str, value: str | numbers.Number | bool) -> None:
        """Annotate the current trace entity (nothing when tracing is off)."""
        if sdk_enabled():
            self._sdk().put_annotation(key=key, value=value)

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Add metadata to the current trace entity (nothing when tracing is off)."""
        if sdk_enabled():
            self._sdk().put_metadata(key=key, value=value, namespace=namespace)

    def patch(self, modules: Sequence[str]) -> None:
        """Instrument ``modules`` (``"botocore"``...) with the SDK's patcher."""
        from aws_xray_sdk.core import patch

        self._sdk()
        patch(modules)

    def patch_all(self) -> None:
        """Instrument every library the SDK supports."""
        from aws_xray_sdk.core import patch_all

        self._sdk()
        patch_all()
