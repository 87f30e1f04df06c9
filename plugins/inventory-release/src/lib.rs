//! Policy (choreography): a cancelled order releases what the inventory holds for it
//! ("inventory releases on `order.cancelled`", DESIGN §6). The inventory answers a release of
//! an order it holds nothing for with no events, so this is safe for any cancellation.

use factline_guest::{EventMeta, Failure, OutgoingCommand, Policy};
use serde::{Deserialize, Serialize};

/// The warehouse stream orders reserve from.
pub const WAREHOUSE_STREAM: &str = "inventory-main";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "order.cancelled")]
    Cancelled {},
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Release { order_id: String },
}

#[derive(Debug, Default)]
pub struct InventoryRelease;

impl Policy for InventoryRelease {
    type Event = Event;

    fn react(&self, _event: Event, meta: &EventMeta) -> Result<Vec<OutgoingCommand>, Failure> {
        let order_id = meta
            .stream
            .strip_prefix("order-")
            .ok_or_else(|| Failure::new(format!("{} is not an order stream", meta.stream)))?;
        Ok(vec![OutgoingCommand::new(
            "inventory",
            WAREHOUSE_STREAM,
            format!("{}/release", meta.event_id),
            &Command::Release {
                order_id: order_id.to_owned(),
            },
        )?])
    }
}

factline_guest::policy!(InventoryRelease);

#[cfg(test)]
mod scenario_file {
    use factline_guest::scenario::{Scenario, ScenarioFile};

    /// The file `factline test` runs against the `.wasm` (and the Python and JavaScript builds,
    /// plugins/inventory-release-py, -js) holds natively for the Rust type too.
    #[test]
    fn the_scenario_file_passes_natively() {
        let file: ScenarioFile = serde_json::from_str(include_str!("../scenarios.json")).unwrap();
        assert!(file.scenarios.len() >= 3);
        for s in &file.scenarios {
            let Scenario::Policy(s) = s else {
                panic!("{} is not a policy scenario", s.name())
            };
            let outcome = factline_guest::testing::run_policy::<super::InventoryRelease>(s);
            s.verify(&outcome).unwrap_or_else(|m| panic!("{m}"));
        }
    }
}
