"""The bank-account workload of `factline bench accounts`, in the Python `eventsourcing` library
with its SQLite persistence on a file: the same aggregate rules as plugins/bank-account.

1. Open one account and make N deposits, one command (load, decide, save) each, snapshotting
   every S events; the application's aggregate cache is on, as factline's state cache is.
2. Reconstruct that account in a fresh application (cold cache): replaying every event, then
   from the newest snapshot.
3. Load a 10,000-event stream (written in one save), without and with a snapshot at its end.

Prints one JSON object with the timings in seconds.
"""

import argparse
import json
import os
import sqlite3
import tempfile
import time
from importlib.metadata import version

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

DAILY_WITHDRAWAL_LIMIT = 1_000_000


class BankAccount(Aggregate):
    @event("Opened")
    def __init__(self, owner: str, initial_balance: int):
        self.owner = owner
        self.balance = initial_balance
        self.status = "active"

    def deposit(self, amount: int) -> None:
        self._check_open()
        if amount <= 0:
            raise ValueError("the amount must be positive")
        self._deposited(amount)

    def withdraw(self, amount: int) -> None:
        self._check_open()
        if amount <= 0:
            raise ValueError("the amount must be positive")
        if amount > self.balance:
            raise ValueError("insufficient balance")
        self._withdrawn(amount)

    def _check_open(self) -> None:
        if self.status != "active":
            raise ValueError(f"the account is {self.status}")

    @event("Deposited")
    def _deposited(self, amount: int) -> None:
        self.balance += amount

    @event("Withdrawn")
    def _withdrawn(self, amount: int) -> None:
        self.balance -= amount


class Bank(Application):
    snapshotting_intervals = {}

    def open_account(self, owner: str, initial_balance: int):
        account = BankAccount(owner, initial_balance)
        self.save(account)
        return account.id

    def deposit(self, account_id, amount: int) -> None:
        account = self.repository.get(account_id)
        account.deposit(amount)
        self.save(account)


def app(db: str, snapshots: bool, interval: int = 0) -> Bank:
    Bank.snapshotting_intervals = {BankAccount: interval} if interval else {}
    return Bank(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": db,
            "IS_SNAPSHOTTING_ENABLED": "y" if snapshots else "n",
            "AGGREGATE_CACHE_MAXSIZE": "10000",
        }
    )


def timed(f):
    start = time.perf_counter()
    result = f()
    return time.perf_counter() - start, result


def best(repeat: int, f):
    """Fastest of `repeat` runs (each a cold application), and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t, result = timed(f)
        times.append(t)
    return min(times), result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--deposits", type=int, default=20_000)
    p.add_argument("--snapshot-every", type=int, default=100)
    p.add_argument("--stream", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", default=None)
    a = p.parse_args()
    workdir = a.dir or tempfile.mkdtemp(prefix="es-bench-")
    os.makedirs(workdir, exist_ok=True)
    out = {"library": f"eventsourcing {version('eventsourcing')}", "sqlite": sqlite3.sqlite_version}

    # 1. N deposits on one account, one command each.
    db = os.path.join(workdir, "accounts.sqlite")
    writer = app(db, True, a.snapshot_every)
    account_id = writer.open_account("Hanako", 100_000)
    t, _ = timed(lambda: [writer.deposit(account_id, 1) for _ in range(a.deposits)])
    out["deposits"] = a.deposits
    out["deposits_s"] = t
    expected = 100_000 + a.deposits
    with sqlite3.connect(db) as c:
        out["journal_mode"] = c.execute("PRAGMA journal_mode").fetchone()[0]

    # 2. Reconstruct it in a fresh application: every event, then from the snapshot.
    def reconstruct(snapshots: bool):
        bank = app(db, snapshots)  # keep it alive: dropping it closes its connections
        account = bank.repository.get(account_id)
        assert account.balance == expected, account.balance
        bank.close()
        return account.version

    out["reconstruct_replay_s"], v = best(a.repeat, lambda: reconstruct(False))
    out["reconstruct_snapshot_s"], _ = best(a.repeat, lambda: reconstruct(True))
    out["reconstruct_version"] = v

    # 3. A 10,000-event stream written in one save; loaded without, then with, a snapshot.
    db2 = os.path.join(workdir, "stream.sqlite")
    w2 = app(db2, True)
    account = BankAccount("Jiro", 0)
    for _ in range(a.stream - 1):
        account.deposit(1)
    w2.save(account)
    w2.take_snapshot(account.id)

    def load(snapshots: bool):
        bank = app(db2, snapshots)
        loaded = bank.repository.get(account.id)
        assert loaded.version == a.stream and loaded.balance == a.stream - 1
        bank.close()
        return loaded.version

    out["stream_events"] = a.stream
    out["load_replay_s"], _ = best(a.repeat, lambda: load(False))
    out["load_snapshot_s"], _ = best(a.repeat, lambda: load(True))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
