"""Data prefetching: prepare the next batches while the current one trains.

A training step is load → copy to the device → compute. Done in sequence, the GPU idles
while the CPU decodes and augments. Two standard fixes, measured by
`hpclab bench data`:

    worker processes   DataLoader(num_workers=k): k processes load and augment batches
                       in parallel (sidestepping Python's GIL)
    prefetching        a background thread keeps the next `depth` batches ready and, on
                       CUDA, copies them from pinned (page-locked) host memory with
                       non_blocking=True, so the copy overlaps the compute

    for x, y in Prefetcher(loader, device="cuda", depth=2):
        ...

The thread never outlives the loop: leaving the loop early (break, exception) stops it,
and a loader that raises has its exception re-raised in the training loop.
"""

from __future__ import annotations

import queue
import threading

import torch

_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _to_device(batch, device: torch.device, pin: bool):
    if isinstance(batch, torch.Tensor):
        if pin:
            batch = batch.pin_memory()
        return batch.to(device, non_blocking=pin)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device, pin) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, pin) for k, v in batch.items()}
    return batch


class Prefetcher:
    """Iterate `loader` with up to `depth` batches prepared ahead by a background thread."""

    def __init__(self, loader, device="cpu", depth: int = 2, timeout: float = 60.0):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive int (batches kept ready), got {depth!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.loader, self.device, self.depth, self.timeout = loader, torch.device(device), depth, timeout
        self.pin = self.device.type == "cuda"   # pinned memory only helps host→GPU copies

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        ready: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def offer(item) -> bool:
            # a full queue and a consumer that has left must not block the thread: the
            # end marker too may arrive after a `break` in the last `depth` batches
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce():
            try:
                for batch in self.loader:
                    if not offer(_to_device(batch, self.device, self.pin)):
                        return
                offer(_END)
            except BaseException as exc:  # noqa: BLE001 - every failure goes to the training loop
                offer(_Failure(exc))

        thread = threading.Thread(target=produce, name="hpclab-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    item = ready.get(timeout=self.timeout)
                except queue.Empty:
                    raise TimeoutError(f"no batch from the loader within {self.timeout} s; "
                                       "is the dataset or a worker process stuck?") from None
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            stop.set()
            thread.join(timeout=self.timeout)
