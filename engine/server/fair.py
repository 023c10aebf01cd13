"""Waiting jobs in fair order: round robin among the owners (tokens) that have jobs waiting.

Each owner's jobs keep their own first-in-first-out order; the next job comes from the owner at the head of
the rotation, who then goes to its back. An owner with nothing left leaves the rotation and joins at the back
with its next job, so ten jobs from one person wait behind at most one job of each other person. With a
single owner (the local engine) this is the plain FIFO it replaced.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class Owned(Protocol):
    owner: str


J = TypeVar("J", bound=Owned)


class FairQueue(Generic[J]):
    """The deque operations the job queue uses (append, popleft, remove, index, len), in fair order."""

    def __init__(self) -> None:
        self._by_owner: dict[str, deque[J]] = {}
        self._rotation: deque[str] = deque()  # owners with waiting jobs, next to be served first

    def append(self, job: J) -> None:
        jobs = self._by_owner.get(job.owner)
        if jobs is None:
            jobs = self._by_owner[job.owner] = deque()
            self._rotation.append(job.owner)
        jobs.append(job)

    def popleft(self) -> J:
        if not self._rotation:
            raise IndexError("pop from an empty queue")
        owner = self._rotation.popleft()
        jobs = self._by_owner[owner]
        job = jobs.popleft()
        if jobs:
            self._rotation.append(owner)
        else:
            del self._by_owner[owner]
        return job

    def remove(self, job: J) -> None:
        jobs = self._by_owner[job.owner]  # KeyError / ValueError as deque.remove for a job not waiting
        jobs.remove(job)
        if not jobs:
            del self._by_owner[job.owner]
            self._rotation.remove(job.owner)

    def __iter__(self) -> Iterator[J]:
        """The jobs in the order they will run: each owner's first job in rotation order, then each one's second..."""
        lines = [self._by_owner[owner] for owner in self._rotation]
        depth = max((len(jobs) for jobs in lines), default=0)
        for round_ in range(depth):
            for jobs in lines:
                if round_ < len(jobs):
                    yield jobs[round_]

    def index(self, job: J) -> int:
        for position, waiting in enumerate(self):
            if waiting is job:
                return position
        raise ValueError("the job is not waiting")

    def count(self, owner: str) -> int:
        return len(self._by_owner.get(owner, ()))

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self._by_owner.values())

    def __bool__(self) -> bool:
        return bool(self._rotation)
