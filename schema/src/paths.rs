//! The lake's path layout, as newtypes with one constructor and one parser:
//! `events/category=<category>/date=<YYYY-MM-DD>/<file>.parquet`.

use chrono::NaiveDate;

use crate::{Category, SchemaError};

/// Top-level folder of the events table inside the data directory.
pub const EVENTS_DIR: &str = "events";
/// Folder of the dead-letter store inside the data directory.
pub const DEAD_LETTER_DIR: &str = "dead-letter";
/// Suffix of files being written; never read, removed at start-up.
pub const IN_PROGRESS_SUFFIX: &str = ".inprogress";

/// One partition of the events table: a category on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionPath {
    pub category: Category,
    pub date: NaiveDate,
}

impl PartitionPath {
    /// The partition holding events of `category` on `date`.
    pub fn new(category: Category, date: NaiveDate) -> Self {
        PartitionPath { category, date }
    }

    /// Relative path from the data directory, `/`-separated.
    pub fn relative(&self) -> String {
        format!(
            "{EVENTS_DIR}/category={}/date={}",
            self.category.as_str(),
            self.date.format("%Y-%m-%d")
        )
    }

    /// Parses a relative directory path produced by [`PartitionPath::relative`].
    pub fn parse(relative: &str) -> Result<Self, SchemaError> {
        let bad = || SchemaError::BadPath(relative.to_owned());
        let mut parts = relative.trim_end_matches('/').split('/');
        if parts.next() != Some(EVENTS_DIR) {
            return Err(bad());
        }
        let category = parts
            .next()
            .and_then(|p| p.strip_prefix("category="))
            .and_then(Category::parse)
            .ok_or_else(bad)?;
        let date = parts
            .next()
            .and_then(|p| p.strip_prefix("date="))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(PartitionPath { category, date })
    }
}

/// A committed data file inside a partition. The file name is chosen by the
/// writer from the content (a hash of its event ids) so that writing the
/// same batch twice names the same file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataFilePath {
    pub partition: PartitionPath,
    /// File stem without `.parquet`.
    pub stem: String,
}

impl DataFilePath {
    /// A data file named `<stem>.parquet` in `partition`. The stem may hold
    /// letters, digits, `-` and `_` only.
    pub fn new(partition: PartitionPath, stem: impl Into<String>) -> Result<Self, SchemaError> {
        let stem = stem.into();
        let valid = !stem.is_empty()
            && stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(SchemaError::BadPath(stem));
        }
        Ok(DataFilePath { partition, stem })
    }

    /// Relative path from the data directory.
    pub fn relative(&self) -> String {
        format!("{}/{}.parquet", self.partition.relative(), self.stem)
    }

    /// Parses a relative file path produced by [`DataFilePath::relative`].
    pub fn parse(relative: &str) -> Result<Self, SchemaError> {
        let (dir, file) = relative
            .rsplit_once('/')
            .ok_or_else(|| SchemaError::BadPath(relative.to_owned()))?;
        let stem = file
            .strip_suffix(".parquet")
            .ok_or_else(|| SchemaError::BadPath(relative.to_owned()))?;
        DataFilePath::new(PartitionPath::parse(dir)?, stem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths_round_trip() {
        let date = NaiveDate::from_ymd_opt(2025, 3, 6).expect("valid date");
        let path = DataFilePath::new(PartitionPath::new(Category::SecretAccess, date), "abc-1")
            .expect("valid stem");
        assert_eq!(
            path.relative(),
            "events/category=secret_access/date=2025-03-06/abc-1.parquet"
        );
        assert_eq!(DataFilePath::parse(&path.relative()).expect("parses"), path);
    }

    #[test]
    fn foreign_paths_are_refused() {
        for bad in [
            "events/category=nope/date=2025-03-06/a.parquet",
            "events/category=auth/date=2025-13-06/a.parquet",
            "other/category=auth/date=2025-03-06/a.parquet",
            "events/category=auth/date=2025-03-06/a.csv",
            "events/category=auth/date=2025-03-06/../a.parquet",
        ] {
            assert!(DataFilePath::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
