//! The travel-booking saga (DESIGN §6): on `trip.requested`, book_flight → reserve_hotel →
//! rent_car → process_payment; a failure compensates in reverse (cancel the car, the hotel,
//! the flight). The resources are `booking` aggregates run as `flight`, `hotel` and `car`;
//! the payment goes to the customer's `payment` account. Booking ids are `<trip>/<kind>`, so
//! the `booking.booked` answers of the three resources are told apart.

use factline_guest::{
    EventMeta, Failure, OutgoingCommand, Saga, SagaDefinition, Started, StepDefinition, Verdict,
};
use serde::{Deserialize, Serialize};

pub const BOOK_FLIGHT: &str = "book_flight";
pub const RESERVE_HOTEL: &str = "reserve_hotel";
pub const RENT_CAR: &str = "rent_car";
pub const PROCESS_PAYMENT: &str = "process_payment";

const TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trip {
    pub trip_id: String,
    pub customer_id: String,
    /// Resource ids: `flight-<flight>`, `hotel-<hotel>`, `car-<car>`.
    pub flight: String,
    pub hotel: String,
    pub car: String,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    #[serde(rename = "trip.requested")]
    Requested(Trip),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    #[serde(rename = "booking.booked")]
    Booked { booking_id: String },
    #[serde(rename = "payment.charged")]
    Charged { order_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BookingCommand {
    Book { booking_id: String },
    Cancel { booking_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaymentCommand {
    Charge { order_id: String, amount: u64 },
    Refund { order_id: String },
}

impl Trip {
    /// The resource aggregate, its stream and the booking id of a booking step.
    fn resource(&self, step: &str) -> Option<(&'static str, String, String)> {
        let (kind, id) = match step {
            BOOK_FLIGHT => ("flight", &self.flight),
            RESERVE_HOTEL => ("hotel", &self.hotel),
            RENT_CAR => ("car", &self.car),
            _ => return None,
        };
        Some((
            kind,
            format!("{kind}-{id}"),
            format!("{}/{kind}", self.trip_id),
        ))
    }

    fn booking(&self, step: &str, undo: bool) -> Result<Option<OutgoingCommand>, Failure> {
        let Some((kind, stream, booking_id)) = self.resource(step) else {
            return Ok(None);
        };
        let (id, command) = if undo {
            (
                format!("{booking_id}/cancel"),
                BookingCommand::Cancel { booking_id },
            )
        } else {
            (
                format!("{booking_id}/book"),
                BookingCommand::Book { booking_id },
            )
        };
        OutgoingCommand::new(kind, stream, id, &command).map(Some)
    }

    fn payment(&self, undo: bool) -> Result<OutgoingCommand, Failure> {
        let order_id = self.trip_id.clone();
        let stream = format!("payment-{}", self.customer_id);
        if undo {
            let id = format!("{}/refund", self.trip_id);
            OutgoingCommand::new("payment", stream, id, &PaymentCommand::Refund { order_id })
        } else {
            let id = format!("{}/charge", self.trip_id);
            let amount = self.amount;
            OutgoingCommand::new(
                "payment",
                stream,
                id,
                &PaymentCommand::Charge { order_id, amount },
            )
        }
    }
}

fn unknown(step: &str) -> Failure {
    Failure::new(format!("travel-booking has no step `{step}`"))
}

impl Saga for Trip {
    type Trigger = Trigger;
    type Answer = Answer;

    fn definition() -> SagaDefinition {
        SagaDefinition::new("travel-booking")
            .step(StepDefinition::new(BOOK_FLIGHT, TIMEOUT_MS).compensable())
            .step(StepDefinition::new(RESERVE_HOTEL, TIMEOUT_MS).compensable())
            .step(StepDefinition::new(RENT_CAR, TIMEOUT_MS).compensable())
            .step(StepDefinition::new(PROCESS_PAYMENT, TIMEOUT_MS).compensable())
    }

    fn start(
        Trigger::Requested(trip): Trigger,
        _: &EventMeta,
    ) -> Result<Option<Started<Self>>, Failure> {
        Ok(Some(Started {
            instance_id: trip.trip_id.clone(),
            data: trip,
        }))
    }

    fn execute(&self, step: &str) -> Result<OutgoingCommand, Failure> {
        match step {
            PROCESS_PAYMENT => self.payment(false),
            _ => self.booking(step, false)?.ok_or_else(|| unknown(step)),
        }
    }

    fn compensate(&self, step: &str) -> Result<Option<OutgoingCommand>, Failure> {
        match step {
            PROCESS_PAYMENT => self.payment(true).map(Some),
            BOOK_FLIGHT | RESERVE_HOTEL | RENT_CAR => self.booking(step, true),
            other => Err(unknown(other)),
        }
    }

    fn judge(&self, step: &str, answer: Answer, _: &EventMeta) -> Result<Verdict<Self>, Failure> {
        let done = match (answer, self.resource(step)) {
            (Answer::Booked { booking_id }, Some((_, _, expected))) => booking_id == expected,
            (Answer::Charged { order_id }, None) => {
                step == PROCESS_PAYMENT && order_id == self.trip_id
            }
            _ => false,
        };
        Ok(if done {
            Verdict::Succeeded(self.clone())
        } else {
            Verdict::NotMine
        })
    }
}

factline_guest::saga!(Trip);
