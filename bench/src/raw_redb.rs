//! The raw-redb reference figures for `factline-bench log`: redb itself, with nothing of factline.

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Database, TableDefinition};

const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("bench_rows");

/// Inserts `txns × per_txn` rows of `row` into a fresh database in `dir`, one `Immediate`
/// (fsynced) transaction per `per_txn` rows; returns the time taken.
pub fn raw_redb_insert_bench(
    dir: &Path,
    txns: u64,
    per_txn: u64,
    row: &[u8],
) -> Result<Duration, redb::Error> {
    let db = Database::create(dir.join("raw.redb"))?;
    let start = Instant::now();
    let mut key = 0u64;
    for _ in 0..txns {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(ROWS)?;
            for _ in 0..per_txn {
                t.insert(key, row)?;
                key += 1;
            }
        }
        txn.commit()?;
    }
    Ok(start.elapsed())
}
