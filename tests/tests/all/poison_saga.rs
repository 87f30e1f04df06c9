//! The poison saga (see `poison_policy.rs` for its dead letters through the host): a component
//! of the saga world only, and its fixed release defines the same saga, so a deploy may add it.

use factline_host::SagaVersions;
use factline_host::{Limits, LoadError, PluginKind};

use crate::support::{load, runtime};

#[test]
fn it_is_a_saga_and_its_fixed_release_is_another_version_of_it() {
    let rt = runtime();
    let bytes = std::fs::read(factline_tests::POISON_SAGA).unwrap();
    let refused = rt
        .load(
            "poison-saga",
            PluginKind::Projector,
            &bytes,
            Limits::default(),
            None,
        )
        .unwrap_err();
    assert!(matches!(refused, LoadError::WrongWorld { .. }), "{refused}");
    let saga = load(
        &rt,
        "poison-saga",
        PluginKind::Saga,
        factline_tests::POISON_SAGA,
        Limits::default(),
    );
    let versions = SagaVersions::new("poison-saga", saga.clone()).unwrap();
    let fixed = load(
        &rt,
        "poison-saga",
        PluginKind::Saga,
        factline_tests::POISON_SAGA_FIXED,
        Limits::default(),
    );
    versions.add_version(&fixed).unwrap();
    assert_eq!(
        versions.loaded_versions(),
        [
            fixed.version.content_hash.clone(),
            saga.version.content_hash.clone()
        ]
    );
}
