//! The on-disk format: every redb table of a factline data directory, in one place.
//!
//! `docs/storage-format.md` draws the same layout for readers. All integers inside keys are
//! encoded by redb (fixed width, little-endian); values that are structs are MessagePack with
//! named fields so fields can be added without a format bump.
//!
//! Durability promise: every write goes through the single writer thread (`writer.rs`), which
//! commits with `Durability::Immediate` (fsync before `commit` returns) unless the log was opened
//! with `Durability::None` for tests. An `append` returns only after the transaction holding its
//! events has committed.

use redb::TableDefinition;

/// Bumped on any incompatible change of the tables below. Stored under `meta["format_version"]`.
pub const FORMAT_VERSION: u64 = 4;

/// The oldest stored version this build upgrades in place (version 1 lacks the saga tables,
/// version 2 the projections table, version 3 the retries table; opening creates them).
pub const OLDEST_UPGRADABLE_VERSION: u64 = 1;

/// `name -> value`: `format_version` (u64).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// `topic name -> (topic id, partition count)`. Ids are dense from 0, never reused; a topic's
/// partition count never changes.
pub const TOPICS: TableDefinition<&str, (u32, u32)> = TableDefinition::new("topics");

/// `(topic id, partition, offset) -> Event` (MessagePack). Offsets are dense from 0.
pub const EVENTS: TableDefinition<(u32, u32, u64), &[u8]> = TableDefinition::new("events");

/// `(stream id, version) -> offset` in the stream's partition (topic and partition follow from
/// the stream id). A stream's current version is its last entry here (no entry = no stream).
pub const STREAM_INDEX: TableDefinition<(&str, u64), u64> = TableDefinition::new("stream_index");

/// `event id (u128 of the UUID) -> (stream version, offset)`, for idempotent appends. Only ids
/// chosen by the caller are indexed (a generated UUIDv7 cannot be retried). The stream is checked
/// through `STREAM_INDEX`.
pub const EVENT_IDS: TableDefinition<u128, (u64, u64)> = TableDefinition::new("event_ids");

/// `(group, topic id, partition) -> next offset to process` (committed consumer offsets).
pub const GROUP_OFFSETS: TableDefinition<(&str, u32, u32), u64> =
    TableDefinition::new("group_offsets");

/// `(read model scope, key) -> value` (the projector's own MessagePack bytes).
pub const READ_MODELS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("read_models");

/// `(group, topic id, partition, offset) -> DeadLetter` (MessagePack, named fields): events a
/// group parked after its last retry. Written and removed only by handler commits, so parking
/// (and, with `skip`, the offset moving past the event) is one transaction.
pub const DEAD_LETTERS: TableDefinition<(&str, u32, u32, u64), &[u8]> =
    TableDefinition::new("dead_letters");

/// `(stream id, state schema, stream version) -> Snapshot` (MessagePack, named fields:
/// `occurred_at`, `plugin_version`, `state`): an aggregate's state after that version, written
/// every `snapshot_every` events. A cache of a replay; loading ignores other state schemas.
pub const SNAPSHOTS: TableDefinition<(&str, u32, u64), &[u8]> = TableDefinition::new("snapshots");
/// `(saga, instance id) -> (revision, SagaInstance)`: each saga instance's durable log. The
/// value bytes are the saga runner's MessagePack (named fields); the log only checks the
/// revision, which every write must name (the fence for timer-driven commits, which move no
/// offset). Added in format version 2.
pub const SAGA_INSTANCES: TableDefinition<(&str, &str), (u64, &[u8])> =
    TableDefinition::new("saga_instances");

/// `(saga, correlation id, instance id) -> ()`: which instances answers with that correlation
/// id may belong to. Added in format version 2.
pub const SAGA_CORRELATIONS: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("saga_correlations");

/// `(saga, instance id) -> due time (ms since the Unix epoch)`: the one durable timer of an
/// in-flight instance (a step's timeout or a compensation's next retry). Only in-flight
/// instances have a row, so scanning a saga's timers stays cheap. Added in format version 2.
pub const SAGA_TIMERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("saga_timers");

/// `projector name -> ProjectionRecord` (MessagePack, named fields: `active` and `rebuild`, each
/// `{generation, read_model_version, plugin_version, since}`): which generation of a
/// projector's read model is live, and which is being rebuilt. Generation 0 keeps its rows under
/// scope `name`, generation g under `name@g`. No record: generation 0. Added in format version 3.
pub const PROJECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("projections");

/// `(group, topic id, partition) -> (offset, attempts, first failed at ms)`: the failed attempts
/// of the event a group's partition is retrying, so a restart does not give a poison event a
/// fresh retry budget. Written by the commit that counts a failed attempt (which moves no
/// offset); removed by any commit that moves the partition's offset. Added in format version 4.
pub const RETRIES: TableDefinition<(&str, u32, u32), (u64, u32, u64)> =
    TableDefinition::new("retries");
