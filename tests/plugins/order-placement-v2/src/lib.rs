//! The order-placement saga built again with another confirmation subject: a second version
//! (another content hash) whose effect is visible, for the version-pinning test.

/// Subject of the confirmation (the order id is appended).
pub const CONFIRMATION_SUBJECT: &str = "Order confirmed (v2)";

include!("../../../../plugins/order-placement/src/saga.rs");

factline_guest::saga!(OrderPlacement);
