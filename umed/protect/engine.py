"""Map one picklable per-case job over cases, serially or on a Dask cluster.

One code path for every scale: ``workers=1`` runs the jobs one after another in this process; ``workers=N`` starts
a Dask ``LocalCluster`` of N single-threaded worker processes on this machine; ``scheduler=ADDRESS`` (``tcp://HOST:
PORT``) or a scheduler file connects ``distributed.Client`` to an existing cluster (dask-jobqueue on HPC,
dask-kubernetes, ``dask scheduler`` + ``dask worker`` by hand). The object every job needs (a fitted protector) is
sent to the workers once; each job gets it as its second argument.

Results come back as they complete, tagged with their item's index, so the caller keeps its own order. A worker lost
mid-job (killed, out of memory, node gone) makes the scheduler run that job again on another worker, up to Dask's
``distributed.scheduler.allowed-failures`` times; a job must therefore be safe to run twice (umed's cases write
atomically). An exception raised by a job is re-raised here, as it would be serially.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from umed.errors import ConfigError

__all__ = ["AUTO", "map_jobs", "resolve_workers"]

AUTO = "auto"
"""``--workers auto``: the worker count :func:`resolve_workers` picks."""

Item = TypeVar("Item")
Result = TypeVar("Result")


def resolve_workers(workers: int | str, n_jobs: int, *, generator: bool, cpus: int | None = None) -> int:
    """The number of worker processes: ``workers`` itself, or for ``"auto"`` what ``benchmarks/protect_speed.py``
    measured fastest on a 2-core machine. With no generator to run (the shipped mark alone: a few whole-volume passes
    per case, I/O bound) one process (60 volumes per minute against 42 with 2 workers and 50 on a 2-worker
    LocalCluster, ``protect_speed_mark.json``); with a protector's generators one single-threaded process per core
    (UMed: 7.7 against 6.2 volumes per minute in one process, issue 15); never more processes than jobs.

    Example:
        >>> resolve_workers("auto", 10, generator=True, cpus=4), resolve_workers("auto", 10, generator=False, cpus=4)
        (4, 1)
        >>> resolve_workers(3, 10, generator=False)
        3
    """
    import os

    if workers == AUTO:
        if not generator:
            return 1
        return max(1, min(cpus or os.cpu_count() or 1, n_jobs))
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ConfigError(f"workers: expected a number of processes or 'auto' (got {workers!r})")
    return workers


def map_jobs(
    job: Callable[[Item, Any], Result],
    items: Sequence[Item],
    shared: Any,
    *,
    workers: int = 1,
    scheduler: str | Path | None = None,
    lost: Callable[[Item, str], Result] | None = None,
) -> Iterator[tuple[int, Result]]:
    """Run ``job(item, shared)`` for every item and yield ``(index, result)`` as each job completes.

    Args:
        job: a picklable (module-level) function.
        items: picklable inputs, one job each.
        shared: a picklable object every job needs; sent to each worker once.
        workers: local worker processes when no ``scheduler`` is given; 1 runs the jobs in this process.
        scheduler: address of a running Dask scheduler (``tcp://host:8786``) or the path of its scheduler file.
        lost: gives the result of a job whose workers kept dying (``KilledWorker`` after Dask's allowed failures),
            from the item and a message; ``None`` re-raises.

    Raises:
        ConfigError: ``workers < 1``, or the scheduler cannot be reached.
    """
    if workers < 1:
        raise ConfigError(f"workers: expected at least 1 worker process (got {workers})")
    if scheduler is None and (workers == 1 or len(items) <= 1):
        for index, item in enumerate(items):
            yield index, job(item, shared)
        return
    if not items:
        return
    with ExitStack() as stack:
        client = stack.enter_context(_client(workers, scheduler))
        on_workers = client.scatter(shared, broadcast=True, hash=False)
        futures = {client.submit(job, item, on_workers, pure=False): index for index, item in enumerate(items)}
        from distributed import KilledWorker, as_completed

        for future in as_completed(futures):
            index = futures[future]
            try:
                yield index, future.result()
            except KilledWorker as error:
                if lost is None:
                    raise
                yield index, lost(items[index], f"the workers running it died repeatedly ({error})")


def _client(workers: int, scheduler: str | Path | None) -> Any:
    """A ``distributed.Client`` on the given scheduler, or on a new LocalCluster it closes with itself."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        import dask

        # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers; setting it turns off glibc's dynamic mmap
        # threshold, so every large torch/numpy buffer is mmap'ed and unmapped again: conv2d took ~3x the CPU time
        # of the same job in-process (measured: 10.0 s vs 3.3 s per BraTS volume, see docs/results.md, Cost)
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
            )
        return _Closing(Client(cluster), cluster)
    target = str(scheduler)
    if "://" not in target and not Path(target).is_file():
        raise ConfigError(
            f"{target}: no such scheduler file (expected tcp://HOST:PORT or the file a Dask scheduler "
            "wrote with --scheduler-file)"
        )
    try:
        if Path(target).is_file():
            return _Closing(Client(scheduler_file=target, timeout="10s"), None)
        return _Closing(Client(target, timeout="10s"), None)
    except (OSError, TimeoutError, ValueError) as error:
        raise ConfigError(
            f"{target}: cannot reach the Dask scheduler (expected tcp://HOST:PORT or a scheduler file; "
            f"got {type(error).__name__}: {error})"
        ) from error


class _Closing:
    """Context manager closing a client and the cluster it started (if any)."""

    def __init__(self, client: Any, cluster: Any) -> None:
        self.client, self.cluster = client, cluster

    def __enter__(self) -> Any:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
