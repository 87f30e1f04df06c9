//! A trip request (DESIGN §6, travel booking): `request` records `trip.requested`, which starts
//! the `travel-booking` saga (flight → hotel → car → payment). A trip is requested once; the
//! stream `trip-T1` is trip `T1`.

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trip {
    pub requested: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// `flight`, `hotel` and `car` are resource ids of the booking aggregates (`hotel-H1` is
    /// hotel `H1`); `amount` is charged to the customer's payment account.
    Request {
        customer_id: String,
        flight: String,
        hotel: String,
        car: String,
        amount: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The travel-booking saga's trigger: the same fields as its `Trip`.
    #[serde(rename = "trip.requested")]
    Requested {
        trip_id: String,
        customer_id: String,
        flight: String,
        hotel: String,
        car: String,
        amount: u64,
    },
}

impl Aggregate for Trip {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        let Command::Request {
            customer_id,
            flight,
            hotel,
            car,
            amount,
        } = command;
        Rejection::ensure(
            !self.requested,
            "already-requested",
            format!("{} was requested already", ctx.stream),
        )?;
        Rejection::ensure(amount > 0, "no-amount", "a trip costs something")?;
        let trip_id = ctx.stream.strip_prefix("trip-").unwrap_or(&ctx.stream);
        Ok(vec![Event::Requested {
            trip_id: trip_id.to_owned(),
            customer_id,
            flight,
            hotel,
            car,
            amount,
        }])
    }

    fn evolve(&mut self, event: Event, _meta: &EventMeta) {
        match event {
            Event::Requested { .. } => self.requested = true,
        }
    }
}

factline_guest::aggregate!(Trip);

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Command {
        Command::Request {
            customer_id: "C1".into(),
            flight: "F1".into(),
            hotel: "H1".into(),
            car: "A1".into(),
            amount: 900,
        }
    }

    #[test]
    fn a_trip_is_requested_once_with_its_stream_id() {
        let ctx = CommandContext {
            stream: "trip-T1".into(),
            ..Default::default()
        };
        let events = Trip::default().decide(request(), &ctx).unwrap();
        assert!(
            matches!(&events[..], [Event::Requested { trip_id, amount: 900, .. }] if trip_id == "T1")
        );
        let mut trip = Trip::default();
        trip.evolve(events[0].clone(), &EventMeta::default());
        assert_eq!(
            trip.decide(request(), &ctx).unwrap_err().code,
            "already-requested"
        );
    }
}
