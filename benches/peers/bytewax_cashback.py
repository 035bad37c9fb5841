"""Bytewax peer of `accrue run`, for `scripts/bench`.

Reads the input topic `accrue gen` filled (bench.orders) from the beginning
with Bytewax's Kafka connector, keeps one balance per customer (the record
key, as accrue's partitioner uses it) with Bytewax's recovery on (snapshots
in a local SQLite store every epoch), adds 5% of `body.total` of each
`order.paid`, rounded half-even to the cent with `Decimal` (money, not
floats), and writes one JSON record per input event to the output topic:
the event id, the cashback of that event (0 for other types) and the
customer's balance after it.

It is timed like accrue: from the first record the keyed step sees to the
moment the sink's flush of the expected-th output returns (Bytewax's sink
flushes, so that is when the broker acknowledged it). It then writes a JSON
report, `{"events", "seconds", "events_per_second"}`, to `--report` and
keeps running (the input is tailed) so the bench reads CPU and peak RSS of
this very process from /proc before it stops it.

    python benches/peers/bytewax_cashback.py --brokers 127.0.0.1:9092 \
        --input bench.orders --output bench.bytewax --recovery DIR \
        --expect 200000 --report report.json
"""

import argparse
import json
import os
import threading
import time
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import List, Optional, Tuple

from bytewax import operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax._bytewax import cli_main
from confluent_kafka.admin import AdminClient, NewTopic

RATE = Decimal("0.05")
CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def cashback(balance: Optional[Decimal], value: Optional[bytes]) -> Tuple[Decimal, bytes]:
    """The keyed step: one customer's balance in, the output record out."""
    CLOCK.first()
    if balance is None:
        balance = ZERO
    earned = ZERO
    out = {}
    try:
        event = json.loads(value or b"")
        out["event_id"] = event.get("event_id")
        if event.get("type") == "order.paid":
            earned = (Decimal(event["body"]["total"]) * RATE).quantize(CENT, rounding=ROUND_HALF_EVEN)
            balance += earned
    except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as err:
        # accrue would dead-letter it; the peer still writes one record.
        out["error"] = f"{type(err).__name__}: {err}"
    out["cashback"] = str(earned)
    out["balance"] = str(balance)
    return balance, json.dumps(out, separators=(",", ":")).encode()


class Clock:
    """First record seen, outputs acknowledged, and the report once done."""

    def __init__(self, expect: int, report: Path):
        self._lock = threading.Lock()
        self._expect = expect
        self._report = report
        self._started: Optional[float] = None
        self._written = 0
        self._done = False

    def first(self) -> None:
        if self._started is None:
            with self._lock:
                if self._started is None:
                    self._started = time.monotonic()

    def written(self, count: int) -> None:
        with self._lock:
            self._written += count
            if self._done or self._written < self._expect or self._started is None:
                return
            self._done = True
            seconds = time.monotonic() - self._started
            report = {
                "events": self._written,
                "seconds": round(seconds, 6),
                "events_per_second": round(self._written / seconds) if seconds > 0 else 0,
            }
            tmp = self._report.with_suffix(".tmp")
            tmp.write_text(json.dumps(report, separators=(",", ":")) + "\n")
            os.replace(tmp, self._report)


CLOCK: Clock


class _CountingPartition(StatelessSinkPartition):
    """Bytewax's Kafka sink partition, counting what its flush acknowledged."""

    def __init__(self, inner: StatelessSinkPartition):
        self._inner = inner

    def write_batch(self, items: List[KafkaSinkMessage]) -> None:
        self._inner.write_batch(items)  # produces and flushes
        CLOCK.written(len(items))

    def close(self) -> None:
        self._inner.close()


class CountingKafkaSink(DynamicSink):
    """`KafkaSink` whose partitions report acknowledged outputs to the clock."""

    def __init__(self, inner: KafkaSink):
        self._inner = inner

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        return _CountingPartition(self._inner.build(step_id, worker_index, worker_count))


def build_flow(args: argparse.Namespace) -> Dataflow:
    brokers = [args.brokers]
    consumer = {
        # The same fetch settings as accrue's in scripts/bench.
        "fetch.wait.max.ms": str(args.fetch_wait_ms),
        "queued.min.messages": "200000",
        "max.partition.fetch.bytes": "52428800",
    }
    # acks=all and lz4, like accrue's publisher and the raw pipe.
    producer = {"acks": "all", "compression.type": "lz4"}
    flow = Dataflow("cashback")
    records = op.input("orders", flow, KafkaSource(brokers, [args.input], add_config=consumer))
    keyed = op.map("key", records, lambda m: ((m.key or b"").decode("utf-8", "replace"), m.value))
    outputs = op.stateful_map("cashback", keyed, cashback)
    messages = op.map("record", outputs, lambda kv: KafkaSinkMessage(kv[0].encode(), kv[1]))
    op.output("accruals", messages, CountingKafkaSink(KafkaSink(brokers, args.output, add_config=producer)))
    return flow


def create_topic(brokers: str, topic: str, partitions: int) -> None:
    """Creates the output topic if missing, before anything is timed."""
    admin = AdminClient({"bootstrap.servers": brokers})
    if topic in admin.list_topics(timeout=30).topics:
        return
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        try:
            future.result(timeout=30)
        except Exception as err:  # noqa: BLE001 - a race with another creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(err):
                raise


def main() -> None:
    global CLOCK
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", required=True, help="host:port of the broker")
    parser.add_argument("--input", required=True, help="input topic (accrue gen's)")
    parser.add_argument("--output", required=True, help="output topic, created if missing")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of a created output topic")
    parser.add_argument("--recovery", type=Path, required=True, help="recovery store directory")
    parser.add_argument("--snapshot-seconds", type=float, default=1.0, help="epoch and snapshot interval")
    parser.add_argument("--workers", type=int, default=1, help="Bytewax worker threads")
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="librdkafka fetch.wait.max.ms")
    parser.add_argument("--expect", type=int, required=True, help="outputs to wait for before reporting")
    parser.add_argument("--report", type=Path, required=True, help="where the JSON report goes")
    args = parser.parse_args()

    CLOCK = Clock(args.expect, args.report)
    create_topic(args.brokers, args.output, args.partitions)
    args.recovery.mkdir(parents=True, exist_ok=True)
    if not any(args.recovery.iterdir()):
        init_db_dir(args.recovery, 1)
    cli_main(
        build_flow(args),
        workers_per_process=args.workers,
        epoch_interval=timedelta(seconds=args.snapshot_seconds),
        recovery_config=RecoveryConfig(args.recovery),
    )


if __name__ == "__main__":
    main()
