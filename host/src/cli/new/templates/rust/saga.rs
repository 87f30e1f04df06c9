//! The `{{name}}` saga: on `transfer.requested`, `withdraw` from one account, then `deposit`
//! into the other; a failed deposit compensates the withdrawal (a `deposit` back).

use factline_guest::{
    EventMeta, Failure, OutgoingCommand, Saga, SagaDefinition, Started, StepDefinition, Verdict,
};
use serde::{Deserialize, Serialize};

const WITHDRAW: &str = "withdraw";
const DEPOSIT: &str = "deposit";
const TIMEOUT_MS: u64 = 30_000;

/// One instance's data, stored by the host between calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transfer {
    pub transfer_id: String,
    pub from: String,
    pub to: String,
    pub amount: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Trigger {
    #[serde(rename = "transfer.requested")]
    Requested(Transfer),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    #[serde(rename = "account.withdrawn")]
    Withdrawn { reference: String },
    #[serde(rename = "account.deposited")]
    Deposited { reference: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountCommand {
    Withdraw { amount: u64, reference: String },
    Deposit { amount: u64, reference: String },
}

impl Transfer {
    fn command(&self, account: &str, suffix: &str, command: &AccountCommand) -> Result<OutgoingCommand, Failure> {
        OutgoingCommand::new(
            "account",
            format!("account-{account}"),
            format!("{}/{suffix}", self.transfer_id),
            command,
        )
    }

    fn reference(&self, step: &str) -> String {
        format!("{}/{step}", self.transfer_id)
    }
}

impl Saga for Transfer {
    type Trigger = Trigger;
    type Answer = Answer;

    fn definition() -> SagaDefinition {
        SagaDefinition::new("{{name}}")
            .step(StepDefinition::new(WITHDRAW, TIMEOUT_MS).compensable())
            .step(StepDefinition::new(DEPOSIT, TIMEOUT_MS))
    }

    fn start(Trigger::Requested(t): Trigger, _: &EventMeta) -> Result<Option<Started<Self>>, Failure> {
        Ok(Some(Started {
            instance_id: t.transfer_id.clone(),
            data: t,
        }))
    }

    fn execute(&self, step: &str) -> Result<OutgoingCommand, Failure> {
        let (account, command) = match step {
            WITHDRAW => (&self.from, AccountCommand::Withdraw { amount: self.amount, reference: self.reference(step) }),
            DEPOSIT => (&self.to, AccountCommand::Deposit { amount: self.amount, reference: self.reference(step) }),
            other => return Err(Failure::new(format!("no step `{other}`"))),
        };
        self.command(account, step, &command)
    }

    fn compensate(&self, step: &str) -> Result<Option<OutgoingCommand>, Failure> {
        if step != WITHDRAW {
            return Ok(None);
        }
        let refund = AccountCommand::Deposit { amount: self.amount, reference: self.reference("refund") };
        self.command(&self.from, "refund", &refund).map(Some)
    }

    fn judge(&self, step: &str, answer: Answer, _: &EventMeta) -> Result<Verdict<Self>, Failure> {
        let done = match answer {
            Answer::Withdrawn { reference } => step == WITHDRAW && reference == self.reference(step),
            Answer::Deposited { reference } => step == DEPOSIT && reference == self.reference(step),
        };
        Ok(if done { Verdict::Succeeded(self.clone()) } else { Verdict::NotMine })
    }
}

factline_guest::saga!(Transfer);
