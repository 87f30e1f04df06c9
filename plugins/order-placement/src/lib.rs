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
