//! The spill file: batches the API could not take, kept on disk until it can.
//!
//! One line per batch, `<event count> <request body JSON>\n`, appended and
//! synced. The bodies carry their event ids, so a batch replayed after it was
//! in fact delivered is deduplicated by the store. A line cut short by a crash
//! is skipped on replay (and counted). The file never grows past its limit;
//! batches that do not fit are dropped with reason `spill_full`.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

/// Where to spill and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillConfig {
    pub path: PathBuf,
    /// The file's size limit in bytes.
    pub max_bytes: u64,
}

impl SpillConfig {
    /// A spill file at `path` limited to 64 MiB.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: 64 * 1024 * 1024,
        }
    }

    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }
}

#[derive(Debug)]
pub(crate) enum AppendError {
    Full,
    Io(io::Error),
}

/// A batch read back from the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spilled {
    pub events: usize,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Spill {
    config: SpillConfig,
    size: u64,
}

impl Spill {
    /// Open (not create) the spill file, learning its current size.
    pub async fn open(config: SpillConfig) -> Spill {
        let size = tokio::fs::metadata(&config.path).await.map(|m| m.len()).unwrap_or(0);
        Spill { config, size }
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn path(&self) -> &Path {
        &self.config.path
    }

    pub async fn append(&mut self, events: usize, body: &[u8]) -> Result<(), AppendError> {
        let mut line = format!("{events} ").into_bytes();
        line.extend_from_slice(body);
        line.push(b'\n');
        if self.size + line.len() as u64 > self.config.max_bytes {
            return Err(AppendError::Full);
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.path)
            .await
            .map_err(AppendError::Io)?;
        file.write_all(&line).await.map_err(AppendError::Io)?;
        file.sync_data().await.map_err(AppendError::Io)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Every whole batch in the file, oldest first, and how many lines were unreadable.
    pub async fn load(&self) -> io::Result<(Vec<Spilled>, usize)> {
        let raw = match tokio::fs::read(&self.config.path).await {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e),
        };
        Ok(parse(&raw))
    }

    /// Replace the file's content with `batches` (empty: remove it), atomically.
    pub async fn rewrite(&mut self, batches: &[Spilled]) -> io::Result<()> {
        if batches.is_empty() {
            match tokio::fs::remove_file(&self.config.path).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.size = 0;
            return Ok(());
        }
        let mut out = Vec::new();
        for b in batches {
            out.extend_from_slice(format!("{} ", b.events).as_bytes());
            out.extend_from_slice(&b.body);
            out.push(b'\n');
        }
        let mut tmp = self.config.path.clone().into_os_string();
        tmp.push(".tmp");
        let mut file = tokio::fs::File::create(&tmp).await?;
        file.write_all(&out).await?;
        file.sync_data().await?;
        drop(file);
        tokio::fs::rename(&tmp, &self.config.path).await?;
        self.size = out.len() as u64;
        Ok(())
    }
}

fn parse(raw: &[u8]) -> (Vec<Spilled>, usize) {
    let mut batches = Vec::new();
    let mut corrupt = 0;
    let mut lines = raw.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        if line.is_empty() {
            continue;
        }
        // The final piece has no newline: the write of that line never finished.
        let parsed = if last { None } else { parse_line(line) };
        match parsed {
            Some(b) => batches.push(b),
            None => corrupt += 1,
        }
    }
    (batches, corrupt)
}

fn parse_line(line: &[u8]) -> Option<Spilled> {
    let space = line.iter().position(|b| *b == b' ')?;
    let events: usize = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
    let body = &line[space + 1..];
    // Only whole JSON documents are replayed; a torn line is not.
    serde_json::from_slice::<serde::de::IgnoredAny>(body).ok()?;
    Some(Spilled {
        events,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "stele-client-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7()
        ))
    }

    #[tokio::test]
    async fn batches_come_back_in_order_and_the_limit_holds() {
        let path = temp_path("order");
        let mut spill = Spill::open(SpillConfig::new(&path).max_bytes(60)).await;
        assert!(spill.is_empty());
        spill.append(2, br#"{"events":[1,2]}"#).await.unwrap();
        spill.append(1, br#"{"events":[3]}"#).await.unwrap();
        assert!(matches!(
            spill.append(9, br#"{"events":[4,5,6,7,8,9,10,11,12]}"#).await,
            Err(AppendError::Full)
        ));
        let (batches, corrupt) = spill.load().await.unwrap();
        assert_eq!(corrupt, 0);
        assert_eq!(batches.iter().map(|b| b.events).collect::<Vec<_>>(), vec![2, 1]);
        // Reopening (a new process) sees the same size and content.
        let mut again = Spill::open(SpillConfig::new(&path).max_bytes(60)).await;
        assert!(!again.is_empty());
        again.rewrite(&batches[1..]).await.unwrap();
        assert_eq!(again.load().await.unwrap().0, batches[1..].to_vec());
        again.rewrite(&[]).await.unwrap();
        assert!(again.is_empty());
        assert!(!path.exists());
    }

    #[test]
    fn a_torn_or_garbled_line_is_skipped_and_counted() {
        let raw = b"1 {\"events\":[1]}\nx {}\n2 {\"events\":[1,\n1 {\"events\":[2]}\n1 {\"eve";
        let (batches, corrupt) = parse(raw);
        assert_eq!(batches.len(), 2);
        assert_eq!(corrupt, 3);
    }
}
