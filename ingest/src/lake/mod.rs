//! The lake writer: normalized events become time-sorted, zstd-compressed
//! Parquet files under `events/category=<c>/date=<d>/`, committed
//! atomically and never twice (event ids already in a partition are skipped).

mod atomic;
mod index;
mod writer;

pub use atomic::{atomic_write, clean_leftovers, sync_dir};
pub use writer::{CommitReport, LakeWriter, writer_properties};
