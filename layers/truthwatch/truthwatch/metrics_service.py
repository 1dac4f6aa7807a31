"""The metrics function's service: every label object of an event, each processed exactly once.

An object is identified by bucket, key and version id (or ETag when the bucket is not versioned);
Powertools idempotency on ``IdempotencyTable`` makes a second delivery of the same upload return
the first run's summary instead of publishing again. A failing object does not stop the others:
with SQS the failed messages are returned as ``batchItemFailures`` for redelivery; otherwise the
invocation fails after the rest are done, Lambda retries it, and idempotency skips what was done.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer

from truthwatch.label_job import Services, process_label_object
from truthwatch.notifications import LabelObject, deliveries

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = logging.getLogger(__name__)

IDEMPOTENCY_SECONDS = 7 * 24 * 3600
"""How long a processed upload is remembered; S3 redelivers within hours, SQS within its retention."""


class ConfigurationError(RuntimeError):
    """A required environment variable is missing."""


@dataclass(frozen=True)
class MetricsSettings:
    """The metrics function's configuration (docs/contracts.md, environment variables)."""

    predictions_table: str
    data_bucket: str
    idempotency_table: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> MetricsSettings:
        """Read the settings, naming every missing variable at once."""
        names = {
            "predictions_table": "PREDICTIONS_TABLE",
            "data_bucket": "DATA_BUCKET",
            "idempotency_table": "IDEMPOTENCY_TABLE",
        }
        missing = [env for env in names.values() if not environ.get(env, "").strip()]
        if missing:
            raise ConfigurationError(f"the metrics function needs {', '.join(missing)} set")
        return cls(**{attr: environ[env].strip() for attr, env in names.items()})


@dataclass
class LabelService:
    """Runs :func:`truthwatch.label_job.process_label_object` once per uploaded label object."""

    services: Services
    persistence: BasePersistenceLayer | None
    config: IdempotencyConfig = field(init=False)

    def __post_init__(self) -> None:
        self.config = IdempotencyConfig(
            event_key_jmespath="identity", expires_after_seconds=IDEMPOTENCY_SECONDS, use_local_cache=True
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LabelService:
        """Settings from the environment, boto3 clients for the function's region."""
        import boto3
        from botocore.config import Config

        settings = MetricsSettings.from_env(environ)
        # Standard retry mode backs off on throttling (PutMetricData, BatchGetItem) by itself.
        config = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=16)
        services = Services(
            s3=boto3.client("s3", config=config),
            dynamodb=boto3.client("dynamodb", config=config),
            cloudwatch=boto3.client("cloudwatch", config=config),
            predictions_table=settings.predictions_table,
            data_bucket=settings.data_bucket,
        )
        return cls(
            services=services, persistence=DynamoDBPersistenceLayer(table_name=settings.idempotency_table)
        )

    def handle(self, event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
        """Process every label object of ``event``; return summaries, skips and failed SQS messages."""
        if context is not None:
            self.config.register_lambda_context(context)

        processed: list[dict[str, Any]] = []
        skipped: list[str] = []
        failed_messages: list[str] = []
        errors: list[Exception] = []
        items = deliveries(event)
        for delivery in items:
            skipped.extend(delivery.skipped)
            for obj in delivery.objects:
                try:
                    processed.append(self._once(obj))
                except Exception as exc:
                    # One bad object must not block the others; the error is re-raised (or the SQS
                    # message reported) once the rest are done.
                    logger.exception("label object failed", extra={"bucket": obj.bucket, "key": obj.key})
                    errors.append(exc)
                    if delivery.message_id is not None and delivery.message_id not in failed_messages:
                        failed_messages.append(delivery.message_id)

        for reason in skipped:
            logger.info("notification skipped", extra={"reason": reason})
        outcome: dict[str, Any] = {"processed": processed, "skipped": skipped}
        if items and items[0].message_id is not None:
            outcome["batchItemFailures"] = [{"itemIdentifier": m} for m in failed_messages]
        elif errors:
            raise errors[0]
        return outcome

    def _once(self, obj: LabelObject) -> dict[str, Any]:
        payload = {"identity": obj.identity(), "object": asdict(obj)}
        if self.persistence is None:
            return self._run(label_object=payload)
        once = idempotent_function(
            self._run,
            data_keyword_argument="label_object",
            persistence_store=self.persistence,
            config=self.config,
        )
        result: dict[str, Any] = once(label_object=payload)
        return result

    def _run(self, label_object: dict[str, Any]) -> dict[str, Any]:
        return process_label_object(LabelObject(**label_object["object"]), self.services)
