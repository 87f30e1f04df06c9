//! The bank-account aggregate (DESIGN §6): open with an owner and an initial balance, deposit,
//! withdraw, freeze (and unfreeze), close.
//!
//! Rules: amounts are positive; no withdrawal below zero; nothing but `unfreeze` while frozen;
//! nothing once closed; at most [`DAILY_WITHDRAWAL_LIMIT`] withdrawn per calendar day (UTC) by
//! event time: the day of a stored withdrawal is its `occurred_at`, the day of a new one the
//! command's `issued_at` (the only clock a decision may use).
//!
//! Stream ids are `account-<account id>`, e.g. `account-ACC-001`. Amounts are in the smallest
//! currency unit.

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

pub mod scenarios;

/// Most that may be withdrawn from one account per calendar day.
pub const DAILY_WITHDRAWAL_LIMIT: u64 = 1_000_000;

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub status: Status,
    pub account_id: String,
    pub owner: String,
    pub balance: u64,
    /// Calendar day (days since the Unix epoch, UTC) of the last withdrawal.
    pub withdrawal_day: u64,
    /// Withdrawn on `withdrawal_day`.
    pub withdrawn_that_day: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not opened yet: the stream does not exist.
    #[default]
    New,
    Active,
    Frozen,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Open { owner: String, initial_balance: u64 },
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
    Freeze { reason: String },
    Unfreeze {},
    Close {},
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "account.opened")]
    Opened {
        account_id: String,
        owner: String,
        initial_balance: u64,
    },
    #[serde(rename = "account.deposited")]
    Deposited { amount: u64 },
    #[serde(rename = "account.withdrawn")]
    Withdrawn { amount: u64 },
    #[serde(rename = "account.frozen")]
    Frozen { reason: String },
    #[serde(rename = "account.unfrozen")]
    Unfrozen {},
    #[serde(rename = "account.closed")]
    Closed {},
}

impl Aggregate for Account {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        if let Command::Open {
            owner,
            initial_balance,
        } = command
        {
            Rejection::ensure(
                self.status == Status::New,
                "already-open",
                "the account already exists",
            )?;
            Rejection::ensure(!owner.trim().is_empty(), "invalid-owner", "owner is empty")?;
            let account_id = ctx
                .stream
                .strip_prefix("account-")
                .unwrap_or(&ctx.stream)
                .to_owned();
            return Ok(vec![Event::Opened {
                account_id,
                owner,
                initial_balance,
            }]);
        }
        match self.status {
            Status::New => {
                return Err(Rejection::new(
                    "not-found",
                    format!("account stream `{}` does not exist", ctx.stream),
                ));
            }
            Status::Closed => {
                return Err(Rejection::new("account-closed", "the account is closed"));
            }
            Status::Frozen if !matches!(command, Command::Unfreeze {}) => {
                return Err(Rejection::new("account-frozen", "the account is frozen"));
            }
            Status::Frozen | Status::Active => {}
        }
        match command {
            Command::Open { .. } => unreachable!("handled above"),
            Command::Deposit { amount } => {
                positive(amount)?;
                Rejection::ensure(
                    self.balance.checked_add(amount).is_some(),
                    "invalid-amount",
                    "the balance would overflow",
                )?;
                Ok(vec![Event::Deposited { amount }])
            }
            Command::Withdraw { amount } => {
                positive(amount)?;
                Rejection::ensure(
                    amount <= self.balance,
                    "insufficient-balance",
                    format!(
                        "insufficient balance: {amount} requested, {} available",
                        self.balance
                    ),
                )?;
                let today = self.withdrawn_on(ctx.issued_at / DAY_MS);
                Rejection::ensure(
                    today.saturating_add(amount) <= DAILY_WITHDRAWAL_LIMIT,
                    "daily-limit-exceeded",
                    format!(
                        "at most {DAILY_WITHDRAWAL_LIMIT} may be withdrawn per day; {today} already withdrawn today"
                    ),
                )?;
                Ok(vec![Event::Withdrawn { amount }])
            }
            Command::Freeze { reason } => {
                Rejection::ensure(
                    self.status == Status::Active,
                    "account-frozen",
                    "the account is already frozen",
                )?;
                Ok(vec![Event::Frozen { reason }])
            }
            Command::Unfreeze {} => {
                Rejection::ensure(
                    self.status == Status::Frozen,
                    "not-frozen",
                    "the account is not frozen",
                )?;
                Ok(vec![Event::Unfrozen {}])
            }
            Command::Close {} => Ok(vec![Event::Closed {}]),
        }
    }

    fn evolve(&mut self, event: Event, meta: &EventMeta) {
        match event {
            Event::Opened {
                account_id,
                owner,
                initial_balance,
            } => {
                self.status = Status::Active;
                self.account_id = account_id;
                self.owner = owner;
                self.balance = initial_balance;
            }
            Event::Deposited { amount } => self.balance = self.balance.saturating_add(amount),
            Event::Withdrawn { amount } => {
                let day = meta.occurred_at / DAY_MS;
                self.withdrawn_that_day = self.withdrawn_on(day).saturating_add(amount);
                self.withdrawal_day = day;
                self.balance = self.balance.saturating_sub(amount);
            }
            Event::Frozen { .. } => self.status = Status::Frozen,
            Event::Unfrozen {} => self.status = Status::Active,
            Event::Closed {} => self.status = Status::Closed,
        }
    }
}

impl Account {
    /// Withdrawn on calendar day `day`.
    fn withdrawn_on(&self, day: u64) -> u64 {
        if day == self.withdrawal_day {
            self.withdrawn_that_day
        } else {
            0
        }
    }
}

fn positive(amount: u64) -> Result<(), Rejection> {
    Rejection::ensure(amount > 0, "invalid-amount", "the amount must be positive")
}

factline_guest::aggregate!(Account);
