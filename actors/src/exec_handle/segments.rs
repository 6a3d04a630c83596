//! The segment files of the frame log: `frames/<base>.log`, where `<base>` (20 decimal
//! digits) is the position of the segment's first byte in the log's one position space.
//! A frame's position is its segment's base plus its place in the file, so positions
//! keep increasing across segments and deleting old segments changes no other position.
//!
//! Only the newest segment is written; the writer starts a new one when it is full or
//! old ([`RetentionSettings`](super::RetentionSettings)), and retention deletes old
//! ones whole. A log written before segments existed (`frames/frames.log`) becomes the
//! segment at base 0.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::record::{self, StoredFrame};

/// The file of the segment starting at `base`.
pub fn path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// The bases of the segments in `dir`, oldest first; a log from before segments
/// (`frames.log`) is renamed to the first segment. Creates the first segment when there
/// is none.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(base) = stem.parse() {
                bases.push(base);
            }
        }
    }
    bases.sort_unstable();
    let legacy = dir.join("frames.log");
    if bases.is_empty() {
        if legacy.exists() {
            std::fs::rename(&legacy, path(dir, 0))?;
            tracing::info!("frame log moved from frames.log to its first segment");
        } else {
            create(dir, 0)?;
        }
        sync_dir(dir)?;
        bases.push(0);
    }
    Ok(bases)
}

/// Creates the (empty) segment at `base`, mode 0600.
pub fn create(dir: &Path, base: u64) -> io::Result<File> {
    let path = path(dir, base);
    crate::files::private_file(&path)?;
    OpenOptions::new().read(true).append(true).open(path)
}

/// Makes the directory's entries durable: a new segment must outlive a crash as surely
/// as the frames written to it.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The open segments, for readers: base → file. Shared by the writer (which adds new
/// segments), retention (which removes deleted ones) and every reader.
#[derive(Default)]
pub struct Segments {
    files: RwLock<BTreeMap<u64, Arc<File>>>,
}

impl Segments {
    pub fn insert(&self, base: u64, file: File) {
        self.write().insert(base, Arc::new(file));
    }

    pub fn remove(&self, base: u64) {
        self.write().remove(&base);
    }

    /// The segment holding `pos` and the position within it.
    pub fn locate(&self, pos: u64) -> Option<(Arc<File>, u64)> {
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        let (base, file) = files.range(..=pos).next_back()?;
        Some((file.clone(), pos - base))
    }

    /// The record at `pos`, checked; `None` when its segment is gone (deleted by
    /// retention since the caller looked the position up).
    pub fn read_at(&self, pos: u64) -> Option<io::Result<StoredFrame>> {
        let (file, at) = self.locate(pos)?;
        Some(record::read_at(&file, at))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Arc<File>>> {
        self.files.write().unwrap_or_else(|e| e.into_inner())
    }
}
