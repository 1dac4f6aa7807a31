"""MetricsFunction: ground-truth label files in S3 become model-quality and drift metrics.

Triggered by uploads under ``labels/`` in the data bucket: S3 notifications directly, or wrapped in
SNS or SQS, or EventBridge "Object Created" events. Each label object is handed to
:class:`truthwatch.metrics_service.LabelService`, which joins it with the recorded predictions,
publishes the metrics, and writes the reports and rejected rows, once per upload.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from truthwatch.metrics_service import LabelService

logger = Logger()


@lru_cache(maxsize=1)
def service() -> LabelService:
    """The service for this container, built on first use from the environment."""
    # The package logs through logging.getLogger(__name__); give it this Logger's JSON output.
    copy_config_to_registered_loggers(source_logger=logger, include={"truthwatch"})
    return LabelService.from_env(os.environ)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Process every label object named by ``event``; SQS events get ``batchItemFailures``."""
    outcome = service().handle(event, context)
    logger.info(
        "Label event handled",
        extra={"processed": len(outcome["processed"]), "skipped": len(outcome["skipped"])},
    )
    return outcome
