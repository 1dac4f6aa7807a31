"""The one helper that loads the realistic event payloads kept in ``events/``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
_cache: dict[str, dict[str, Any]] = {}


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>.json`` (``name`` may omit ``.json``), safe to modify."""
    file_name = name if name.endswith(".json") else f"{name}.json"
    if file_name not in _cache:
        _cache[file_name] = json.loads((EVENTS_DIR / file_name).read_text(encoding="utf-8"))
    return copy.deepcopy(_cache[file_name])
