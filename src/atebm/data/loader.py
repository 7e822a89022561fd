"""Reading a data source in worker processes, ahead of the trainer, in the trainer's order.

The trainer draws the rows of every batch from a seeded epoch stream whose state is two integers (that is what
makes a resume exact). :class:`BatchLoader` runs a copy of that stream in the training process to name the rows
of the next batches, hands the reading (decoding files, resizing) to ``num_workers`` processes of a
``torch.utils.data.DataLoader`` with ``prefetch_factor`` batches in flight per worker, pins the results in page-
locked memory when the batches go to a GPU, and returns them in order. The images of a batch depend only on its
rows, so the batches are those of the in-process reader, whatever the number of workers; restarting the loader
from a saved stream state continues exactly.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["BatchLoader", "IndexStream"]


class IndexStream(Protocol):
    """What names the rows of each batch (the trainer's ``_EpochStream``): ``next(count)`` returns row indices."""

    def next(self, count: int) -> Tensor: ...


class _Rows(Dataset):
    """``dataset[indices]`` -> ``(indices, images)``: one whole batch per item, read by a worker."""

    def __init__(self, source: Any, read: Callable[[Any, Tensor], Tensor]) -> None:
        self.source, self.read = source, read

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        return indices, self.read(self.source, indices)


class _Batches(Sampler):
    """The row indices of every next batch, from a private copy of the trainer's stream (endless)."""

    def __init__(self, stream: IndexStream, batch: int) -> None:
        self.stream, self.batch = stream, batch

    def __iter__(self) -> Iterator[Tensor]:
        while True:
            yield self.stream.next(self.batch)


class BatchLoader:
    """Batches of ``batch`` rows of ``source`` in the order of ``stream`` (which is copied, not advanced), read with
    ``read(source, indices)`` (the trainer's :func:`~atebm.training.fetch_batch`; a module-level function) by
    ``num_workers`` processes with ``prefetch_factor`` batches queued per worker; ``pin_memory`` for a CUDA
    destination. ``next()`` returns ``(indices, images)``; :meth:`close` stops the workers."""

    def __init__(self, source: Any, stream: IndexStream, batch: int, *, read: Callable[[Any, Tensor], Tensor],
                 num_workers: int, prefetch_factor: int = 2, pin_memory: bool = False) -> None:
        if num_workers < 1:
            raise ValueError(f"a BatchLoader needs num_workers >= 1, got {num_workers} (0 reads in-process)")
        self._loader = DataLoader(_Rows(source, read), batch_size=None, sampler=_Batches(copy.deepcopy(stream), batch),
                                  num_workers=num_workers, prefetch_factor=prefetch_factor, pin_memory=pin_memory,
                                  persistent_workers=False)
        self._iterator: Iterator[tuple[Tensor, Tensor]] | None = iter(self._loader)

    def next(self) -> tuple[Tensor, Tensor]:
        if self._iterator is None:
            raise RuntimeError("this BatchLoader is closed")
        return next(self._iterator)

    def close(self) -> None:
        """Stops the worker processes (also done when the loader is garbage-collected)."""
        iterator, self._iterator = self._iterator, None
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
