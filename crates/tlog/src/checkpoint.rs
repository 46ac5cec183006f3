//! C2SP tlog-checkpoint: the signed statement "the log `origin` has `size` leaves with
//! this `root`".
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <base64 root hash>
//! [extension lines]
//! ```

use crate::hash::Hash;
use crate::note::{self, OpenedNote, Signer, Verifiers};
use crate::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identifies the log; stele uses one per deployment and tenant.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Opaque, non-empty lines; the spec discourages them (monitors cannot audit them).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text (ends in a newline). Refuses fields that could not be read back.
    pub fn to_text(&self) -> Result<String, Error> {
        let mut text = String::new();
        for line in std::iter::once(&self.origin).chain(&self.extensions) {
            if line.is_empty() || line.contains('\n') {
                return Err(Error::MalformedCheckpoint("empty line or newline in a field"));
            }
        }
        text.push_str(&self.origin);
        text.push('\n');
        text.push_str(&self.size.to_string());
        text.push('\n');
        text.push_str(&self.root.to_base64());
        text.push('\n');
        for e in &self.extensions {
            text.push_str(e);
            text.push('\n');
        }
        note::check_text(&text)?;
        Ok(text)
    }

    /// Parses a checkpoint note text (the part before the signatures).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let body = text
            .strip_suffix('\n')
            .ok_or(Error::MalformedCheckpoint("text does not end in a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(Error::MalformedCheckpoint("fewer than three lines"));
        }
        if lines.iter().any(|l| l.is_empty()) {
            return Err(Error::MalformedCheckpoint("empty line"));
        }
        let size_s = lines[1];
        if !size_s.bytes().all(|b| b.is_ascii_digit()) || (size_s.len() > 1 && size_s.starts_with('0')) {
            return Err(Error::MalformedCheckpoint(
                "tree size is not a decimal without leading zeros",
            ));
        }
        let size = size_s
            .parse()
            .map_err(|_| Error::MalformedCheckpoint("tree size out of range"))?;
        let root = Hash::from_base64(lines[2]).map_err(|_| Error::MalformedCheckpoint("root is not a base64 hash"))?;
        Ok(Checkpoint {
            origin: lines[0].to_owned(),
            size,
            root,
            extensions: lines[3..].iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// The signed checkpoint note.
    pub async fn sign<S: Signer>(&self, signer: &S) -> Result<String, Error> {
        note::sign(&self.to_text()?, signer).await
    }
}

/// A checkpoint whose signature verified, with the note it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: OpenedNote,
}

/// Verifies a signed checkpoint note against trusted keys and checks it is for `origin`,
/// so a valid checkpoint of another log (or tenant) is not accepted in its place.
pub fn open_checkpoint(msg: &[u8], verifiers: &Verifiers, origin: &str) -> Result<SignedCheckpoint, Error> {
    let note = note::open(msg, verifiers)?;
    let checkpoint = Checkpoint::parse(&note.text)?;
    if checkpoint.origin != origin {
        return Err(Error::OriginMismatch {
            expected: origin.to_owned(),
            found: checkpoint.origin,
        });
    }
    Ok(SignedCheckpoint { checkpoint, note })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        let mut c = Checkpoint::new("example.com/log", 20852163, Hash([7; 32]));
        assert_eq!(Checkpoint::parse(&c.to_text().unwrap()).unwrap(), c);
        c.extensions.push("ext one".into());
        assert_eq!(Checkpoint::parse(&c.to_text().unwrap()).unwrap(), c);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let root = Hash([0; 32]).to_base64();
        for bad in [
            String::new(),
            format!("o\n1\n{root}"),
            "o\n1\n".to_string(),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("o\n1\n{}\n", Hash([0; 32]).to_base64().trim_end_matches('=')),
            "o\n1\nAAAA\n".to_string(),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\next\n\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(Checkpoint::parse(&format!("o\n0\n{root}\n")).unwrap().size, 0);
        assert!(Checkpoint::new("", 1, Hash::default()).to_text().is_err());
        assert!(Checkpoint::new("a\nb", 1, Hash::default()).to_text().is_err());
        assert!(Checkpoint::new("a\tb", 1, Hash::default()).to_text().is_err());
    }
}
