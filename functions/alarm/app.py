"""AlarmFunction: email a person when a truthwatch alarm changes state.

Subscribed to ``AlarmTopic`` (SNS) and usable as a direct alarm action or an EventBridge target.
The event is handed to :class:`truthwatch.notify.AlarmNotifier`, which sends one email per state
change however often the change is delivered. Sending failures raise, so Lambda retries and then
hands the event to the on-failure destination.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from truthwatch.notify import AlarmNotifier

logger = Logger()


@lru_cache(maxsize=1)
def notifier() -> AlarmNotifier:
    """The notifier for this container, built on first use from the environment."""
    # The package logs through logging.getLogger(__name__); give it this Logger's JSON output.
    copy_config_to_registered_loggers(source_logger=logger, include={"truthwatch"})
    return AlarmNotifier.from_env(os.environ)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """Send the email for every alarm change or notice in ``event``; return what was sent."""
    outcome = notifier().handle(event, context)
    logger.info("Alarm event handled", extra=outcome)
    return outcome
