//! The log's signing key behind stele-tlog's [`Signer`] port: a key file (`stele dev`,
//! tests) or an AWS KMS Ed25519 key (production; the private key never leaves KMS).

use std::future::Future;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use stele_tlog::note::Signer;
use stele_tlog::{Ed25519Signer, Ed25519Verifier};

use crate::config::SignerSource;
use crate::Error;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the 32-byte public key.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The raw Ed25519 public key in a SubjectPublicKeyInfo (what KMS GetPublicKey returns).
pub fn ed25519_from_spki(der: &[u8]) -> Result<[u8; 32], Error> {
    match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(key) if key.len() == 32 => Ok(key.try_into().expect("32 bytes")),
        _ => Err(Error::Signer(format!(
            "the public key is not an Ed25519 SubjectPublicKeyInfo ({} bytes of DER)",
            der.len()
        ))),
    }
}

/// Signs with an AWS KMS key of spec ECC_NIST_EDWARDS25519 (pure Ed25519,
/// ED25519_SHA_512 over the raw message): the note signature is a standard Ed25519
/// signature, checked with the verifier derived from the key's public half.
#[derive(Clone)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    verifier: Ed25519Verifier,
}

impl std::fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsSigner").field("key_id", &self.key_id).finish()
    }
}

impl KmsSigner {
    /// Reads the key's public half (GetPublicKey) and checks it can sign Ed25519 notes.
    /// `name` is the note key name (the deployment's origin).
    pub async fn new(client: aws_sdk_kms::Client, key_id: &str, name: &str) -> Result<Self, Error> {
        let out = client.get_public_key().key_id(key_id).send().await.map_err(|e| {
            Error::Signer(format!(
                "KMS GetPublicKey of {key_id}: {}",
                aws_sdk_kms::error::DisplayErrorContext(&e)
            ))
        })?;
        let spec = out.key_spec().cloned();
        if spec != Some(KeySpec::EccNistEdwards25519) {
            return Err(Error::Signer(format!(
                "KMS key {key_id} has key spec {}, the log needs ECC_NIST_EDWARDS25519 (Ed25519 note signatures)",
                spec.map(|s| s.to_string()).unwrap_or_else(|| "(none)".into())
            )));
        }
        if out.key_usage() != Some(&KeyUsageType::SignVerify) {
            return Err(Error::Signer(format!("KMS key {key_id} is not a SIGN_VERIFY key")));
        }
        let der = out
            .public_key()
            .ok_or_else(|| Error::Signer(format!("KMS GetPublicKey of {key_id} returned no key")))?;
        let public = ed25519_from_spki(der.as_ref())?;
        let verifier = Ed25519Verifier::new(name, &public)?;
        Ok(KmsSigner {
            client,
            key_id: key_id.to_string(),
            verifier,
        })
    }

    pub fn verifier(&self) -> &Ed25519Verifier {
        &self.verifier
    }
}

impl Signer for KmsSigner {
    fn name(&self) -> &str {
        stele_tlog::Verifier::name(&self.verifier)
    }
    fn key_id(&self) -> u32 {
        stele_tlog::Verifier::key_id(&self.verifier)
    }
    fn sign(&self, msg: &[u8]) -> impl Future<Output = Result<Vec<u8>, stele_tlog::Error>> + Send {
        let request = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(msg))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::Ed25519Sha512);
        let key_id = self.key_id.clone();
        async move {
            let out = request.send().await.map_err(|e| {
                stele_tlog::Error::Signer(
                    format!(
                        "KMS Sign with {key_id}: {}",
                        aws_sdk_kms::error::DisplayErrorContext(&e)
                    )
                    .into(),
                )
            })?;
            let sig = out.signature().ok_or_else(|| {
                stele_tlog::Error::Signer(format!("KMS Sign with {key_id} returned no signature").into())
            })?;
            Ok(sig.as_ref().to_vec())
        }
    }
}

/// The configured signer.
#[derive(Debug)]
pub enum LogSigner {
    File(Ed25519Signer),
    Kms(KmsSigner),
}

impl LogSigner {
    /// The signer `source` names; `name` is the note key name (the deployment origin).
    pub async fn load(
        source: &SignerSource,
        name: &str,
        kms: impl FnOnce() -> aws_sdk_kms::Client,
    ) -> Result<Self, Error> {
        match source {
            SignerSource::KeyFile(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Signer(format!("STELE_LOG_SIGNING_KEY_FILE {}: {e}", path.display())))?;
                let signer = Ed25519Signer::from_skey(&text).map_err(|e| {
                    Error::Signer(format!(
                        "STELE_LOG_SIGNING_KEY_FILE {}: not a note private key: {e}",
                        path.display()
                    ))
                })?;
                if signer.name() != name {
                    return Err(Error::Signer(format!(
                        "STELE_LOG_SIGNING_KEY_FILE {}: the key is named `{}`, STELE_LOG_ORIGIN is `{name}`",
                        path.display(),
                        signer.name()
                    )));
                }
                Ok(LogSigner::File(signer))
            }
            SignerSource::Kms(key_id) => Ok(LogSigner::Kms(KmsSigner::new(kms(), key_id, name).await?)),
        }
    }

    /// The verifier key to publish (`log.vkey`).
    pub fn vkey(&self) -> String {
        match self {
            LogSigner::File(s) => s.verifier().vkey(),
            LogSigner::Kms(s) => s.verifier().vkey(),
        }
    }
}

impl Signer for LogSigner {
    fn name(&self) -> &str {
        match self {
            LogSigner::File(s) => s.name(),
            LogSigner::Kms(s) => s.name(),
        }
    }
    fn key_id(&self) -> u32 {
        match self {
            LogSigner::File(s) => Signer::key_id(s),
            LogSigner::Kms(s) => Signer::key_id(s),
        }
    }
    async fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, stele_tlog::Error> {
        match self {
            LogSigner::File(s) => s.sign(msg).await,
            LogSigner::Kms(s) => s.sign(msg).await,
        }
    }
}

/// A new key file's text (`stele dev`): a fresh Ed25519 key named `name`.
pub fn generate_key_file(name: &str) -> Result<String, Error> {
    Ok(Ed25519Signer::generate(name)?.skey())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stele_tlog::note::{self, ALG_ED25519};

    #[test]
    fn kms_public_key_gives_the_note_key_id() {
        // An Ed25519 SPKI as KMS returns it: the key id and vkey derive from its last 32 bytes,
        // exactly as for the same key held in a file.
        let file = Ed25519Signer::from_seed("audit.example.com/prod", &[7; 32]).unwrap();
        let public = file.verifier().public_key();
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&public);
        assert_eq!(der.len(), 44);
        let raw = ed25519_from_spki(&der).unwrap();
        let v = Ed25519Verifier::new("audit.example.com/prod", &raw).unwrap();
        assert_eq!(v.vkey(), file.verifier().vkey());
        assert_eq!(
            stele_tlog::Verifier::key_id(&v),
            note::key_id("audit.example.com/prod", ALG_ED25519, &public)
        );
    }

    #[test]
    fn other_public_keys_are_refused() {
        // A P-256 SPKI (91 bytes) and a truncated Ed25519 one.
        let mut p256 = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
        ];
        p256.resize(91, 4);
        assert!(ed25519_from_spki(&p256).is_err());
        assert!(ed25519_from_spki(&ED25519_SPKI_PREFIX[..]).is_err());
        let mut long = ED25519_SPKI_PREFIX.to_vec();
        long.extend_from_slice(&[1; 33]);
        assert!(ed25519_from_spki(&long).is_err());
    }
}
