//! C2SP tlog-proof: a receipt a tenant can check offline: leaf index, inclusion proof
//! and the signed checkpoint it leads to.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! [extra <base64>]
//! index <n>
//! <base64 hash>...
//!
//! <signed checkpoint, verbatim>
//! ```

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::checkpoint::{open_checkpoint, SignedCheckpoint};
use crate::hash::Hash;
use crate::note::Verifiers;
use crate::proof::verify_inclusion;
use crate::Error;

const HEADER: &str = "c2sp.org/tlog-proof@v1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Unauthenticated application data (stele: unused).
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            out.push_str(&h.to_base64());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = Error::MalformedProof;
        let mut rest = text
            .strip_prefix(HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or(bad("missing header"))?;
        let next_line = |rest: &mut &str| -> Result<String, Error> {
            let (line, r) = rest.split_once('\n').ok_or(bad("truncated"))?;
            *rest = r;
            Ok(line.to_owned())
        };
        let mut line = next_line(&mut rest)?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(b64).map_err(|_| bad("extra is not base64"))?);
            line = next_line(&mut rest)?;
        }
        let index_s = line.strip_prefix("index ").ok_or(bad("missing index line"))?;
        if index_s.is_empty()
            || !index_s.bytes().all(|b| b.is_ascii_digit())
            || (index_s.len() > 1 && index_s.starts_with('0'))
        {
            return Err(bad("index is not a decimal without leading zeros"));
        }
        let index = index_s.parse().map_err(|_| bad("index out of range"))?;
        let mut proof = Vec::new();
        loop {
            let line = next_line(&mut rest)?;
            if line.is_empty() {
                break;
            }
            proof.push(Hash::from_base64(&line).map_err(|_| bad("proof line is not a base64 hash"))?);
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: rest.to_owned(),
        })
    }

    /// Verifies the checkpoint's signature and origin, then that `leaf` is at `index` in it.
    pub fn verify(&self, leaf: &Hash, verifiers: &Verifiers, origin: &str) -> Result<SignedCheckpoint, Error> {
        let signed = open_checkpoint(self.checkpoint.as_bytes(), verifiers, origin)?;
        verify_inclusion(
            self.index,
            signed.checkpoint.size,
            leaf,
            &self.proof,
            &signed.checkpoint.root,
        )?;
        Ok(signed)
    }
}
