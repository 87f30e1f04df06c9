"""The `{{name}}` saga: on `transfer.requested`, `withdraw` from one account, then `deposit` into
the other; a failed deposit compensates the withdrawal (a `deposit` back)."""

import factline
from factline import NOT_MINE, Succeeded, step

TIMEOUT_MS = 30_000
ANSWERS = {"withdraw": "account.withdrawn", "deposit": "account.deposited"}


def start(trigger):
    t = trigger.payload
    return (t["transfer_id"], {k: t[k] for k in ("transfer_id", "from", "to", "amount")})


def account_command(t, account, kind, suffix):
    reference = f"{t['transfer_id']}/{suffix}"
    return factline.command("account", f"account-{account}", kind,
                            {"amount": t["amount"], "reference": reference}, reference)


def execute(name, t):
    if name == "withdraw":
        return account_command(t, t["from"], "withdraw", name)
    if name == "deposit":
        return account_command(t, t["to"], "deposit", name)
    raise ValueError(f"no step `{name}`")


def compensate(name, t):
    return account_command(t, t["from"], "deposit", "refund") if name == "withdraw" else None


def judge(name, t, answer):
    done = ANSWERS[name] == answer.type
    done = done and answer.payload["reference"] == f"{t['transfer_id']}/{name}"
    return Succeeded(t) if done else NOT_MINE


SagaHandler = factline.saga(
    name="{{name}}", trigger_types=["transfer.requested"], answer_types=list(ANSWERS.values()),
    steps=[step("withdraw", TIMEOUT_MS, compensable=True), step("deposit", TIMEOUT_MS)],
    start=start, execute=execute, compensate=compensate, judge=judge,
)
