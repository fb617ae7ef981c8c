"""What the driver's two loops share: the Ray session they run in and the progress they show.

``doodl sweep`` (:mod:`doodl.orchestrator.driver`) and ``doodl reduce``
(:mod:`doodl.orchestrator.reduce`) both join or start Ray with :func:`connect` and report
with a :class:`Meter`: a bar of items done out of a total, the rate since the loop
started, and the time left.
"""

from __future__ import annotations

import os
import time

import ray
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from doodl.orchestrator.errors import ClusterError
from doodl.orchestrator.tracking import console


def connect(address: str | None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``, as ``ray job submit`` sets it),
    else start a new local Ray; reuse a session that is already connected.

    Without an address this never joins a cluster found on the machine (Ray's own default
    would, even a dead one whose address file was left behind): ``--address auto`` does.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        # Ray starts its workers at niceness 15, below this driver: on a machine whose
        # cores all train, the driver's MLflow logging would take them first. At 0 the
        # actors train at the driver's priority and its logger (tracking.LOGGER_NICE) yields.
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        hint, chain = "", ""
        cause: BaseException | None = exc
        while cause is not None:  # ray wraps the AuthenticationError in a ConnectionError
            chain += str(cause).lower()
            cause = cause.__cause__ or cause.__context__
        if "authentication" in chain or "auth_token" in chain:
            hint = ("; the cluster uses token authentication: set RAY_AUTH_MODE=token and provide the token "
                    "(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token)")
        raise ClusterError(f"cannot connect to the Ray cluster at {address}{hint}") from None


class Meter:
    """A progress bar of ``what`` done out of ``total``, with the rate of what this loop did
    (``already`` done before it counts toward the bar, not the rate) and the time left.
    Use as a context manager; ``show=False`` draws nothing."""

    def __init__(self, description: str, what: str, total: int, *, already: int = 0, show: bool = True,
                 digits: int = 1):
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(what),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not show,
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total, completed=already, rate="")
        self._digits = digits
        self._done = 0
        self._start = time.perf_counter()

    def __enter__(self) -> Meter:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done and refresh the rate."""
        self._done += n
        rate = self._done / max(time.perf_counter() - self._start, 1e-9)
        self._progress.update(self._task, advance=n, rate=f"{rate:.{self._digits}f}/s")
