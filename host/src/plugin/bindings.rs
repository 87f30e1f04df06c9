//! Host-side bindings generated from `wit/` (one module per world; the shared interfaces are
//! generated once, in `aggregate`, and reused by the others through `with`).

pub mod aggregate {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "factline:plugin/aggregate",
    });
}

/// Only for the optional `schema-evolution` export of an aggregate (world
/// `evolving-aggregate`); the aggregate exports themselves come from `aggregate`.
pub mod evolution {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "factline:plugin/evolving-aggregate",
        with: {
            "factline:plugin/types": super::aggregate::factline::plugin::types,
            "factline:plugin/logging": super::aggregate::factline::plugin::logging,
        },
    });
}

pub mod projector {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "factline:plugin/projector",
        // A storage error inside a read-model call must stop the call, not be hidden from it.
        imports: { "factline:plugin/read-model": trappable },
        with: {
            "factline:plugin/types": super::aggregate::factline::plugin::types,
            "factline:plugin/logging": super::aggregate::factline::plugin::logging,
        },
    });
}

/// A projector whose batches and read-model values are JSON text (world `json-projector`); its
/// optional `read-model-evolution` export is the same as a `projector`'s.
pub mod json_projector {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "factline:plugin/json-projector",
        imports: { "factline:plugin/json-read-model": trappable },
        with: {
            "factline:plugin/types": super::aggregate::factline::plugin::types,
            "factline:plugin/logging": super::aggregate::factline::plugin::logging,
        },
    });
}

/// Only for the optional `read-model-evolution` export of a projector (world
/// `versioned-projector`); the projector exports themselves come from `projector`.
pub mod projector_evolution {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "factline:plugin/versioned-projector",
        with: {
            "factline:plugin/types": super::aggregate::factline::plugin::types,
            "factline:plugin/logging": super::aggregate::factline::plugin::logging,
            "factline:plugin/read-model": super::projector::factline::plugin::read_model,
        },
    });
}

pub mod policy {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "factline:plugin/policy",
        with: {
            "factline:plugin/types": super::aggregate::factline::plugin::types,
            "factline:plugin/logging": super::aggregate::factline::plugin::logging,
        },
    });
}

pub mod saga {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "factline:plugin/saga",
        with: {
            "factline:plugin/types": super::aggregate::factline::plugin::types,
            "factline:plugin/logging": super::aggregate::factline::plugin::logging,
        },
    });
}

pub use aggregate::factline::plugin::logging;
pub use aggregate::factline::plugin::types;
pub use evolution::exports::factline::plugin::schema_evolution;
pub use json_projector::factline::plugin::json_read_model;
pub use projector::factline::plugin::read_model;
pub use projector_evolution::exports::factline::plugin::read_model_evolution;
