"""When a load run counts: the validity rules, applied to what the run measured.

A run is only evidence about the system under test if the load generator did what it was asked: ran long
enough, sent enough queries, kept to its schedule and was not itself the bottleneck. Each broken rule adds
one plain-language reason; a run with any reason is stored with ``valid = False`` and the reasons, never
dropped (so a sweep shows where the generator, not the server, gave out).

The rules read only numbers that the run recorded (durations, counts, CPU fractions), never the wall
clock, so they are tested with fabricated runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ValidityRules:
    """Thresholds of a valid run.

    ``late_tolerance_ms``: a send counts as late when it left more than this after its scheduled time. The
    default 1 ms is one event-loop timer tick (libuv and epoll time out in whole milliseconds), so an
    on-time asyncio sender is never counted late for its timer resolution alone.
    ``max_late_ratio``: share of late sends above which the schedule was not kept (MLPerf-style 1%).
    ``min_send_rate_ratio``: the sends must span no more than scheduled_span / ratio — a generator that
    fell behind stretches its schedule.
    ``max_client_cpu``: the generator's own CPU use, as a fraction of the cores its sending loop can use
    (one for an asyncio or a single sender thread); at or above it the client, not the system under
    test, may be what limits the run.
    ``max_error_ratio``: failed queries (transport errors, 5xx, rejected with 503) tolerated.
    ``target_p99_ms``: the latency constraint of a Server-style run (None: no constraint).
    """

    min_duration_s: float = 1.0
    min_queries: int = 100
    late_tolerance_ms: float = 1.0
    max_late_ratio: float = 0.01
    min_send_rate_ratio: float = 0.95
    max_client_cpu: float = 0.9
    max_error_ratio: float = 0.0
    target_p99_ms: float | None = None
    target_percentile: float = 99.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunFacts:
    """What a finished run measured, as far as validity is concerned (None: not measured, rule skipped)."""

    duration_s: float
    completed: int
    errors: int
    sent: int
    late: int | None = None
    scheduled_span_s: float | None = None
    send_span_s: float | None = None
    client_cpu: float | None = None
    latency_at_target_ms: float | None = None
    open_loop: bool = True


def check_validity(facts: RunFacts, rules: ValidityRules) -> list[str]:
    """Every broken rule as one reason; an empty list means the run is valid."""
    reasons: list[str] = []
    if facts.duration_s < rules.min_duration_s:
        reasons.append(f"ran {facts.duration_s:.3g} s, less than the minimum duration {rules.min_duration_s:g} s")
    if facts.completed < rules.min_queries:
        reasons.append(f"{facts.completed} queries completed, fewer than the minimum {rules.min_queries}")
    total = facts.completed + facts.errors
    if total and facts.errors / total > rules.max_error_ratio:
        reasons.append(f"{facts.errors} of {total} queries failed ({100 * facts.errors / total:.2f}% > "
                       f"{100 * rules.max_error_ratio:g}% allowed)")
    if facts.open_loop and facts.late is not None and facts.sent:
        ratio = facts.late / facts.sent
        if ratio > rules.max_late_ratio:
            hint = ""
            if facts.client_cpu is not None and facts.client_cpu < 0.5:
                hint = (f"; the sender was {100 * (1 - facts.client_cpu):.0f}% idle, so other load on the machine "
                        "delayed its wake-ups")
            reasons.append(f"{100 * ratio:.2f}% of sends were more than {rules.late_tolerance_ms:g} ms late "
                           f"(> {100 * rules.max_late_ratio:g}%): the generator did not keep the schedule{hint}")
    if (facts.open_loop and facts.scheduled_span_s and facts.send_span_s
            and facts.send_span_s > 0 and facts.scheduled_span_s / facts.send_span_s < rules.min_send_rate_ratio):
        achieved = facts.scheduled_span_s / facts.send_span_s
        reasons.append(f"the sends took {facts.send_span_s:.3g} s for a {facts.scheduled_span_s:.3g} s schedule "
                       f"(achieved send rate {100 * achieved:.1f}% of target): client bottleneck")
    if facts.client_cpu is not None and facts.client_cpu >= rules.max_client_cpu:
        reasons.append(f"the load generator used {100 * facts.client_cpu:.0f}% of its core "
                       f"(>= {100 * rules.max_client_cpu:.0f}%): the client may be the bottleneck")
    if rules.target_p99_ms is not None and facts.latency_at_target_ms is not None \
            and facts.latency_at_target_ms > rules.target_p99_ms:
        reasons.append(f"p{rules.target_percentile:g} latency {facts.latency_at_target_ms:.3f} ms exceeds the "
                       f"target {rules.target_p99_ms:g} ms")
    return reasons
