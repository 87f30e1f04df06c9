//! `factline:plugin/json-read-model`: a `json-projector`'s read model, the same session as
//! `read-model`'s with values as JSON text, transcoded from and to the stored MessagePack at
//! each call (`boundary`).

use super::read_model::{delete, outgoing_json, put_json, session};
use crate::plugin::bindings::json_read_model::Host;
use crate::plugin::state::HostState;

impl Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let value = session(self)?.get(&key).map_err(wasmtime::Error::msg)?;
        value.map(|v| outgoing_json(&key, &v)).transpose()
    }

    fn put(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        put_json(self, key, value.as_bytes())
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        delete(self, key)
    }

    fn scan_prefix(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Vec<(String, String)>> {
        session(self)?
            .scan_prefix(&prefix, start_after.as_deref(), limit)
            .map_err(wasmtime::Error::msg)?
            .into_iter()
            .map(|(k, v)| outgoing_json(&k, &v).map(|t| (k, t)))
            .collect()
    }
}
