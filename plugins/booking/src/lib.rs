//! A bookable resource with a number of units: a flight's seats, a hotel's rooms, an agency's
//! cars. The same component runs as several aggregates (`flight`, `hotel`, `car`), one stream
//! per resource, e.g. `hotel-H1`. Booking with no unit left is rejected (`none-left`); a
//! booking is made and cancelled at most once.

use std::collections::BTreeSet;

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub units: u32,
    pub booked: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    AddUnits { units: u32 },
    Book { booking_id: String },
    Cancel { booking_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "booking.units-added")]
    UnitsAdded { units: u32 },
    #[serde(rename = "booking.booked")]
    Booked { booking_id: String },
    #[serde(rename = "booking.cancelled")]
    Cancelled { booking_id: String },
}

impl Aggregate for Resource {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        Ok(match command {
            Command::AddUnits { units } => vec![Event::UnitsAdded { units }],
            Command::Book { booking_id } => {
                if self.booked.contains(&booking_id) {
                    return Ok(Vec::new());
                }
                Rejection::ensure(
                    (self.booked.len() as u64) < u64::from(self.units),
                    "none-left",
                    format!("{} has no unit left", ctx.stream),
                )?;
                vec![Event::Booked { booking_id }]
            }
            Command::Cancel { booking_id } => {
                if self.booked.contains(&booking_id) {
                    vec![Event::Cancelled { booking_id }]
                } else {
                    Vec::new()
                }
            }
        })
    }

    fn evolve(&mut self, event: Event, _meta: &EventMeta) {
        match event {
            Event::UnitsAdded { units } => self.units = self.units.saturating_add(units),
            Event::Booked { booking_id } => {
                self.booked.insert(booking_id);
            }
            Event::Cancelled { booking_id } => {
                self.booked.remove(&booking_id);
            }
        }
    }
}

factline_guest::aggregate!(Resource);
