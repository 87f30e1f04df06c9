//! The poison saga's fixed release, which the dead-letter test (`poison_policy.rs`) deploys:
//! another component than the poisoned build, of the same saga.

use factline_host::{
    AggregateInstance, InstantiateError, Limits, PluginKind, SagaPluginInstance as SagaInstance,
};

use crate::support::{load, runtime};

#[test]
fn the_fixed_release_is_another_version_of_the_same_plugin() {
    let rt = runtime();
    let [a, b] = [
        factline_tests::POISON_SAGA,
        factline_tests::POISON_SAGA_FIXED,
    ]
    .map(|c| load(&rt, "poison-saga", PluginKind::Saga, c, Limits::default()));
    assert_ne!(a.version.content_hash, b.version.content_hash);
    let [mut a, mut b] = [a, b].map(|p| p.instantiate::<SagaInstance>().unwrap());
    assert_eq!(
        a.saga_definition().unwrap(),
        b.saga_definition().unwrap(),
        "one saga, two releases"
    );
}

#[test]
fn a_saga_is_refused_once_as_another_world() {
    let rt = runtime();
    let saga = load(
        &rt,
        "poison-saga",
        PluginKind::Saga,
        factline_tests::POISON_SAGA,
        Limits::default(),
    );
    // The kind is checked when instantiating; the calls of each world are then typed.
    match saga.instantiate::<AggregateInstance>() {
        Err(InstantiateError::KindMismatch { kind, wanted, .. }) => {
            assert_eq!((kind, wanted), (PluginKind::Saga, PluginKind::Aggregate));
        }
        other => panic!("expected a kind mismatch, got {other:?}"),
    }
    assert!(saga.instantiate::<SagaInstance>().is_ok());
}
