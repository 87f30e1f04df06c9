//! Host implementations of the interfaces plugins import: one file per WIT interface.

pub(crate) mod json_read_model;
pub(crate) mod logging;
pub(crate) mod read_model;
