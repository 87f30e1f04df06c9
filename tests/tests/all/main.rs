//! Workspace integration tests: one binary, one module per area (link time matters with wasmtime).
//!
//! Every plugin under `plugins/` and `tests/plugins/` must have an end-to-end module here named
//! after it: `foreach_plugin!` below fails to compile otherwise.

mod bank_account;
mod booking;
mod boundary_echo;
mod broker;
mod budget_aggregate;
mod budget_projector;
mod cluster;
mod cluster_harness;
mod cluster_load;
mod cluster_oracle;
mod counter_plugin;
mod dead_letter_export;
mod full_disk;
mod garbage_plugin;
mod gate_projector;
mod gate_projector_changed;
mod hostile_plugin;
mod http_api;
mod http_clients;
mod http_errors;
mod inventory;
mod inventory_release;
mod json_echo;
mod kafka_log;
mod log_crash;
mod log_model;
mod log_race;
mod notification;
mod notification_log;
mod order;
mod order_placement;
mod order_placement_v2;
mod order_summary;
mod otlp_spans;
mod outbox_kafka;
mod outbox_relay;
mod payment;
mod poison_fixed_plugin;
mod poison_plugin;
mod poison_policy;
mod poison_policy_fixed;
mod poison_saga;
mod poison_saga_fixed;
mod projector_rebuild;
mod review;
mod review_notification;
mod review_rating;
mod scenario_files;
mod service;
mod shipping;
mod shop;
mod status_page;
mod support;
mod travel_booking;
mod trip;
mod versioned_plugin;
mod worked_example;

macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
factline_tests::foreach_plugin!(assert_test_exists);
