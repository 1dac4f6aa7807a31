"""Reading back what the alarm function sent through moto's SES, and seeding CloudWatch."""

from __future__ import annotations

import email
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import default
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

REGION = "eu-west-1"


@dataclass(frozen=True)
class SentEmail:
    """One message moto's SES recorded, parsed back into its parts."""

    sender: str
    destinations: list[str]
    subject: str
    text: str
    html: str
    headers: EmailMessage


def sent_emails() -> list[SentEmail]:
    """Every message moto's SES recorded in the test region, oldest first."""
    sent = []
    for message in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages:
        parsed = email.message_from_string(message.raw_data, policy=default)
        assert isinstance(parsed, EmailMessage)
        text_part = parsed.get_body(preferencelist=("plain",))
        html_part = parsed.get_body(preferencelist=("html",))
        assert text_part is not None and html_part is not None
        sent.append(
            SentEmail(
                sender=message.source,
                destinations=list(message.destinations),
                subject=str(parsed["Subject"]),
                text=text_part.get_content().replace("\r\n", "\n"),
                html=html_part.get_content().replace("\r\n", "\n"),
                headers=parsed,
            )
        )
    return sent


def put_points(
    cloudwatch: Any,
    namespace: str,
    name: str,
    dimensions: dict[str, str],
    points: list[tuple[datetime, float]],
) -> None:
    """Publish datapoints the way the truthwatch publishers do (one datum each)."""
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                "Timestamp": stamp,
                "Value": value,
            }
            for stamp, value in points
        ],
    )
