//! The lake writer: normalized events become time-sorted, zstd-compressed
//! Parquet files under `events/category=<c>/date=<d>/`, committed
//! atomically and never twice (event ids already in a partition are skipped),
//! and compacted into larger files once a partition is quiet.

mod atomic;
mod compact;
mod index;
mod writer;

pub use atomic::{atomic_write, clean_leftovers, sync_dir};
pub use compact::{
    COMPACTION_DIR, CompactionPolicy, CompactionReport, Compactor, PartitionPlan,
    recover_compactions,
};
pub use writer::{CommitReport, LakeWriter, fitted_to_rows, writer_properties};
