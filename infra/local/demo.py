"""The demo story, played over HTTP against a local stack: healthy, drifted, recovered.

1. **Healthy**: the held-out digits (never seen in training) are sent to ``POST /predict``, first
   row by row, then in batches; their true labels follow as a CSV upload to ``labels/``; the metrics
   function joins them, publishes quality and drift, and writes a report. No alarm may fire.
2. **Drifted**: the same digits shifted one pixel to the right and noised (a real input shift the
   model was never trained on, which costs it about half its accuracy); their labels; accuracy
   falls below ``AccuracyThreshold``, the local evaluator fires the alarm, the alarm function's
   email lands in the outbox.
3. **Recovered**: unshifted digits again and their labels. The quality alarms look back
   ``EvaluationPeriods`` periods (a day of hours in the template); once the drifted period has left
   that window and only healthy datapoints remain, each alarm returns to OK and the OK email follows.

Exit status 0 only when all of that happened; the summary says which step did not.
"""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm  # type: ignore[import-untyped]

from infra.local.stack import Console, LocalStack, StackConfig

SINGLE_ROWS = 240
BATCH_ROWS = 30
DRIFT_SHIFT_PIXELS = 1
DRIFT_NOISE_SD = 1.5
DRIFT_SEED = 7
REPORT_TIMEOUT_S = 30.0


def shift_digits(
    rows: npt.NDArray[np.float32], pixels: int = DRIFT_SHIFT_PIXELS, noise_sd: float = DRIFT_NOISE_SD
) -> npt.NDArray[np.float32]:
    """Digits moved ``pixels`` to the right (zeros enter on the left) plus rounded Gaussian noise.

    Parameters
    ----------
    rows
        Shape ``(n, 64)``: 8x8 images, values 0 to 16.

    Returns
    -------
    Shape ``(n, 64)``, values still whole numbers in 0 to 16, as the scanner produced them.
    """
    images = rows.reshape(-1, 8, 8)
    shifted = np.zeros_like(images)
    shifted[:, :, pixels:] = images[:, :, : 8 - pixels]
    noise = np.random.default_rng(DRIFT_SEED).normal(0.0, noise_sd, shifted.shape)
    return np.clip(np.rint(shifted + noise), 0, 16).astype(np.float32).reshape(-1, 64)


@dataclass
class PhaseResult:
    """What one phase sent and what the metrics function reported."""

    name: str
    requests: int = 0
    rows: int = 0
    report: dict[str, Any] = field(default_factory=dict)
    report_paths: list[Path] = field(default_factory=list)

    def metric(self, section: str, name: str) -> float | None:
        """A number from the report (``quality.metrics`` or ``drift``), ``None`` when absent."""
        holder = self.report.get(section, {})
        value = (holder.get("metrics", {}) if section == "quality" else holder).get(name)
        return float(value) if isinstance(value, int | float) else None


@dataclass
class Story:
    """The demo's steps against a running stack."""

    stack: LocalStack
    console: Console
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, what: str, passed: bool) -> bool:
        """Record one claim of the story and say whether it held."""
        self.checks.append((what, passed))
        self.console.say(f"{'ok  ' if passed else 'FAIL'} {what}")
        return passed

    def traffic(self, phase: PhaseResult, rows: npt.NDArray[np.float32]) -> list[str]:
        """Send ``rows`` to ``POST /predict``: some one per request, the rest in batches; returns the ids."""
        ids: list[str] = []
        chunks = [rows[i : i + 1] for i in range(min(SINGLE_ROWS, len(rows)))]
        chunks += [rows[i : i + BATCH_ROWS] for i in range(SINGLE_ROWS, len(rows), BATCH_ROWS)]
        with tqdm(
            total=len(rows), desc=f"{phase.name} traffic", unit="row", leave=False, disable=None
        ) as bar:
            for chunk in chunks:
                answer = self._post("/predict", {"instances": chunk.tolist()})
                ids.extend(str(p["inference_id"]) for p in answer["predictions"])
                phase.requests += 1
                phase.rows += len(chunk)
                bar.update(len(chunk))
        return ids

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - the stack's own http URL
            self.stack.api_url + path,
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the stack's own http URL
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def upload_labels(self, phase: PhaseResult, ids: list[str], labels: list[str]) -> str:
        """Upload ``inference_id,label`` as CSV under ``labels/``; returns the key."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["inference_id", "label"])
        writer.writerows(zip(ids, labels, strict=True))
        key = f"labels/demo/{phase.name}-{int(time.time())}.csv"
        self.stack.client("s3").put_object(
            Bucket=self.stack.name_of("DataBucket"), Key=key, Body=text.getvalue().encode("utf-8")
        )
        self.console.say(f"uploaded {len(ids)} labels to s3://{self.stack.name_of('DataBucket')}/{key}")
        return key

    def wait_for_report(self, phase: PhaseResult, label_key: str) -> bool:
        """Wait for the stack's copy of the metrics function's report on ``label_key``; read it."""
        deadline = time.monotonic() + REPORT_TIMEOUT_S
        while time.monotonic() < deadline:
            copies = [r.path for r in self.stack.reports if r.label_key == label_key and r.path is not None]
            documents = [path for path in copies if path.suffix == ".json"]
            if documents:
                phase.report = json.loads(documents[0].read_text(encoding="utf-8"))
                phase.report_paths = copies
                return True
            time.sleep(0.25)
        return False

    def wait_until(self, what: str, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Poll ``condition`` until it holds or ``timeout_s`` passes, with a progress bar of the wait."""
        started = time.monotonic()
        with tqdm(total=round(timeout_s), desc=what, unit="s", leave=False, disable=None) as bar:
            while time.monotonic() - started < timeout_s:
                if condition():
                    return True
                time.sleep(0.25)
                bar.n = min(round(time.monotonic() - started), bar.total)
                bar.refresh()
        return condition()


def _state(stack: LocalStack, alarm: str) -> str:
    found = stack.client("cloudwatch").describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    return str(found[0]["StateValue"]) if found else "MISSING"


def _emails_about(stack: LocalStack, alarm: str, since: int, headline: str) -> list[Path]:
    # Emails sent after ``since`` whose subject opens with the headline and names the alarm.
    return [e.path for e in stack.emails[since:] if e.subject.startswith(f"[{headline}] {alarm} ")]


def run_demo(config: StackConfig) -> int:
    """Start a stack, play the story on the held-out digits, print a summary; 0 only if it all held."""
    from truthwatch.card import read_card
    from truthwatch.dataset import load_digits_split
    from truthwatch.registry import resolve_model_dir

    started = time.monotonic()
    console = Console()
    with LocalStack(config, console) as stack:
        card = read_card(resolve_model_dir(config.model_dir))
        split = load_digits_split(card.training_data.heldout_fraction, card.training_data.seed)
        labels = [card.class_names[i] for i in split.y_heldout]
        assert stack.provisioned is not None and stack.evaluator is not None
        threshold = float(stack.provisioned.parameters["AccuracyThreshold"])
        accuracy_alarm = stack.name_of("AccuracyAlarm")
        periods = int(
            stack.client("cloudwatch").describe_alarms(AlarmNames=[accuracy_alarm])["MetricAlarms"][0][
                "EvaluationPeriods"
            ]
        )
        story = Story(stack, console)
        phases = [PhaseResult("healthy"), PhaseResult("drifted"), PhaseResult("recovered")]
        healthy, drifted, recovered = phases

        console.say(f"1/3 healthy: {len(labels)} held-out digits the model never saw in training")
        key = story.upload_labels(healthy, story.traffic(healthy, split.x_heldout), labels)
        story.check("healthy labels produced a report", story.wait_for_report(healthy, key))
        accuracy = healthy.metric("quality", "accuracy_score")
        story.check(
            f"healthy accuracy {accuracy} is at or above the threshold {threshold}",
            accuracy is not None and accuracy >= threshold,
        )
        evaluator = stack.evaluator
        settle = evaluator.period_index() + 2
        story.wait_until("evaluating", lambda: evaluator.period_index() >= settle, 3 * config.period_s)
        story.check("no alarm fired on healthy traffic", not any(t.new == "ALARM" for t in stack.transitions))

        console.say(
            f"2/3 drifted: the same digits shifted {DRIFT_SHIFT_PIXELS} pixel right, "
            f"noise sd {DRIFT_NOISE_SD}"
        )
        emails_before = len(stack.emails)
        ids = story.traffic(drifted, shift_digits(split.x_heldout))
        key = story.upload_labels(drifted, ids, labels)
        story.check("drifted labels produced a report", story.wait_for_report(drifted, key))
        accuracy = drifted.metric("quality", "accuracy_score")
        story.check(
            f"drifted accuracy {accuracy} is below the threshold {threshold}",
            accuracy is not None and accuracy < threshold,
        )
        fired = story.wait_until(
            "waiting for the alarm",
            lambda: _state(stack, accuracy_alarm) == "ALARM",
            4 * config.period_s + 10,
        )
        story.check(f"{accuracy_alarm} fired", fired)
        story.check(
            "the FIRING email is in the outbox",
            story.wait_until(
                "waiting for the email",
                lambda: bool(_emails_about(stack, accuracy_alarm, emails_before, "FIRING")),
                15,
            ),
        )

        console.say("3/3 recovered: unshifted digits again")
        emails_before = len(stack.emails)
        key = story.upload_labels(
            recovered, story.traffic(recovered, split.x_heldout[::-1].copy()), labels[::-1]
        )
        story.check("recovery labels produced a report", story.wait_for_report(recovered, key))
        accuracy = recovered.metric("quality", "accuracy_score")
        story.check(
            f"recovered accuracy {accuracy} is at or above the threshold {threshold}",
            accuracy is not None and accuracy >= threshold,
        )
        console.say(
            f"the alarm looks back {periods} periods ({periods * config.period_s:g} s here); waiting for the "
            "drifted period to leave the window"
        )
        ok = story.wait_until(
            "waiting for OK",
            lambda: _state(stack, accuracy_alarm) == "OK",
            (periods + 4) * config.period_s + 10,
        )
        story.check(f"{accuracy_alarm} returned to OK", ok)
        story.check(
            "the RECOVERED email is in the outbox",
            story.wait_until(
                "waiting for the email",
                lambda: bool(_emails_about(stack, accuracy_alarm, emails_before, "RECOVERED")),
                15,
            ),
        )
        notified = sum(1 for t in stack.transitions if t.notified)
        story.wait_until("collecting emails", lambda: len(stack.emails) >= notified, 10)
        _summary(console, stack, phases, story, time.monotonic() - started)
    return 0 if all(passed for _, passed in story.checks) else 1


def _summary(
    console: Console, stack: LocalStack, phases: list[PhaseResult], story: Story, elapsed: float
) -> None:
    say = console.say
    say("")
    header = ("accuracy", "macro F1", "max PSI", "pred PSI")
    say(f"{'phase':<10} {'requests':>8} {'rows':>5} " + " ".join(f"{h:>9}" for h in header))
    for phase in phases:
        numbers = [
            phase.metric("quality", "accuracy_score"),
            phase.metric("quality", "f1_macro_score"),
            phase.metric("drift", "feature_psi_max"),
            phase.metric("drift", "prediction_psi"),
        ]
        shown = " ".join(
            f"{'-' if n is None else f'{n:.3f}':>{w}}" for n, w in zip(numbers, (9, 9, 8, 8), strict=True)
        )
        say(f"{phase.name:<10} {phase.requests:>8} {phase.rows:>5} {shown}")
    say("")
    say("alarm transitions:")
    for transition in stack.transitions:
        say(f"  {transition.at:%H:%M:%S} {transition.alarm}: {transition.old} -> {transition.new}")
    say("reports:")
    for phase in phases:
        for path in phase.report_paths:
            say(f"  {path}")
    say("emails:")
    for email in stack.emails:
        say(f"  {email.path}  ({email.subject})")
    failed = [what for what, passed in story.checks if not passed]
    verdict = "the story happened as told" if not failed else f"{len(failed)} step(s) did not happen"
    say(f"{verdict}; {sum(stack.request_counts().values())} requests in {elapsed:.0f} s")
