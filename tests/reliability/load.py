"""A bounded loopback client: steady traffic from a few threads, every response counted."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass
class Outcome:
    started: float
    """``time.monotonic()`` when the request was sent."""
    status: int
    """HTTP status; 0 when no response came (connection error, client timeout)."""
    seconds: float
    degraded: str = ""
    error: str = ""


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def between(self, start: float, end: float) -> Tally:
        return Tally([o for o in self.outcomes if start <= o.started < end])

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    @property
    def succeeded(self) -> int:
        return sum(200 <= o.status < 300 for o in self.outcomes)

    @property
    def shed(self) -> int:
        return sum(o.status in (429, 503) for o in self.outcomes)

    @property
    def failed(self) -> int:
        return self.sent - self.succeeded - self.shed

    @property
    def server_errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status >= 500 or o.status == 0]

    @property
    def degraded(self) -> int:
        return sum(bool(o.degraded) for o in self.outcomes)

    def statuses(self) -> Counter[int]:
        return Counter(o.status for o in self.outcomes)


def send(
    session: requests.Session, url: str, body: dict[str, Any], headers: dict[str, str]
) -> Outcome:
    started = time.monotonic()
    try:
        response = session.post(url, json=body, headers=headers, timeout=60)
    except requests.RequestException as error:
        return Outcome(started, 0, time.monotonic() - started, error=type(error).__name__)
    text = "" if response.ok else response.text[:300]
    return Outcome(
        started,
        response.status_code,
        time.monotonic() - started,
        degraded=response.headers.get("X-RAG-Degraded", ""),
        error=text,
    )


@contextmanager
def steady_load(
    url: str,
    body: Callable[[int], dict[str, Any]],
    headers: dict[str, str],
    rate_per_s: float = 6.0,
    workers: int = 4,
    max_requests: int = 2000,
) -> Iterator[Tally]:
    """Sends ``rate_per_s`` requests a second (at most ``max_requests``) while the
    block runs, from ``workers`` threads; waits for the last answers on exit."""
    tally = Tally()
    stop = threading.Event()
    counter = iter(range(max_requests))
    counter_lock = threading.Lock()
    interval = workers / rate_per_s

    def worker(offset: float) -> None:
        session = requests.Session()
        next_at = time.monotonic() + offset
        while not stop.is_set():
            with counter_lock:
                number = next(counter, None)
            if number is None:
                return
            tally.add(send(session, url, body(number), headers))
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))
        session.close()

    threads = [
        threading.Thread(target=worker, args=(i * interval / workers,), daemon=True)
        for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    try:
        yield tally
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
