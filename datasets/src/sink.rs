//! Where rendered records go before they hit the disk: one buffer per
//! output file, kept sorted by event time, written plain or gzipped.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;

use crate::DatasetError;

/// NDJSON files larger than this are gzipped (and named `.gz`).
const GZIP_OVER_BYTES: usize = 256 * 1024;

/// How a file's records are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One JSON document a line.
    Lines,
    /// CloudTrail's S3 object: `{"Records":[...]}`, always gzipped.
    CloudTrail,
}

#[derive(Debug)]
struct Buffer {
    shape: Shape,
    records: Vec<(DateTime<Utc>, u64, String)>,
    /// Records beyond one per line (OTLP lines hold many spans).
    extra: u64,
}

/// The collected output of a generation run.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    buffers: BTreeMap<String, Buffer>,
    documents: BTreeMap<String, (String, u64, Option<DateTime<Utc>>)>,
    seq: u64,
}

impl Sink {
    /// Appends one record to an NDJSON file (path relative to the output dir).
    pub(crate) fn line(&mut self, file: &str, at: DateTime<Utc>, value: &Value) {
        self.push(file, Shape::Lines, at, value);
    }

    /// Appends one line that holds `records` records (an OTLP request).
    pub(crate) fn line_of(&mut self, file: &str, at: DateTime<Utc>, value: &Value, records: u64) {
        self.push(file, Shape::Lines, at, value);
        if let Some(buffer) = self.buffers.get_mut(file) {
            buffer.extra += records.saturating_sub(1);
        }
    }

    /// Appends one record to a CloudTrail file.
    pub(crate) fn cloudtrail(&mut self, file: &str, at: DateTime<Utc>, value: &Value) {
        self.push(file, Shape::CloudTrail, at, value);
    }

    fn push(&mut self, file: &str, shape: Shape, at: DateTime<Utc>, value: &Value) {
        self.seq += 1;
        let buffer = self.buffers.entry(file.to_owned()).or_insert(Buffer {
            shape,
            records: Vec::new(),
            extra: 0,
        });
        buffer.records.push((at, self.seq, value.to_string()));
    }

    /// Stores a whole document (pretty JSON) holding `records` records.
    pub(crate) fn document(
        &mut self,
        file: &str,
        value: &Value,
        records: u64,
    ) -> Result<(), DatasetError> {
        self.document_at(file, value, records, None)
    }

    /// Like [`Sink::document`], also setting the file's modification time
    /// (for formats that carry no time of their own).
    pub(crate) fn document_at(
        &mut self,
        file: &str,
        value: &Value,
        records: u64,
        modified: Option<DateTime<Utc>>,
    ) -> Result<(), DatasetError> {
        let text = serde_json::to_string_pretty(value)?;
        self.documents
            .insert(file.to_owned(), (text, records, modified));
        Ok(())
    }

    /// Records collected so far.
    pub(crate) fn len(&self) -> u64 {
        self.buffers
            .values()
            .map(|b| b.records.len() as u64 + b.extra)
            .sum()
    }

    /// Writes every file under `out`; returns each path with its record count.
    pub(crate) fn write(self, out: &Path) -> Result<Vec<(PathBuf, u64)>, DatasetError> {
        let mut written = Vec::new();
        for (name, mut buffer) in self.buffers {
            buffer.records.sort_by_key(|r| (r.0, r.1));
            let count = buffer.records.len() as u64 + buffer.extra;
            let newest = buffer.records.last().map(|r| r.0);
            let (path, bytes) = match buffer.shape {
                Shape::Lines => {
                    let mut text = String::new();
                    for (_, _, line) in &buffer.records {
                        text.push_str(line);
                        text.push('\n');
                    }
                    if text.len() > GZIP_OVER_BYTES {
                        (format!("{name}.gz"), gzip(text.as_bytes())?)
                    } else {
                        (name, text.into_bytes())
                    }
                }
                Shape::CloudTrail => {
                    let mut text = String::from("{\"Records\":[");
                    for (i, (_, _, record)) in buffer.records.iter().enumerate() {
                        if i > 0 {
                            text.push(',');
                        }
                        text.push_str(record);
                    }
                    text.push_str("]}");
                    (name, gzip(text.as_bytes())?)
                }
            };
            let saved = save(out, &path, &bytes)?;
            // Records without a time of their own (some webhooks) are dated by
            // the file's time on import, as a receiver would date a delivery:
            // keep it inside the simulated period.
            set_modified(out, &path, newest)?;
            written.push((saved, count));
        }
        for (name, (text, count, modified)) in self.documents {
            let mut bytes = text.into_bytes();
            bytes.push(b'\n');
            written.push((save(out, &name, &bytes)?, count));
            set_modified(out, &name, modified)?;
        }
        written.sort();
        Ok(written)
    }
}

fn set_modified(
    out: &Path,
    relative: &str,
    modified: Option<DateTime<Utc>>,
) -> Result<(), DatasetError> {
    let Some(t) = modified else { return Ok(()) };
    let path = out.join(relative);
    let file = fs::File::options()
        .write(true)
        .open(&path)
        .map_err(|e| DatasetError::io(&path, e))?;
    file.set_modified(t.into())
        .map_err(|e| DatasetError::io(&path, e))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, DatasetError> {
    // GzEncoder writes mtime 0 and no file name: the output is reproducible.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::new(6));
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

fn save(out: &Path, relative: &str, bytes: &[u8]) -> Result<PathBuf, DatasetError> {
    let path = out.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| DatasetError::io(parent, e))?;
    }
    fs::write(&path, bytes).map_err(|e| DatasetError::io(&path, e))?;
    Ok(PathBuf::from(relative))
}
