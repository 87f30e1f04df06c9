//! The account's rules as scenarios: run natively by this crate's tests and, through [`all`],
//! against the built `bank_account.wasm` by the workspace's end-to-end tests.

use factline_guest::testing::{AggregateCase, AggregateTest, json};

use crate::{Account, Command, Event};

pub const STREAM: &str = "account-ACC-001";

/// Midnight (UTC) of a calendar day: 2024-10-04.
const DAY: u64 = 20_000 * 86_400_000;
const HOUR: u64 = 3_600_000;

factline_guest::scenarios!(
    open_with_an_initial_balance,
    opening_twice_is_rejected,
    open_deposit_withdraw_gives_120000_at_version_3,
    withdrawing_below_zero_is_rejected,
    withdrawing_the_whole_balance_is_allowed,
    a_zero_deposit_is_rejected,
    nothing_is_deposited_while_frozen,
    nothing_is_withdrawn_while_frozen,
    freezing_a_frozen_account_is_rejected,
    unfreezing_allows_withdrawals_again,
    nothing_is_deposited_once_closed,
    nothing_is_withdrawn_once_closed,
    closing_twice_is_rejected,
    a_frozen_account_cannot_be_closed,
    more_than_1000000_in_one_day_is_rejected,
    exactly_1000000_in_one_day_is_allowed,
    the_daily_limit_starts_over_the_next_day,
    commands_on_a_missing_account_are_not_found,
);

fn given(name: &str, events: impl IntoIterator<Item = Event>) -> AggregateTest<Account> {
    AggregateTest::given(events).on_stream(STREAM).named(name)
}

fn given_at(name: &str, events: impl IntoIterator<Item = (u64, Event)>) -> AggregateTest<Account> {
    AggregateTest::given_at(events)
        .on_stream(STREAM)
        .named(name)
}

fn opened(initial_balance: u64) -> Event {
    Event::Opened {
        account_id: "ACC-001".into(),
        owner: "Hanako".into(),
        initial_balance,
    }
}

fn frozen() -> Event {
    Event::Frozen {
        reason: "suspicious activity".into(),
    }
}

pub fn open_with_an_initial_balance() -> AggregateCase<Account> {
    given("open with an initial balance", [])
        .when(Command::Open {
            owner: "Hanako".into(),
            initial_balance: 100_000,
        })
        .then_events([opened(100_000)])
        .then_version(1)
        .then_state(json!({
            "status": "active", "account_id": "ACC-001", "owner": "Hanako", "balance": 100_000,
            "withdrawal_day": 0, "withdrawn_that_day": 0,
        }))
}

pub fn opening_twice_is_rejected() -> AggregateCase<Account> {
    given("opening twice is rejected", [opened(100)])
        .when(Command::Open {
            owner: "Taro".into(),
            initial_balance: 0,
        })
        .then_rejected("already-open")
}

/// The example: open ACC-001 with 100,000, deposit 50,000, withdraw 30,000.
pub fn open_deposit_withdraw_gives_120000_at_version_3() -> AggregateCase<Account> {
    given_at(
        "open 100,000, deposit 50,000, withdraw 30,000 gives 120,000 at version 3",
        [
            (DAY + HOUR, opened(100_000)),
            (DAY + 2 * HOUR, Event::Deposited { amount: 50_000 }),
        ],
    )
    .when(Command::Withdraw { amount: 30_000 })
    .issued_at(DAY + 3 * HOUR)
    .then_events([Event::Withdrawn { amount: 30_000 }])
    .then_version(3)
    .then_state(json!({
        "status": "active", "account_id": "ACC-001", "owner": "Hanako", "balance": 120_000,
        "withdrawal_day": 20_000, "withdrawn_that_day": 30_000,
    }))
}

pub fn withdrawing_below_zero_is_rejected() -> AggregateCase<Account> {
    given("withdrawing below zero is rejected", [opened(100)])
        .when(Command::Withdraw { amount: 101 })
        .then_rejected("insufficient-balance")
        .then_message_contains("insufficient balance")
}

pub fn withdrawing_the_whole_balance_is_allowed() -> AggregateCase<Account> {
    given("withdrawing the whole balance is allowed", [opened(100)])
        .when(Command::Withdraw { amount: 100 })
        .then_events([Event::Withdrawn { amount: 100 }])
        .then_version(2)
}

pub fn a_zero_deposit_is_rejected() -> AggregateCase<Account> {
    given("a zero deposit is rejected", [opened(100)])
        .when(Command::Deposit { amount: 0 })
        .then_rejected("invalid-amount")
}

pub fn nothing_is_deposited_while_frozen() -> AggregateCase<Account> {
    given("nothing is deposited while frozen", [opened(100), frozen()])
        .when(Command::Deposit { amount: 1 })
        .then_rejected("account-frozen")
}

pub fn nothing_is_withdrawn_while_frozen() -> AggregateCase<Account> {
    given("nothing is withdrawn while frozen", [opened(100), frozen()])
        .when(Command::Withdraw { amount: 1 })
        .then_rejected("account-frozen")
}

pub fn freezing_a_frozen_account_is_rejected() -> AggregateCase<Account> {
    given(
        "freezing a frozen account is rejected",
        [opened(100), frozen()],
    )
    .when(Command::Freeze {
        reason: "again".into(),
    })
    .then_rejected("account-frozen")
}

pub fn unfreezing_allows_withdrawals_again() -> AggregateCase<Account> {
    given(
        "unfreezing allows withdrawals again",
        [opened(100), frozen(), Event::Unfrozen {}],
    )
    .when(Command::Withdraw { amount: 40 })
    .then_events([Event::Withdrawn { amount: 40 }])
    .then_version(4)
}

pub fn nothing_is_deposited_once_closed() -> AggregateCase<Account> {
    given(
        "nothing is deposited once closed",
        [opened(100), Event::Closed {}],
    )
    .when(Command::Deposit { amount: 1 })
    .then_rejected("account-closed")
}

pub fn nothing_is_withdrawn_once_closed() -> AggregateCase<Account> {
    given(
        "nothing is withdrawn once closed",
        [opened(100), Event::Closed {}],
    )
    .when(Command::Withdraw { amount: 1 })
    .then_rejected("account-closed")
}

pub fn closing_twice_is_rejected() -> AggregateCase<Account> {
    given("closing twice is rejected", [opened(0), Event::Closed {}])
        .when(Command::Close {})
        .then_rejected("account-closed")
}

pub fn a_frozen_account_cannot_be_closed() -> AggregateCase<Account> {
    given("a frozen account cannot be closed", [opened(0), frozen()])
        .when(Command::Close {})
        .then_rejected("account-frozen")
}

pub fn more_than_1000000_in_one_day_is_rejected() -> AggregateCase<Account> {
    given_at(
        "more than 1,000,000 withdrawn in one day is rejected",
        [
            (DAY + HOUR, opened(5_000_000)),
            (DAY + 2 * HOUR, Event::Withdrawn { amount: 600_000 }),
        ],
    )
    .when(Command::Withdraw { amount: 400_001 })
    .issued_at(DAY + 23 * HOUR)
    .then_rejected("daily-limit-exceeded")
}

pub fn exactly_1000000_in_one_day_is_allowed() -> AggregateCase<Account> {
    given_at(
        "exactly 1,000,000 withdrawn in one day is allowed",
        [
            (DAY + HOUR, opened(5_000_000)),
            (DAY + 2 * HOUR, Event::Withdrawn { amount: 600_000 }),
        ],
    )
    .when(Command::Withdraw { amount: 400_000 })
    .issued_at(DAY + 23 * HOUR)
    .then_events([Event::Withdrawn { amount: 400_000 }])
    .then_state(json!({
        "status": "active", "account_id": "ACC-001", "owner": "Hanako", "balance": 4_000_000,
        "withdrawal_day": 20_000, "withdrawn_that_day": 1_000_000,
    }))
}

pub fn the_daily_limit_starts_over_the_next_day() -> AggregateCase<Account> {
    given_at(
        "the daily limit starts over the next calendar day",
        [
            (DAY + HOUR, opened(5_000_000)),
            (DAY + 23 * HOUR, Event::Withdrawn { amount: 1_000_000 }),
        ],
    )
    .when(Command::Withdraw { amount: 1_000_000 })
    .issued_at(DAY + 25 * HOUR)
    .then_events([Event::Withdrawn { amount: 1_000_000 }])
    .then_state(json!({
        "status": "active", "account_id": "ACC-001", "owner": "Hanako", "balance": 3_000_000,
        "withdrawal_day": 20_001, "withdrawn_that_day": 1_000_000,
    }))
}

pub fn commands_on_a_missing_account_are_not_found() -> AggregateCase<Account> {
    given("commands on a missing account are not found", [])
        .when(Command::Deposit { amount: 1 })
        .then_rejected("not-found")
}
