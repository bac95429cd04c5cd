"""One background thread that runs blocking collectives in submission order.

Our collectives (hpclab.comm) block until they finish, so to overlap them with backward
DDP hands each bucket to this thread and carries on. One thread, one FIFO queue: the
buckets are reduced in the order they were submitted, which is the same order on every
rank — the condition for collectives not to deadlock or mix up their messages.

    t = CommThread()
    t.submit(bucket, lambda: reduce(flat))        # returns at once
    flat = t.result(bucket, timeout=60, where="rank 0 on host h")   # waits, re-raises
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import torch


class CommThread:
    def __init__(self, name: str = "hpclab-comm"):
        self._queue: queue.Queue = queue.Queue()
        self._done: dict[int, tuple[threading.Event, list]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, bucket, fn: Callable[[], torch.Tensor]) -> None:
        event, box = threading.Event(), []
        with self._lock:
            self._done[bucket.index] = (event, box)
        self._queue.put((bucket, fn, event, box))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            bucket, fn, event, box = item
            t0 = time.perf_counter()
            try:
                box.append(("ok", fn()))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
                box.append(("error", exc))
            bucket.comm_seconds = time.perf_counter() - t0
            event.set()

    def result(self, bucket, timeout: float, where: str) -> torch.Tensor:
        with self._lock:
            event, box = self._done.pop(bucket.index)
        if not event.wait(timeout):
            raise TimeoutError(f"gradient all-reduce of bucket {bucket.index} did not finish "
                               f"within {timeout} s on {where}; a peer rank may have died or "
                               "be stuck: restart the engines and resume from the last "
                               "checkpoint")
        status, value = box[0]
        if status == "error":
            raise RuntimeError(f"gradient all-reduce of bucket {bucket.index} failed on "
                               f"{where}: {value}. A peer rank probably died; restart the "
                               "engines and resume from the last checkpoint") from value
        return value

    def close(self) -> None:
        self._queue.put(None)
