//! Host implementations of the interfaces plugins import: one file per WIT interface.

pub(crate) mod logging;
pub(crate) mod read_model;
