//! Atomic commits on a local file system: write under a temporary name,
//! flush and fsync, rename into place, fsync the directory. A reader never
//! sees half a file; a crash leaves only temporary files, removed at start.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use pipewatch_schema::IN_PROGRESS_SUFFIX;

use crate::IngestError;

/// Fsyncs a directory so a rename inside it survives a power loss.
pub fn sync_dir(dir: &Path) -> Result<(), IngestError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IngestError::io(dir, e))
}

/// The temporary name a file is written under before it is committed:
/// `<name>.<pid><suffix>`, so that writers sharing a data directory (one
/// process per Kafka consumer) never take each other's temporaries for a
/// crash's leftovers.
pub(crate) fn in_progress_path(target: &Path) -> std::path::PathBuf {
    in_progress_path_of(target, std::process::id())
}

/// The temporary name process `pid` writes `target` under.
pub(crate) fn in_progress_path_of(target: &Path, pid: u32) -> std::path::PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{pid}{IN_PROGRESS_SUFFIX}"));
    target.with_file_name(name)
}

/// Whether a temporary file was left by a process that is gone.
fn abandoned(path: &Path, name: &str) -> bool {
    let writer = name
        .strip_suffix(IN_PROGRESS_SUFFIX)
        .and_then(|stem| stem.rsplit('.').next())
        .and_then(|pid| pid.parse::<u32>().ok());
    let Some(pid) = writer else {
        return true;
    };
    if pid == std::process::id() {
        return false;
    }
    process_gone(pid, path)
}

/// Whether process `pid`, which wrote `path`, has ended. Without `/proc`
/// to ask, only files older than an hour count as left by an ended process.
pub(crate) fn process_gone(pid: u32, path: &Path) -> bool {
    let proc = Path::new("/proc");
    if proc.is_dir() {
        return !proc.join(pid.to_string()).exists();
    }
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(3600))
}

/// Writes `target` atomically through `write`, which fills the temporary file.
pub(crate) fn commit_with(
    target: &Path,
    write: impl FnOnce(&mut File) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let dir = target
        .parent()
        .ok_or_else(|| IngestError::Config(format!("{} has no parent", target.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| IngestError::io(dir, e))?;
    let temporary = in_progress_path(target);
    let mut file = File::create(&temporary).map_err(|e| IngestError::io(&temporary, e))?;
    write(&mut file)?;
    file.flush().map_err(|e| IngestError::io(&temporary, e))?;
    file.sync_all()
        .map_err(|e| IngestError::io(&temporary, e))?;
    drop(file);
    std::fs::rename(&temporary, target).map_err(|e| IngestError::io(target, e))?;
    sync_dir(dir)
}

/// Writes bytes to `target` atomically.
pub fn atomic_write(target: &Path, bytes: &[u8]) -> Result<(), IngestError> {
    commit_with(target, |file| {
        file.write_all(bytes)
            .map_err(|e| IngestError::io(target, e))
    })
}

/// Removes temporary files a crash left behind anywhere under `root`
/// (those of writers still running are kept). Returns how many were removed.
pub fn clean_leftovers(root: &Path) -> Result<usize, IngestError> {
    if !root.exists() {
        return Ok(0);
    }
    let mut removed = 0;
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.map_err(|e| IngestError::Config(format!("cannot scan the lake: {e}")))?;
        let is_leftover = entry.file_type().is_file()
            && entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(IN_PROGRESS_SUFFIX) && abandoned(entry.path(), n));
        if is_leftover {
            std::fs::remove_file(entry.path()).map_err(|e| IngestError::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}
