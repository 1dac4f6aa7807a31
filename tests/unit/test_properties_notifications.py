"""Property: a damaged label notification is read or skipped with a reason, never a crash."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from tests.unit.test_properties_events import LABEL_EVENTS, damaged
from truthwatch.notifications import deliveries


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=damaged(LABEL_EVENTS))
def test_damaged_label_notifications_are_read_or_skipped_with_a_reason(event: dict[str, Any]) -> None:
    items = deliveries(event)

    for delivery in items:
        for obj in delivery.objects:
            assert isinstance(obj.bucket, str) and isinstance(obj.key, str)
        assert all(isinstance(reason, str) and reason for reason in delivery.skipped)
        assert delivery.objects or delivery.skipped, "a delivery with neither objects nor a skip reason"
