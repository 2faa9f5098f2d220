//! File import: expands paths (files, directories recursively in name
//! order, `-` for standard input), reads each file whole, gunzips it when
//! needed, and records its modification time as the observation time.

use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// One input file (or standard input) ready to decode.
#[derive(Debug)]
pub struct FileInput {
    /// The path as given, or `stdin`.
    pub origin: String,
    pub bytes: Vec<u8>,
    /// Size as read from disk, before decompression.
    pub stored_bytes: u64,
    pub modified: Option<DateTime<Utc>>,
}

/// A path that could not be read, with the reason.
#[derive(Debug)]
pub struct Unreadable {
    pub origin: String,
    pub reason: String,
}

/// Expands the given paths into the list of files to read, in a stable
/// order. `-` stands for standard input. Hidden files and folders are
/// skipped inside directories.
pub fn expand(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Unreadable>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(path.clone());
            continue;
        }
        if path.is_dir() {
            let walker = walkdir::WalkDir::new(path)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| e.depth() == 0 || !is_hidden(e.path()));
            for entry in walker {
                match entry {
                    Ok(entry) if entry.file_type().is_file() => files.push(entry.into_path()),
                    Ok(_) => {}
                    Err(e) => problems.push(Unreadable {
                        origin: path.display().to_string(),
                        reason: e.to_string(),
                    }),
                }
            }
        } else if path.exists() {
            files.push(path.clone());
        } else {
            problems.push(Unreadable {
                origin: path.display().to_string(),
                reason: "no such file or directory".into(),
            });
        }
    }
    (files, problems)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Reads one expanded path (or standard input for `-`), decompressing gzip.
pub fn read(path: &Path) -> Result<FileInput, Unreadable> {
    let origin = if path.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        path.display().to_string()
    };
    let fail = |reason: String| Unreadable {
        origin: origin.clone(),
        reason,
    };
    let (raw, modified) = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| fail(e.to_string()))?;
        (bytes, None)
    } else {
        let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .map(DateTime::<Utc>::from);
        (bytes, modified)
    };
    let stored_bytes = raw.len() as u64;
    let bytes = crate::compression::gunzip_if_needed(raw)
        .map_err(|e| fail(format!("corrupt gzip stream: {e}")))?;
    Ok(FileInput {
        origin,
        bytes,
        stored_bytes,
        modified,
    })
}
