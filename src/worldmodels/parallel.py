"""Executors for real-env work: worker processes on one machine, or Ray tasks on a cluster.

Both run ``fn(item)`` (or ``fn(item, shared)``) for every item and yield ``(item, result)`` as results
arrive. ``shared`` is what every task needs, sent once per worker process (the pool's initializer) or put
once in Ray's object store: workers need no shared file system. A task whose worker
dies is retried (``retries`` times); an exception raised inside a task stops the run with a one-line error.
Neither ever waits on a dead worker.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from typing import Any, TypeVar

from worldmodels.config import ParallelConfig
from worldmodels.errors import WorldModelsError, install_hint

T = TypeVar("T")


def _task_error(item: Any, e: BaseException) -> WorldModelsError:
    if isinstance(e, WorldModelsError):
        return e
    first = str(e).splitlines()[0] if str(e) else ""
    return WorldModelsError(f"a worker failed on {item!r}: {type(e).__name__}: {first}")


@lru_cache(maxsize=1)
def _one_thread() -> None:
    """A worker is one core's worth of work: numpy's BLAS and torch get one thread each. With their default
    of a thread per core, every worker would spread over all cores and the workers would fight."""
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)


_worker_shared: list[Any] = [None]
"""In a local worker process: the `shared` object its initializer received."""


def _call(fn: Callable[..., Any], item: T, shared: Any = None) -> Any:
    """What a worker runs for one item (a local worker's `shared` came with its initializer)."""
    _one_thread()
    shared = _worker_shared[0] if shared is None else shared
    return fn(item) if shared is None else fn(item, shared)


def run_tasks(
    fn: Callable[..., Any], items: Iterable[T], cfg: ParallelConfig, shared: Any = None
) -> Iterator[tuple[T, Any]]:
    """Yield (item, fn(item)) (or fn(item, shared)) in completion order on the configured backend."""
    items = list(items)
    if not items:
        return iter(())
    if cfg.backend == "ray":
        return _run_ray(fn, items, cfg, shared)
    return _run_local(fn, items, cfg, shared)


def _context(fn: Callable[..., Any]) -> mp.context.BaseContext:
    # fork is unsafe with threads (torch, Ray); forkserver starts workers from a clean process, which has
    # imported the task's module once (the first task's: the server starts once a process), so a new
    # worker costs milliseconds rather than a second of imports.
    if not sys.platform.startswith("linux"):
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([fn.__module__])
    return ctx


def _worker_init(parent: int, shared: Any = None) -> None:
    """Each worker leads its own process group, so that what it starts (ViZDoom runs its engine as a child
    process) can be killed with it; and it kills that group when its parent dies, so a SIGKILLed run
    leaves nothing behind."""
    os.setpgrp()
    _worker_shared[0] = shared

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent, 0)  # the run's process (not our parent: that is the forkserver)
            except ProcessLookupError:
                os.killpg(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


def _kill_groups(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _run_local(
    fn: Callable[..., Any], items: list[T], cfg: ParallelConfig, shared: Any
) -> Iterator[tuple[T, Any]]:
    todo = list(range(len(items)))[::-1]  # a stack of indices into items
    deaths = [0] * len(items)
    while todo:
        pool = ProcessPoolExecutor(
            max_workers=cfg.workers,
            mp_context=_context(fn),
            initializer=_worker_init,
            initargs=(os.getpid(), shared),
        )
        running: dict[Future, int] = {}
        broken = False
        try:
            while (todo or running) and not broken:
                while todo and len(running) < 2 * cfg.workers:
                    i = todo.pop()
                    running[pool.submit(_call, fn, items[i])] = i
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = running[fut]
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    except Exception as e:
                        raise _task_error(items[i], e) from None
                    del running[fut]
                    yield items[i], result
            # A worker died: finished results are kept, every task in flight is retried on a fresh
            # pool, and a task that keeps killing its worker stops the run instead of looping forever.
            for fut, i in running.items():
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    yield items[i], fut.result()
                    continue
                deaths[i] += 1
                if deaths[i] > cfg.retries:
                    raise WorldModelsError(
                        f"a worker died {deaths[i]} times running {items[i]!r}; giving up"
                    )
                todo.append(i)
        finally:
            pids = list(pool._processes or {})  # the workers' process groups, dead or alive
            pool.shutdown(wait=not broken, cancel_futures=True)
            _kill_groups(pids)


def _run_ray(
    fn: Callable[..., Any], items: list[T], cfg: ParallelConfig, shared: Any
) -> Iterator[tuple[T, Any]]:
    try:
        import ray
        from ray.exceptions import RayError, RayTaskError
    except ImportError:
        raise WorldModelsError(f"--backend ray needs Ray: {install_hint('ray')}") from None
    if not ray.is_initialized():
        try:
            if cfg.ray_address:
                ray.init(address=cfg.ray_address, log_to_driver=False)
            else:
                # a Ray of this machine alone: on the loopback address, not the network's
                ray.init(num_cpus=cfg.workers, include_dashboard=False, log_to_driver=False,
                         _node_ip_address="127.0.0.1")  # fmt: skip
        except Exception as e:
            raise WorldModelsError(f"--ray-address {cfg.ray_address or '(local)'}: {e}") from None
    remote = ray.remote(max_retries=cfg.retries, retry_exceptions=False)(_call)
    extra = () if shared is None else (ray.put(shared),)  # once in the object store, not per task
    pending = list(reversed(items))
    running: dict[Any, T] = {}
    limit = 2 * max(1, int(ray.cluster_resources().get("CPU", cfg.workers)))
    while pending or running:
        while pending and len(running) < limit:
            item = pending.pop()
            running[remote.remote(fn, item, *extra)] = item
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            item = running.pop(ref)
            try:
                result = ray.get(ref)
            except RayTaskError as e:
                raise _task_error(item, e.cause if e.cause is not None else e) from None
            except RayError as e:
                raise WorldModelsError(
                    f"Ray lost the task for {item!r} after {cfg.retries} retries: {type(e).__name__}"
                ) from None
            yield item, result
