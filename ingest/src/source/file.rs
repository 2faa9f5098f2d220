//! File import: expands paths (files, directories recursively in name
//! order, `-` for standard input), opens each as a stream (or reads it
//! whole), gunzips it as it reads when needed, and records its
//! modification time as the observation time.

use std::cell::Cell;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use chrono::{DateTime, Utc};

use crate::compression::gunzip_stream_if_needed;
use crate::pipeline::{Reopen, StreamedInput};

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

/// Reads one expanded path (or standard input for `-`) whole,
/// decompressing gzip.
pub fn read(path: &Path) -> Result<FileInput, Unreadable> {
    let opened = open(path)?;
    let fail = |e: std::io::Error| Unreadable {
        origin: opened.origin.clone(),
        reason: e.to_string(),
    };
    let mut bytes = Vec::new();
    opened
        .stream()
        .and_then(|mut stream| stream.reader.read_to_end(&mut bytes))
        .map_err(fail)?;
    Ok(FileInput {
        stored_bytes: opened.stored_read(),
        origin: opened.origin,
        bytes,
        modified: opened.modified,
    })
}

/// A file (or standard input) opened to be read as a stream.
#[derive(Debug)]
pub struct OpenedFile {
    /// The path as given, or `stdin`.
    pub origin: String,
    /// The file's path; `None` for standard input, which cannot be read twice.
    path: Option<PathBuf>,
    /// Size on disk, before decompression, where known.
    pub stored_bytes: Option<u64>,
    pub modified: Option<DateTime<Utc>>,
    /// Bytes as stored (compressed or not) read so far.
    stored_read: Rc<Cell<u64>>,
}

/// Opens one expanded path (or standard input for `-`) to be streamed.
pub fn open(path: &Path) -> Result<OpenedFile, Unreadable> {
    if path.as_os_str() == "-" {
        return Ok(OpenedFile {
            origin: "stdin".to_owned(),
            path: None,
            stored_bytes: None,
            modified: None,
            stored_read: Rc::default(),
        });
    }
    let origin = path.display().to_string();
    let metadata = std::fs::metadata(path).map_err(|e| Unreadable {
        origin: origin.clone(),
        reason: e.to_string(),
    })?;
    if metadata.is_dir() {
        return Err(Unreadable {
            origin,
            reason: "is a directory".to_owned(),
        });
    }
    Ok(OpenedFile {
        origin,
        path: Some(path.to_owned()),
        stored_bytes: Some(metadata.len()),
        modified: metadata.modified().ok().map(DateTime::<Utc>::from),
        stored_read: Rc::default(),
    })
}

impl OpenedFile {
    /// The content as a stream, decompressed when it is gzip, with a way to
    /// read it again for formats that need two passes.
    pub fn stream(&self) -> std::io::Result<StreamedInput<'_>> {
        let count = Rc::clone(&self.stored_read);
        let reader = match &self.path {
            Some(path) => gunzip_stream_if_needed(Counted {
                inner: File::open(path)?,
                count,
            })?,
            None => gunzip_stream_if_needed(Counted {
                inner: std::io::stdin(),
                count,
            })?,
        };
        let reopen = self.path.clone().map(|path| {
            Box::new(move || gunzip_stream_if_needed(File::open(&path)?)) as Reopen<'_>
        });
        Ok(StreamedInput {
            origin: &self.origin,
            type_hint: None,
            observed_at: self.modified,
            reader,
            reopen,
        })
    }

    /// Bytes as stored on disk (compressed or not) read so far.
    pub fn stored_read(&self) -> u64 {
        self.stored_read.get()
    }
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::{IngestError, Ingestor, Input};

    fn vault_lines(count: usize) -> String {
        (0..count)
            .map(|i| {
                let line = serde_json::json!({
                    "time": "2024-05-01T10:00:00Z", "type": "response",
                    "auth": {"accessor": format!("hmac-sha256:{i:04}")},
                    "request": {"id": format!("req-{i}"), "path": "kv/data/app", "operation": "read"},
                });
                format!("{line}\n")
            })
            .collect()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("compress");
        encoder.finish().expect("compress")
    }

    /// Accepted events and the event files' bytes after `ingest` ran.
    fn lake_after(
        ingest: impl FnOnce(&mut Ingestor) -> Result<(), IngestError>,
    ) -> (usize, Result<(), IngestError>, Vec<Vec<u8>>) {
        lake_after_in_pieces_of(2048, ingest)
    }

    /// [`lake_after`] with pieces of `piece_bytes`.
    fn lake_after_in_pieces_of(
        piece_bytes: usize,
        ingest: impl FnOnce(&mut Ingestor) -> Result<(), IngestError>,
    ) -> (usize, Result<(), IngestError>, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ingestor = Ingestor::open(dir.path())
            .expect("open")
            .with_piece_bytes(piece_bytes)
            .with_decode_threads(2);
        let result = ingest(&mut ingestor);
        let accepted = ingestor.finish().expect("finish").total().accepted;
        let mut files: Vec<_> = walkdir::WalkDir::new(dir.path().join("events"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            .map(|e| std::fs::read(e.path()).expect("read"))
            .collect();
        files.sort();
        (accepted, result, files)
    }

    #[test]
    fn a_gzip_file_streamed_in_pieces_stores_what_it_holds() {
        let body = vault_lines(400);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log.gz");
        let compressed = gzip(body.as_bytes());
        std::fs::write(&path, &compressed).expect("write");

        let origin = path.display().to_string();
        let (in_memory, _, memory_files) = lake_after(|i| {
            i.ingest(None, &Input::new(&origin, body.as_bytes()))
                .map(drop)
        });
        let opened = open(&path).expect("open");
        let mut progress = Vec::new();
        let (streamed, result, streamed_files) = lake_after(|i| {
            i.ingest_stream(None, opened.stream().expect("open"), |_| {
                progress.push(opened.stored_read())
            })
            .map(drop)
        });
        result.expect("streamed");
        assert_eq!(in_memory, 400);
        assert_eq!(streamed, 400);
        assert_eq!(streamed_files, memory_files);
        assert!(progress.len() > 10, "{} pieces", progress.len());
        assert!(progress.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(opened.stored_read(), compressed.len() as u64);
    }

    #[test]
    fn a_truncated_gzip_file_keeps_the_records_before_the_cut() {
        assert_truncated_gzip_keeps_the_records_before_the_cut(2048);
    }

    #[test]
    fn a_truncated_gzip_file_smaller_than_a_piece_keeps_the_records_before_the_cut() {
        assert_truncated_gzip_keeps_the_records_before_the_cut(crate::pipeline::PIECE_BYTES);
    }

    fn assert_truncated_gzip_keeps_the_records_before_the_cut(piece_bytes: usize) {
        let body = vault_lines(2000);
        assert!(body.len() < crate::pipeline::PIECE_BYTES);
        let compressed = gzip(body.as_bytes());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log.gz");
        std::fs::write(&path, &compressed[..compressed.len() / 2]).expect("write");
        let opened = open(&path).expect("open");
        let (accepted, result, _) = lake_after_in_pieces_of(piece_bytes, |i| {
            i.ingest_stream(None, opened.stream().expect("open"), |_| {})
                .map(drop)
        });
        match result {
            Err(IngestError::Read {
                origin, kept_bytes, ..
            }) => {
                assert_eq!(origin, path.display().to_string());
                assert!(kept_bytes > 0 && kept_bytes < body.len() as u64);
            }
            other => panic!("expected a read error, got {other:?}"),
        }
        assert!(accepted > 100 && accepted < 2000, "{accepted} stored");
    }

    #[test]
    fn directories_and_missing_files_are_refused_before_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            open(dir.path()).expect_err("a directory").reason,
            "is a directory"
        );
        let missing = open(&dir.path().join("nope.ndjson")).expect_err("missing");
        assert!(
            missing.reason.contains("No such file"),
            "{}",
            missing.reason
        );
    }
}
