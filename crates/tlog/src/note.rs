//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, compatible with
//! golang.org/x/mod/sumdb/note: the same key IDs, vkey and private-key text forms.
//!
//! ```text
//! <text ending in a newline>
//!
//! — <key name> base64(key ID (4 bytes, big-endian) || signature)
//! ```
//!
//! `key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]`.

use std::future::Future;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::Error;

/// Signature type byte for Ed25519 (C2SP signed-note "Signature types").
pub const ALG_ED25519: u8 = 0x01;
/// Signature lines accepted per note (C2SP requires at least 16; Go's reader allows 100).
pub const MAX_SIGNATURES: usize = 100;

const SIG_PREFIX: &str = "\u{2014} ";

/// `SHA-256(name || "\n" || alg || public key)[:4]`, big-endian.
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Key names are non-empty, without Unicode spaces or `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Note bytes must be UTF-8 without control characters other than newline.
fn check_note_chars(b: &[u8]) -> Result<&str, Error> {
    let s = std::str::from_utf8(b).map_err(|_| Error::MalformedNote("not UTF-8"))?;
    if s.chars().any(|c| c < '\u{20}' && c != '\n') {
        return Err(Error::MalformedNote("control character"));
    }
    Ok(s)
}

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The signature proper, without the key ID.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// `— name base64(key ID || signature)` and a newline.
    pub fn line(&self) -> String {
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }
}

/// A note split into text and signature lines; nothing verified yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note; refuses anything not exactly in the C2SP form.
    pub fn parse(msg: &[u8]) -> Result<Note, Error> {
        let msg = check_note_chars(msg)?;
        // The text ends at the last blank line.
        let split = msg
            .rfind("\n\n")
            .ok_or(Error::MalformedNote("no blank line before signatures"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if sigs.is_empty() {
            return Err(Error::MalformedNote("no signatures"));
        }
        if !sigs.ends_with('\n') {
            return Err(Error::MalformedNote("signature block does not end in a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(Error::MalformedNote("too many signatures"));
            }
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(Error::MalformedNote("line is not a signature"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or(Error::MalformedNote("signature line has no space"))?;
            if !is_valid_key_name(name) {
                return Err(Error::MalformedNote("invalid key name"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| Error::MalformedNote("signature is not base64"))?;
            if raw.len() < 5 {
                return Err(Error::MalformedNote("signature too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                signature: raw[4..].to_vec(),
            });
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note's bytes: text, blank line, signature lines.
    pub fn render(&self) -> Result<String, Error> {
        check_text(&self.text)?;
        if self.signatures.is_empty() {
            return Err(Error::MalformedNote("no signatures"));
        }
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            if !is_valid_key_name(&s.name) {
                return Err(Error::MalformedNote("invalid key name"));
            }
            out.push_str(&s.line());
        }
        Ok(out)
    }
}

/// A note text must end in a newline and be valid note characters.
pub fn check_text(text: &str) -> Result<(), Error> {
    if !text.ends_with('\n') {
        return Err(Error::MalformedNote("text does not end in a newline"));
    }
    check_note_chars(text.as_bytes()).map(|_| ())
}

/// A note whose text has at least one valid signature from a trusted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedNote {
    pub text: String,
    /// Signatures from trusted keys, each verified (one per key).
    pub verified: Vec<NoteSignature>,
    /// Signatures from keys not in the verifier set, ignored (e.g. witnesses).
    pub unverified: Vec<NoteSignature>,
}

/// Parses and verifies a note. Signatures from unknown keys are ignored (the same name
/// with another key ID is another key); any invalid signature from a known key rejects the
/// whole note; a note with no valid signature from a known key is rejected.
pub fn open(msg: &[u8], verifiers: &Verifiers) -> Result<OpenedNote, Error> {
    let note = Note::parse(msg)?;
    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut unverified: Vec<NoteSignature> = Vec::new();
    for sig in note.signatures {
        match verifiers.find(&sig.name, sig.key_id)? {
            None => {
                if !unverified.contains(&sig) {
                    unverified.push(sig);
                }
            }
            Some(v) => {
                if verified.iter().any(|s| s.name == sig.name && s.key_id == sig.key_id) {
                    continue;
                }
                if !v.verify(note.text.as_bytes(), &sig.signature) {
                    return Err(Error::InvalidSignature {
                        name: sig.name,
                        key_id: sig.key_id,
                    });
                }
                verified.push(sig);
            }
        }
    }
    if verified.is_empty() {
        return Err(Error::NoTrustedSignature {
            keys: unverified
                .iter()
                .map(|s| format!("{}+{:08x}", s.name, s.key_id))
                .collect(),
        });
    }
    Ok(OpenedNote {
        text: note.text,
        verified,
        unverified,
    })
}

/// Signs note texts: an Ed25519 key here, AWS KMS in production. Async because a
/// remote signer is.
pub trait Signer: Send + Sync {
    /// The key name written on the signature line.
    fn name(&self) -> &str;
    /// The key ID written before the signature.
    fn key_id(&self) -> u32;
    /// The raw signature of `msg` (64 bytes for Ed25519).
    fn sign(&self, msg: &[u8]) -> impl Future<Output = Result<Vec<u8>, Error>> + Send;
}

/// Signs `text` (which must end in a newline): the whole signed note.
pub async fn sign<S: Signer>(text: &str, signer: &S) -> Result<String, Error> {
    check_text(text)?;
    if !is_valid_key_name(signer.name()) {
        return Err(Error::MalformedKey("invalid key name"));
    }
    let signature = signer.sign(text.as_bytes()).await?;
    let sig = NoteSignature {
        name: signer.name().to_owned(),
        key_id: signer.key_id(),
        signature,
    };
    Note {
        text: text.to_owned(),
        signatures: vec![sig],
    }
    .render()
}

/// Checks signatures by one key.
pub trait Verifier: Send + Sync {
    fn name(&self) -> &str;
    fn key_id(&self) -> u32;
    fn verify(&self, msg: &[u8], signature: &[u8]) -> bool;
}

/// The trusted keys, looked up by (name, key ID).
#[derive(Default)]
pub struct Verifiers(Vec<Box<dyn Verifier>>);

impl Verifiers {
    pub fn new(list: Vec<Box<dyn Verifier>>) -> Self {
        Verifiers(list)
    }

    /// From vkey strings.
    pub fn from_vkeys<'a>(vkeys: impl IntoIterator<Item = &'a str>) -> Result<Self, Error> {
        let mut list: Vec<Box<dyn Verifier>> = Vec::new();
        for v in vkeys {
            list.push(Box::new(Ed25519Verifier::from_vkey(v)?));
        }
        Ok(Verifiers(list))
    }

    fn find(&self, name: &str, key_id: u32) -> Result<Option<&dyn Verifier>, Error> {
        let mut hits = self.0.iter().filter(|v| v.name() == name && v.key_id() == key_id);
        let first = hits.next();
        if hits.next().is_some() {
            return Err(Error::AmbiguousKey {
                name: name.to_owned(),
                key_id,
            });
        }
        Ok(first.map(|b| b.as_ref()))
    }
}

/// An Ed25519 public key with its note name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Ed25519Verifier {
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, Error> {
        if !is_valid_key_name(name) {
            return Err(Error::MalformedKey("invalid key name"));
        }
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| Error::MalformedKey("not an Ed25519 public key"))?;
        Ok(Ed25519Verifier {
            name: name.to_owned(),
            key_id: key_id(name, ALG_ED25519, public_key),
            key,
        })
    }

    /// Parses `<name>+<hex key ID>+<base64(0x01 || public key)>`; the key ID must match.
    pub fn from_vkey(vkey: &str) -> Result<Self, Error> {
        let (name, rest) = vkey.split_once('+').ok_or(Error::MalformedKey("vkey has no '+'"))?;
        let (id_hex, key_b64) = rest.split_once('+').ok_or(Error::MalformedKey("vkey has no key"))?;
        let id = parse_key_id(id_hex)?;
        let raw = B64
            .decode(key_b64)
            .map_err(|_| Error::MalformedKey("key is not base64"))?;
        let (&alg, key) = raw.split_first().ok_or(Error::MalformedKey("empty key"))?;
        if !is_valid_key_name(name) {
            return Err(Error::MalformedKey("invalid key name"));
        }
        if key_id(name, alg, key) != id {
            return Err(Error::KeyIdMismatch);
        }
        if alg != ALG_ED25519 {
            return Err(Error::UnknownAlgorithm(alg));
        }
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| Error::MalformedKey("Ed25519 key is not 32 bytes"))?;
        Self::new(name, key)
    }

    /// The vkey text form, to publish next to the checkpoints.
    pub fn vkey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }
}

impl Verifier for Ed25519Verifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

fn parse_key_id(s: &str) -> Result<u32, Error> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(Error::MalformedKey("key ID is not 8 lowercase hex digits"));
    }
    u32::from_str_radix(s, 16).map_err(|_| Error::MalformedKey("key ID is not hex"))
}

/// An Ed25519 private key with its note name: for `stele dev`, tests and key files.
///
/// The key file holds the Go `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`
/// form, so keys work with the Go note tooling too.
pub struct Ed25519Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl Ed25519Signer {
    /// From a 32-byte seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, Error> {
        if !is_valid_key_name(name) {
            return Err(Error::MalformedKey("invalid key name"));
        }
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, ALG_ED25519, key.verifying_key().as_bytes());
        Ok(Ed25519Signer {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// A new random key (from the operating system's CSPRNG via `rand`).
    pub fn generate(name: &str) -> Result<Self, Error> {
        use rand::RngCore as _;
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Self::from_seed(name, &seed)
    }

    /// Parses the private-key text form; the key ID must match the derived public key.
    pub fn from_skey(skey: &str) -> Result<Self, Error> {
        let skey = skey.trim_end_matches(['\n', '\r']);
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(Error::MalformedKey("not a PRIVATE+KEY"))?;
        let (name, rest) = rest
            .split_once('+')
            .ok_or(Error::MalformedKey("private key has no key ID"))?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or(Error::MalformedKey("private key has no key"))?;
        let id = parse_key_id(id_hex)?;
        let raw = B64
            .decode(key_b64)
            .map_err(|_| Error::MalformedKey("key is not base64"))?;
        let (&alg, seed) = raw.split_first().ok_or(Error::MalformedKey("empty key"))?;
        if alg != ALG_ED25519 {
            return Err(Error::UnknownAlgorithm(alg));
        }
        let seed: &[u8; 32] = seed
            .try_into()
            .map_err(|_| Error::MalformedKey("Ed25519 seed is not 32 bytes"))?;
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != id {
            return Err(Error::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// The private-key text form (secret: write it with owner-only permissions).
    pub fn skey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Ed25519Verifier {
        Ed25519Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs without going through the async trait.
    pub fn sign_now(&self, msg: &[u8]) -> Vec<u8> {
        self.key.sign(msg).to_bytes().to_vec()
    }

    /// Signs a note text synchronously (local key: nothing to wait for).
    pub fn sign_note(&self, text: &str) -> Result<String, Error> {
        check_text(text)?;
        Note {
            text: text.to_owned(),
            signatures: vec![NoteSignature {
                name: self.name.clone(),
                key_id: self.key_id,
                signature: self.sign_now(text.as_bytes()),
            }],
        }
        .render()
    }
}

impl Signer for Ed25519Signer {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn sign(&self, msg: &[u8]) -> impl Future<Output = Result<Vec<u8>, Error>> + Send {
        std::future::ready(Ok(self.sign_now(msg)))
    }
}
