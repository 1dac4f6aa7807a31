"""Emails sent through moto's SES, written to a folder as ``.eml`` files any mail client opens.

moto keeps every sent message in its SES backend (the v2 API shares the v1 store); the stack and
moto share this process, so :class:`Outbox` reads that list directly. A raw message (SES v2
``Content.Raw``) is written as sent; a simple one is rebuilt as a MIME message. For a simple message
with both parts moto keeps only the HTML part, so only that part reaches the file.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_string, policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SentEmail:
    """One email written to the outbox."""

    path: Path
    subject: str
    recipients: tuple[str, ...]
    sender: str


def to_mime(message: Any) -> EmailMessage:
    """A moto SES message (``Message`` or ``RawMessage``) as a MIME message."""
    raw = getattr(message, "raw_data", None)
    if isinstance(raw, str):
        parsed = message_from_string(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        if "To" not in parsed and getattr(message, "destinations", None):
            parsed["To"] = ", ".join(message.destinations)
        if "From" not in parsed:
            parsed["From"] = message.source
        return parsed

    mime = EmailMessage()
    mime["From"] = message.source
    destinations: dict[str, list[str]] = getattr(message, "destinations", {}) or {}
    for header, key in (("To", "ToAddresses"), ("Cc", "CcAddresses")):
        if destinations.get(key):
            mime[header] = ", ".join(destinations[key])
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(datetime.now(tz=UTC))
    mime["Message-ID"] = f"<{message.id}@local.truthwatch>"
    body = str(message.body)
    subtype = "html" if re.search(r"<(html|body|p|table|div)\b", body, re.IGNORECASE) else "plain"
    mime.set_content(body, subtype=subtype)
    return mime


def file_name(index: int, subject: str) -> str:
    """``0001-alarm-accuracy-below-threshold.eml``: numbered in sending order, readable, safe."""
    slug = re.sub(r"[^a-z0-9]+", "-", subject.lower()).strip("-")[:60] or "email"
    return f"{index:04d}-{slug}.eml"


class Outbox:
    """Writes each newly sent SES message to ``folder`` once.

    Parameters
    ----------
    folder
        Where the ``.eml`` files go (created when missing).
    sent_messages
        Returns moto's list of sent messages.
    on_email
        Called for each written email.
    """

    def __init__(
        self,
        folder: Path,
        sent_messages: Callable[[], list[Any]],
        on_email: Callable[[SentEmail], None] | None = None,
    ) -> None:
        self.folder = folder
        self.sent_messages = sent_messages
        self.on_email = on_email
        self.emails: list[SentEmail] = []
        self._seen = 0
        self._lock = threading.Lock()

    def collect(self) -> list[SentEmail]:
        """Write the messages sent since the last call; returns them."""
        with self._lock:
            messages = self.sent_messages()
            if len(messages) < self._seen:  # moto was reset
                self._seen = 0
            fresh = messages[self._seen :]
            self._seen = len(messages)
            written = [self._write(message) for message in fresh]
        for email in written:
            if self.on_email is not None:
                self.on_email(email)
        return written

    def _write(self, message: Any) -> SentEmail:
        mime = to_mime(message)
        subject = str(mime.get("Subject", ""))
        self.folder.mkdir(parents=True, exist_ok=True)
        earlier = sum(1 for _ in self.folder.glob("*.eml"))
        path = self.folder / file_name(earlier + 1, subject)
        path.write_bytes(mime.as_bytes(policy=policy.SMTP))
        recipients = tuple(a.strip() for a in str(mime.get("To", "")).split(",") if a.strip())
        email = SentEmail(path, subject, recipients, str(mime.get("From", "")))
        self.emails.append(email)
        return email
