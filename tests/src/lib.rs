//! Support for the workspace's end-to-end tests: the plugin components, built by `build.rs`
//! from every crate under `plugins/` and `tests/plugins/`.
//!
//! `ORDER`, `ORDER_SUMMARY`, `HOSTILE_PLUGIN`, … are absolute paths of the `.wasm` components
//! (SHOUTY_SNAKE of the package name); [`PLUGINS`] lists them all; `foreach_plugin!(m)` invokes
//! `m!(order)`, `m!(order_summary)`, … once per plugin, so a test binary can refuse to compile
//! while a plugin lacks its end-to-end test.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

#[cfg(test)]
mod tests {
    /// Magic, then version 0x0d and layer 1: a component, not a core module.
    const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn every_plugin_is_a_built_component() {
        for (package, path) in super::PLUGINS {
            let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{package}: {path}: {e}"));
            assert!(
                bytes.starts_with(COMPONENT_HEADER),
                "{package}: {path} is not a component"
            );
        }
    }

    #[test]
    fn foreach_plugin_names_every_plugin() {
        let mut names = Vec::new();
        macro_rules! collect {
            ($name:ident) => {
                names.push(stringify!($name).replace('_', "-"));
            };
        }
        foreach_plugin!(collect);
        let packages: Vec<String> = super::PLUGINS.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(names, packages);
        assert!(
            packages.iter().any(|p| p == "order") && packages.iter().any(|p| p == "hostile-plugin")
        );
    }
}
