"""Budgets: reserve the estimated cost before each call, settle the real cost after it.

Why reserve: a plain "spent < budget?" check lets 50 concurrent calls all pass it before any of
them has spent anything. Here the check and the reservation are one step with no `await` between
them, so on one event loop no two calls can both take the last of a budget.

Where the guarantee holds: the ledger is in-process memory over a `SpendStore` (in the worker, the
compacted spend ledger topic, keyed `tenant|day`, streams/processors/ledger.py). The worker routes
every task through a topic keyed by tenant (streams/processors/tasks.py), so all of a tenant's tasks
meet in one partition, owned by one worker at a time, which reads the tenant's spend from the ledger
before it starts any of them: one ledger sees all of that tenant's reservations, and the tenant's
daily spend never exceeds its budget by more than the settle-time difference between estimate and
real cost (zero when the model honours `max_tokens` and the prompt has at most one token per three
characters, the estimate's assumptions: agents/swarm.py `_estimate_tokens`).
Limits: a worker killed between a call's answer and the broker's ack of its settlement loses that
one call's spend; a worker cut off from the group without a revocation (a zombie) can still settle
into its own copy. A task's own `budget_usd` is exact (one task, one ledger).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["BudgetLedger", "MemorySpendStore", "Reservation", "SpendStore", "TaskBudget"]


class SpendStore(Protocol):
    """Where settled tenant spend lives (the spend ledger topic in the worker, a dict in tests)."""

    def get(self, key: str) -> float: ...

    def add(self, key: str, amount: float) -> None: ...


@dataclass
class MemorySpendStore:
    """A SpendStore in a dict, for tests and single-process use."""

    spent: dict[str, float] = field(default_factory=dict)

    def get(self, key: str) -> float:
        return self.spent.get(key, 0.0)

    def add(self, key: str, amount: float) -> None:
        self.spent[key] = self.spent.get(key, 0.0) + amount


@dataclass
class TaskBudget:
    """One task's own ceiling (None = none) and what it has spent and reserved so far."""

    limit: float | None
    spent: float = 0.0
    reserved: float = 0.0

    def share(self) -> float:
        return 0.0 if not self.limit else (self.spent + self.reserved) / self.limit


@dataclass(frozen=True)
class Reservation:
    tenant_key: str
    amount: float
    task: TaskBudget


def _today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


class BudgetLedger:
    """Per-tenant daily budgets plus per-task budgets, by reservation and settlement."""

    def __init__(self, store: SpendStore, daily_budget_usd: float | None = None, degrade_share: float = 0.8,
                 day: Callable[[], str] = _today) -> None:
        self.store = store
        self.daily_budget_usd = daily_budget_usd
        self.degrade_share = degrade_share
        self._day = day
        self._reserved: dict[str, float] = {}

    def key(self, tenant: str) -> str:
        return f"{tenant}|{self._day()}"

    def tenant_spent(self, tenant: str) -> float:
        return self.store.get(self.key(tenant))

    def _committed(self, key: str) -> float:
        return self.store.get(key) + self._reserved.get(key, 0.0)

    def should_degrade(self, tenant: str, task: TaskBudget) -> bool:
        """Past the configured share of either budget, calls go to the cheapest capable model."""
        tenant_share = self._committed(self.key(tenant)) / self.daily_budget_usd if self.daily_budget_usd else 0.0
        return max(tenant_share, task.share()) >= self.degrade_share

    def reserve(self, tenant: str, task: TaskBudget, amount: float) -> Reservation | None:
        """Take `amount` from both budgets, or nothing and None when either cannot afford it.

        No await in here: on one event loop the check and the reservation cannot interleave.
        """
        key = self.key(tenant)
        if self.daily_budget_usd is not None and self._committed(key) + amount > self.daily_budget_usd:
            return None
        if task.limit is not None and task.spent + task.reserved + amount > task.limit:
            return None
        self._reserved[key] = self._reserved.get(key, 0.0) + amount
        task.reserved += amount
        return Reservation(key, amount, task)

    def settle(self, reservation: Reservation, actual: float) -> None:
        """Release the reservation and record what the call really cost (0 for a call that failed)."""
        left = self._reserved.get(reservation.tenant_key, 0.0) - reservation.amount
        if left > 1e-15:
            self._reserved[reservation.tenant_key] = left
        else:
            self._reserved.pop(reservation.tenant_key, None)
        reservation.task.reserved -= reservation.amount
        reservation.task.spent += actual
        if actual:
            self.store.add(reservation.tenant_key, actual)
