//! The order-placement saga (DESIGN §6): on `order.placed`, reserve_inventory →
//! process_payment → schedule_shipping → send_confirmation; a failure compensates the
//! completed steps in reverse (cancel_shipping, refund_payment, release_inventory).
//!
//! Targets: the warehouse stream `inventory-main`, the customer's account `payment-<customer>`,
//! the depot `shipping-main` and `notification-<order>`. The definition lives in `saga.rs` so a
//! second build of it (a test's "new version") can change only [`CONFIRMATION_SUBJECT`].

/// Subject of the confirmation (the order id is appended).
pub const CONFIRMATION_SUBJECT: &str = "Order confirmed";

include!("saga.rs");

factline_guest::saga!(OrderPlacement);

#[cfg(test)]
mod scenario_file {
    use factline_guest::scenario::{Scenario, ScenarioFile};

    /// The file `factline test` runs against the `.wasm` (and any other language's build) holds
    /// natively for the Rust type too.
    #[test]
    fn the_scenario_file_passes_natively() {
        let file: ScenarioFile = serde_json::from_str(include_str!("../scenarios.json")).unwrap();
        assert!(file.scenarios.len() >= 5);
        for s in &file.scenarios {
            let Scenario::Saga(s) = s else {
                panic!("{} is not a saga scenario", s.name())
            };
            let outcome = factline_guest::testing::run_saga::<super::OrderPlacement>(s);
            s.verify(&outcome).unwrap_or_else(|m| panic!("{m}"));
        }
    }
}
