"""Live metrics: StepRecords streamed from the engines to the notebook while training runs.

Two ZeroMQ sockets, both bound by the notebook (the engines connect, as they already do to
the ipyparallel controller):

    engines --PUSH--> notebook   batches of StepRecord dicts, at most every `interval` s
    notebook --PUB--> engines    control messages ("stop")

Why not only ipyparallel's `publish_data`: it also works, but it goes through the
controller's IOPub and keeps only the latest value per key, whereas a PUSH/PULL pair is a
direct, ordered, loss-free queue with sub-millisecond latency. The engine side only
appends to a list each step and sends one message per `interval` (0.1 s), so its cost is
microseconds per step; zmq does the sending on its own I/O thread.

    rx = LiveReceiver()                              # notebook
    rx.subscribe(lambda rec: print(rec.step, rec.loss))
    ...engines: pub = LivePublisher(rx.push_address, rx.control_address)
    ...         pub.add(record); pub.stop_requested()
    rx.request_stop(); rx.close()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import zmq

from hpclab.cluster.net import outward_ip
from hpclab.metrics import StepRecord


class LiveReceiver:
    """Notebook side: collects records into `history` and calls subscribers per record."""

    def __init__(self, ip: str | None = None):
        self._ctx = zmq.Context()
        self._pull = self._ctx.socket(zmq.PULL)
        self._pub = self._ctx.socket(zmq.PUB)
        ip = ip or outward_ip()
        pull_port = self._pull.bind_to_random_port("tcp://*")
        pub_port = self._pub.bind_to_random_port("tcp://*")
        self.push_address = f"tcp://{ip}:{pull_port}"
        self.control_address = f"tcp://{ip}:{pub_port}"
        self.history: list[StepRecord] = []
        self.latencies: list[float] = []   # receive time - step end time, seconds
        self._subscribers: list[Callable[[StepRecord], None]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.subscriber_errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, name="hpclab-live", daemon=True)
        self._thread.start()

    def subscribe(self, callback: Callable[[StepRecord], None]) -> None:
        """`callback(record)` for every record from now on, and for those already here."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        with self._lock:
            past = list(self.history)
            self._subscribers.append(callback)
        for rec in past:
            self._call(callback, rec)

    def _call(self, callback, rec) -> None:
        try:
            callback(rec)
        except Exception as exc:  # noqa: BLE001 - a broken plot must not stop the stream
            self.subscriber_errors.append(f"{type(exc).__name__}: {exc}")

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._pull, zmq.POLLIN)
        while not self._closed.is_set():
            if not poller.poll(50):
                continue
            batch = self._pull.recv_pyobj()
            now = time.time()
            records = [StepRecord.from_dict(d) for d in batch]
            with self._lock:
                self.history.extend(records)
                self.latencies.extend(now - r.time for r in records)
                subscribers = list(self._subscribers)
            for rec in records:
                for cb in subscribers:
                    self._call(cb, rec)

    def request_stop(self) -> None:
        self._pub.send(b"stop")

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._pull.close(linger=0)
        self._pub.close(linger=0)
        self._ctx.term()


class LivePublisher:
    """Engine side: buffer this rank's records, send a batch every `interval` seconds."""

    def __init__(self, push_address: str, control_address: str, interval: float = 0.1):
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval}")
        self.interval = interval
        self._ctx = zmq.Context()
        self._push = self._ctx.socket(zmq.PUSH)
        self._push.connect(push_address)
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(control_address)
        self._buffer: list[dict] = []
        self._last_send = time.perf_counter()
        self._stop = False

    def add(self, record: StepRecord) -> None:
        # a shallow copy: dataclasses.asdict's deep copy costs more than the step's logging
        self._buffer.append({**vars(record), "extra": dict(record.extra)})
        if time.perf_counter() - self._last_send >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._push.send_pyobj(self._buffer)
            self._buffer = []
        self._last_send = time.perf_counter()

    def stop_requested(self) -> bool:
        """Non-blocking: has the notebook asked this job to stop?"""
        while not self._stop:
            try:
                self._stop = self._sub.recv(zmq.NOBLOCK) == b"stop"
            except zmq.Again:
                break
        return self._stop

    def close(self) -> None:
        self.flush()
        self._push.close(linger=2000)   # give the last batch up to 2 s to leave
        self._sub.close(linger=0)
        self._ctx.term()
