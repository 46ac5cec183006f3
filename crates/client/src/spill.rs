//! The spill file: batches the API could not take, kept on disk until it can.
//!
//! One line per batch, `<event count> <request body JSON>\n`, appended and
//! synced. The bodies carry their event ids, so a batch replayed after it was
//! in fact delivered is deduplicated by the store. A last line cut short by a
//! crash is cut off when the file is opened, so the next append starts on a
//! line of its own; any other unreadable line is skipped on replay. Both are
//! counted in [`crate::Stats::spill_lines_dropped`]. The file never grows past its limit;
//! batches that do not fit are dropped with reason `spill_full`.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

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
    /// The file may end in a torn line that could not be cut at open: the next
    /// append starts with a newline so that it is not merged into it.
    unsure_tail: bool,
}

impl Spill {
    /// Open (not create) the spill file, learning its current size and cutting
    /// a last line that a crash left without its newline (a torn append).
    /// Returns the spill and how many lines were cut (0 or 1).
    pub async fn open(config: SpillConfig) -> (Spill, usize) {
        match cut_torn_tail(&config.path).await {
            Ok((size, cut)) => (
                Spill {
                    config,
                    size,
                    unsure_tail: false,
                },
                cut,
            ),
            Err(e) => {
                tracing::warn!(error = %e, path = %config.path.display(), "cannot check the spill file's last line");
                let size = tokio::fs::metadata(&config.path).await.map(|m| m.len()).unwrap_or(0);
                let spill = Spill {
                    config,
                    size,
                    unsure_tail: size > 0,
                };
                (spill, 0)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn path(&self) -> &Path {
        &self.config.path
    }

    pub async fn append(&mut self, events: usize, body: &[u8]) -> Result<(), AppendError> {
        let mut line = Vec::with_capacity(body.len() + 24);
        if self.unsure_tail {
            line.push(b'\n');
        }
        line.extend_from_slice(format!("{events} ").as_bytes());
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
        let written = async {
            file.write_all(&line).await?;
            file.sync_data().await?;
            if self.size == 0 {
                // The file may have just been created: make its name durable too.
                sync_dir(&self.config.path).await?;
            }
            Ok::<(), io::Error>(())
        }
        .await;
        if let Err(e) = written {
            // Take back whatever part of the line got in, so that the file still
            // ends on a whole line; the events are counted as dropped.
            if file.set_len(self.size).await.is_err() {
                self.unsure_tail = true;
            }
            return Err(AppendError::Io(e));
        }
        self.size += line.len() as u64;
        self.unsure_tail = false;
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
                Ok(()) => sync_dir(&self.config.path).await?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.size = 0;
            self.unsure_tail = false;
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
        self.unsure_tail = false;
        // Without this a crash could bring back the old file (replayed again,
        // deduplicated by the store) or lose the new one.
        sync_dir(&self.config.path).await?;
        Ok(())
    }
}

/// Cut the file after its last newline, if anything follows it: an append the
/// process did not finish (a crash, a full disk). Left in place, the next
/// append would be glued to it and both lines would fail to parse.
/// Returns the file's size afterwards and the number of lines cut.
async fn cut_torn_tail(path: &Path) -> io::Result<(u64, usize)> {
    let mut file = match tokio::fs::OpenOptions::new().read(true).write(true).open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let len = file.metadata().await?.len();
    // Search backwards, a chunk at a time, for the last newline.
    let mut end = len;
    let mut keep = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let piece = &mut chunk[..(end - start) as usize];
        file.seek(io::SeekFrom::Start(start)).await?;
        file.read_exact(piece).await?;
        if let Some(i) = piece.iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if keep == len {
        return Ok((len, 0));
    }
    file.set_len(keep).await?;
    file.sync_data().await?;
    Ok((keep, 1))
}

/// Make a create, rename or remove in the file's directory durable.
async fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        tokio::fs::File::open(dir).await?.sync_all().await?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
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
        let (mut spill, torn) = Spill::open(SpillConfig::new(&path).max_bytes(60)).await;
        assert!(spill.is_empty());
        assert_eq!(torn, 0);
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
        let (mut again, torn) = Spill::open(SpillConfig::new(&path).max_bytes(60)).await;
        assert!(!again.is_empty());
        assert_eq!(torn, 0);
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

    #[tokio::test]
    async fn a_crash_at_any_byte_of_the_last_append_loses_only_that_line() {
        let path = temp_path("torn");
        let bodies: [&[u8]; 3] = [
            br#"{"events":[{"event_id":"a"}]}"#,
            br#"{"events":[{"event_id":"b"},{"event_id":"c"}]}"#,
            br#"{"events":[{"event_id":"d"},{"event_id":"e"},{"event_id":"f"}]}"#,
        ];
        let (mut spill, _) = Spill::open(SpillConfig::new(&path)).await;
        for (i, body) in bodies.iter().enumerate() {
            spill.append(i + 1, body).await.unwrap();
        }
        let whole = std::fs::read(&path).unwrap();
        let last_starts = whole.len() - ("3 ".len() + bodies[2].len() + 1);
        let before: Vec<Spilled> = spill.load().await.unwrap().0[..2].to_vec();
        let next = Spilled {
            events: 1,
            body: br#"{"events":[{"event_id":"g"}]}"#.to_vec(),
        };
        // Every length from "the last record not begun" to "all but its newline".
        for cut in last_starts..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let (mut spill, torn) = Spill::open(SpillConfig::new(&path)).await;
            let expect_torn = usize::from(cut > last_starts);
            assert_eq!(torn, expect_torn, "cut at byte {cut}");
            spill.append(next.events, &next.body).await.unwrap();
            let (batches, corrupt) = spill.load().await.unwrap();
            let mut expected = before.clone();
            expected.push(next.clone());
            assert_eq!(batches, expected, "cut at byte {cut}");
            assert_eq!(corrupt, 0, "cut at byte {cut}");
            // The size the spill keeps matches the file, so the limit holds.
            assert_eq!(spill.size, std::fs::metadata(&path).unwrap().len());
        }
        // A file that is nothing but a torn line.
        std::fs::write(&path, b"3 {\"ev").unwrap();
        let (spill, torn) = Spill::open(SpillConfig::new(&path)).await;
        assert_eq!((torn, spill.is_empty()), (1, true));
        std::fs::remove_file(&path).unwrap();
    }
}
