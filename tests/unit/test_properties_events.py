"""Property tests of the event parsers: damaged events are skipped or refused by name, never crash.

Each realistic event in ``events/`` is damaged at a random place (a value replaced by another type,
a key removed, a JSON string garbled) and handed to the parser of the function that receives it.
The alarm function must return parsed changes or raise :class:`AlarmEventError` (the documented
refusal), nothing else. ``damaged`` is shared with the label-notification properties.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.events import load_event
from truthwatch.alarms import AlarmEventError, parse_event
from truthwatch.notifications import deliveries

LABEL_EVENTS = (
    "s3-object-created-labels",
    "s3-multi-record-labels",
    "s3-test-event",
    "sns-s3-labels",
    "sqs-s3-labels",
    "eventbridge-s3-object-created-labels",
)
ALARM_EVENTS = (
    "alarm-sns-metric",
    "alarm-sns-metric-math",
    "alarm-sns-anomaly",
    "alarm-sns-notice",
    "alarm-lambda-metric",
    "alarm-lambda-composite",
    "alarm-eventbridge-state-change",
)

REPLACEMENTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.just(""),
    st.just("{"),
    st.just("not json"),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _expand_json_strings(node: Any) -> Any:
    # SNS and SQS carry the inner event as a JSON string; open it so the damage can land inside.
    if isinstance(node, dict):
        return {k: _expand_json_strings(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_json_strings(v) for v in node]
    if isinstance(node, str) and node.startswith("{"):
        try:
            return {"__json__": _expand_json_strings(json.loads(node))}
        except ValueError:
            return node
    return node


def _collapse_json_strings(node: Any) -> Any:
    if isinstance(node, dict):
        if set(node) == {"__json__"}:
            return json.dumps(_collapse_json_strings(node["__json__"]))
        return {k: _collapse_json_strings(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_collapse_json_strings(v) for v in node]
    return node


@st.composite
def damaged(draw: st.DrawFn, names: tuple[str, ...]) -> dict[str, Any]:
    """A real event with one to three places damaged."""
    event = _expand_json_strings(load_event(draw(st.sampled_from(names))))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(event)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = event
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(REPLACEMENTS)
    collapsed: dict[str, Any] = _collapse_json_strings(event)
    return collapsed


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=damaged(ALARM_EVENTS))
def test_damaged_alarm_events_parse_or_raise_the_documented_error(event: dict[str, Any]) -> None:
    try:
        parsed = parse_event(event)
    except AlarmEventError as refused:
        assert str(refused)
        return

    assert parsed, "an event parsed into nothing would send no email and raise nothing"


@pytest.mark.parametrize("name", LABEL_EVENTS + ALARM_EVENTS)
def test_the_undamaged_events_still_parse(name: str) -> None:
    event = load_event(name)

    if name in LABEL_EVENTS:
        assert any(d.objects or d.skipped for d in deliveries(event))
    else:
        assert parse_event(event)
