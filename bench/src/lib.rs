//! Shared fixtures for pipewatch's benchmarks: a realistic native corpus
//! produced by the demo generator, loaded once into memory.

use std::path::Path;

use pipewatch_datasets::{GenerateOptions, generate};
use pipewatch_ingest::source::file;

/// One native input held in memory.
#[derive(Debug)]
pub struct CorpusFile {
    pub origin: String,
    pub bytes: Vec<u8>,
}

/// A generated organisation's native files, decompressed in memory.
#[derive(Debug)]
pub struct Corpus {
    pub files: Vec<CorpusFile>,
    /// Bytes of native input (decompressed).
    pub bytes: u64,
}

impl Corpus {
    /// Generates `days` of activity into `scratch` and loads it.
    pub fn generate(scratch: &Path, days: u32) -> Result<Corpus, String> {
        let options = GenerateOptions {
            days,
            ..GenerateOptions::default()
        };
        generate(&options, scratch).map_err(|e| e.to_string())?;
        let (paths, problems) = file::expand(&[scratch.to_owned()]);
        if let Some(problem) = problems.first() {
            return Err(format!("{}: {}", problem.origin, problem.reason));
        }
        let mut files = Vec::new();
        let mut bytes = 0;
        for path in paths {
            if path.file_name().is_some_and(|n| n == "labels.json") {
                continue;
            }
            let read = file::read(&path).map_err(|p| format!("{}: {}", p.origin, p.reason))?;
            bytes += read.bytes.len() as u64;
            files.push(CorpusFile {
                origin: read.origin,
                bytes: read.bytes,
            });
        }
        Ok(Corpus { files, bytes })
    }
}
