//! Conformance: the C2SP signed-note and tlog-checkpoint examples and the
//! golang.org/x/mod/sumdb/note test cases (tests/data/signed-note, see its README),
//! valid and invalid.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use serde_json::Value;
use stele_tlog::note::{self, Note};
use stele_tlog::{open_checkpoint, Checkpoint, Ed25519Signer, Ed25519Verifier, Error, Hash, Verifiers};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/signed-note/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn s<'a>(v: &'a Value, group: &str, key: &str) -> &'a str {
    v[group][key].as_str().unwrap_or_else(|| panic!("{group}.{key}"))
}

/// Runs a future that never waits (local signing) to completion.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future is not ready"),
    }
}

#[test]
fn c2sp_example_key_verifies_the_c2sp_example_note() {
    let v = vectors();
    let vkey = s(&v, "c2sp_signed_note", "vkey");
    let verifier = Ed25519Verifier::from_vkey(vkey).unwrap();
    assert_eq!(verifier.vkey(), vkey, "vkey round-trips");
    let opened = note::open(
        s(&v, "c2sp_signed_note", "note").as_bytes(),
        &Verifiers::from_vkeys([vkey]).unwrap(),
    )
    .unwrap();
    assert_eq!(opened.text, s(&v, "c2sp_signed_note", "note_text"));
    assert_eq!(opened.verified.len(), 1);
    assert_eq!(opened.verified[0].key_id, 0x530d903a);

    // The same note with its text changed by one character fails.
    let tampered = s(&v, "c2sp_signed_note", "note").replacen("example", "exemple", 1);
    assert!(matches!(
        note::open(tampered.as_bytes(), &Verifiers::from_vkeys([vkey]).unwrap()),
        Err(Error::InvalidSignature { .. })
    ));
}

#[test]
fn text_ends_at_the_last_blank_line() {
    let v = vectors();
    let n = Note::parse(s(&v, "c2sp_signed_note", "multi_paragraph_note").as_bytes()).unwrap();
    assert_eq!(n.text, s(&v, "c2sp_signed_note", "multi_paragraph_text"));
    assert_eq!(n.signatures.len(), 1);
    assert_eq!(n.signatures[0].name, "quasimodo.example/salvatore");
    assert_eq!(n.render().unwrap(), s(&v, "c2sp_signed_note", "multi_paragraph_note"));
    // Its key is not published: with no trusted key, the note is refused.
    let err = note::open(n.render().unwrap().as_bytes(), &Verifiers::default()).unwrap_err();
    assert!(matches!(err, Error::NoTrustedSignature { .. }), "{err}");
}

#[test]
fn c2sp_checkpoint_example_parses_and_needs_its_key() {
    let v = vectors();
    let msg = s(&v, "c2sp_tlog_checkpoint", "note");
    let n = Note::parse(msg.as_bytes()).unwrap();
    let c = Checkpoint::parse(&n.text).unwrap();
    assert_eq!(c.origin, s(&v, "c2sp_tlog_checkpoint", "origin"));
    assert_eq!(c.size, v["c2sp_tlog_checkpoint"]["size"].as_u64().unwrap());
    assert_eq!(
        c.root,
        Hash::from_base64(s(&v, "c2sp_tlog_checkpoint", "root")).unwrap()
    );
    assert!(c.extensions.is_empty());
    assert_eq!(c.to_text().unwrap(), n.text);
    // Another key of the same name is another key: the signature is unknown, not invalid.
    let other = Ed25519Signer::from_seed("example.com/behind-the-sofa", &[9; 32]).unwrap();
    let verifiers = Verifiers::from_vkeys([other.verifier().vkey().as_str()]).unwrap();
    assert!(matches!(
        open_checkpoint(msg.as_bytes(), &verifiers, "example.com/behind-the-sofa"),
        Err(Error::NoTrustedSignature { .. })
    ));
}

#[test]
fn go_private_key_signs_the_go_reference_note_byte_for_byte() {
    let v = vectors();
    let g = "go_sumdb_note";
    let signer = Ed25519Signer::from_skey(s(&v, g, "peter_skey")).unwrap();
    assert_eq!(signer.skey(), s(&v, g, "peter_skey"));
    assert_eq!(signer.verifier().vkey(), s(&v, g, "peter_vkey"));
    let want = format!("{}\n{}", s(&v, g, "text"), s(&v, g, "peter_sig"));
    assert_eq!(signer.sign_note(s(&v, g, "text")).unwrap(), want);
    assert_eq!(now(note::sign(s(&v, g, "text"), &signer)).unwrap(), want);
    // Text without a final newline cannot be signed.
    assert!(signer.sign_note("abc").is_err());
    assert!(signer.sign_note("a\u{7}b\n").is_err());
}

#[test]
fn every_mangling_of_the_go_vkey_is_refused() {
    let v = vectors();
    let vkey = s(&v, "go_sumdb_note", "peter_vkey");
    assert!(Ed25519Verifier::from_vkey(vkey).is_ok());
    let b = vkey.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            let sub = std::str::from_utf8(&b[i..j]).unwrap();
            assert!(Ed25519Verifier::from_vkey(sub).is_err(), "substring {sub:?} accepted");
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] += 1;
        let m = String::from_utf8(m).unwrap();
        assert!(Ed25519Verifier::from_vkey(&m).is_err(), "mangled {m:?} accepted");
    }
    for (bad, why) in v["go_sumdb_note"]["bad_vkeys"].as_object().unwrap() {
        assert!(Ed25519Verifier::from_vkey(bad).is_err(), "{why}: {bad}");
    }
    assert!(matches!(
        Ed25519Verifier::from_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(Error::UnknownAlgorithm(0x65))
    ));
}

#[test]
fn every_mangling_of_the_go_private_key_is_refused() {
    let v = vectors();
    let skey = s(&v, "go_sumdb_note", "peter_skey");
    let b = skey.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            let sub = std::str::from_utf8(&b[i..j]).unwrap();
            assert!(Ed25519Signer::from_skey(sub).is_err(), "substring {sub:?} accepted");
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] += 1;
        let m = String::from_utf8(m).unwrap();
        assert!(Ed25519Signer::from_skey(&m).is_err(), "mangled {m:?} accepted");
    }
}

struct Go {
    text: String,
    peter_sig: String,
    enoch_sig: String,
    peter: String,
    enoch: String,
}

fn go() -> Go {
    let v = vectors();
    let g = "go_sumdb_note";
    Go {
        text: s(&v, g, "text").to_owned(),
        peter_sig: s(&v, g, "peter_sig").to_owned(),
        enoch_sig: s(&v, g, "enoch_sig").to_owned(),
        peter: s(&v, g, "peter_vkey").to_owned(),
        enoch: s(&v, g, "enoch_vkey").to_owned(),
    }
}

#[test]
fn go_open_one_known_key_verifies_and_the_other_is_ignored() {
    let g = go();
    let msg = format!("{}\n{}{}", g.text, g.peter_sig, g.enoch_sig);
    let n = note::open(msg.as_bytes(), &Verifiers::from_vkeys([g.peter.as_str()]).unwrap()).unwrap();
    assert_eq!(n.text, g.text);
    assert_eq!(n.verified.len(), 1);
    assert_eq!(
        (n.verified[0].name.as_str(), n.verified[0].key_id),
        ("PeterNeumann", 0xc74f20a3)
    );
    assert_eq!(n.unverified.len(), 1);
    assert_eq!(
        (n.unverified[0].name.as_str(), n.unverified[0].key_id),
        ("EnochRoot", 0xaf0cfe78)
    );

    let both = note::open(
        msg.as_bytes(),
        &Verifiers::from_vkeys([g.peter.as_str(), g.enoch.as_str()]).unwrap(),
    )
    .unwrap();
    assert_eq!(both.verified.len(), 2);
    assert!(both.unverified.is_empty());

    let err = note::open(msg.as_bytes(), &Verifiers::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "note has no valid signature from a trusted key (signed by: PeterNeumann+c74f20a3, EnochRoot+af0cfe78)"
    );
}

#[test]
fn go_open_duplicated_verifier_is_ambiguous_only_when_used() {
    let g = go();
    let list = || Verifiers::from_vkeys([g.enoch.as_str(), g.peter.as_str(), g.enoch.as_str()]).unwrap();
    let err = note::open(format!("{}\n{}", g.text, g.enoch_sig).as_bytes(), &list()).unwrap_err();
    assert!(
        matches!(err, Error::AmbiguousKey { ref name, key_id: 0xaf0cfe78 } if name == "EnochRoot"),
        "{err}"
    );
    note::open(format!("{}\n{}", g.text, g.peter_sig).as_bytes(), &list()).unwrap();
}

#[test]
fn go_open_refuses_more_than_100_signatures() {
    let g = go();
    let msg = format!("{}\n{}", g.text, g.peter_sig.repeat(101));
    for verifiers in [Verifiers::from_vkeys([g.peter.as_str()]).unwrap(), Verifiers::default()] {
        assert!(matches!(
            note::open(msg.as_bytes(), &verifiers),
            Err(Error::MalformedNote(_))
        ));
    }
    let msg = format!("{}\n{}", g.text, g.peter_sig.repeat(100));
    assert!(note::open(msg.as_bytes(), &Verifiers::from_vkeys([g.peter.as_str()]).unwrap()).is_ok());
}

#[test]
fn go_open_rejects_an_invalid_signature_from_a_known_key() {
    let g = go();
    let bad = format!("{}ABCD{}", &g.peter_sig[..60], &g.peter_sig[60..]);
    let err = note::open(
        format!("{}\n{bad}", g.text).as_bytes(),
        &Verifiers::from_vkeys([g.peter.as_str()]).unwrap(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "invalid signature for key PeterNeumann+c74f20a3");
}

#[test]
fn go_open_dedups_repeated_signatures() {
    let g = go();
    let enoch_abcd = format!("{}ABCD{}", &g.enoch_sig[..60], &g.enoch_sig[60..]);
    let msg = format!("{}\n{p}{p}{e}{e}{enoch_abcd}", g.text, p = g.peter_sig, e = g.enoch_sig);
    let n = note::open(msg.as_bytes(), &Verifiers::from_vkeys([g.peter.as_str()]).unwrap()).unwrap();
    assert_eq!(n.verified.len(), 1);
    assert_eq!(
        n.unverified.len(),
        2,
        "enoch and enoch-with-ABCD are distinct unknown lines"
    );
}

#[test]
fn go_open_rejects_malformed_notes() {
    let g = go();
    let peter = Verifiers::from_vkeys([g.peter.as_str()]).unwrap();
    let (t, p) = (&g.text, &g.peter_sig);
    let bad: Vec<Vec<u8>> = vec![
        t.clone().into_bytes(),
        format!("{t}\n").into_bytes(),
        format!("{t}\n{}", &p[..p.len() - 1]).into_bytes(),
        format!("\x01{t}\n{p}").into_bytes(),
        [b"\xff".as_slice(), format!("{t}\n{p}").as_bytes()].concat(),
        format!("{t}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=")
            .into_bytes(),
        format!("{t}\n{p}Unexpected line.\n").into_bytes(),
        // Beyond the Go list: a name with '+', a too-short signature, non-base64, a tab.
        format!("{t}\n\u{2014} Peter+Neumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
            .into_bytes(),
        format!("{t}\n\u{2014} PeterNeumann AAAAAA==\n").into_bytes(),
        format!("{t}\n\u{2014} PeterNeumann ***\n").into_bytes(),
        format!("{t}\n\u{2014} PeterNeumann \n").into_bytes(),
        format!("a\tb\n\n{p}").into_bytes(),
    ];
    for msg in bad {
        match note::open(&msg, &peter) {
            Err(Error::MalformedNote(_)) => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&msg)),
        }
    }
}

#[test]
fn a_note_signed_with_another_key_of_the_same_name_is_refused() {
    let real = Ed25519Signer::from_seed("stele.example/log", &[1; 32]).unwrap();
    let forger = Ed25519Signer::from_seed("stele.example/log", &[2; 32]).unwrap();
    let c = Checkpoint::new("stele.example/t/acme", 3, Hash([5; 32]));
    let forged = now(c.sign(&forger)).unwrap();
    let verifiers = Verifiers::from_vkeys([real.verifier().vkey().as_str()]).unwrap();
    assert!(matches!(
        open_checkpoint(forged.as_bytes(), &verifiers, "stele.example/t/acme"),
        Err(Error::NoTrustedSignature { .. })
    ));

    // A forger who also copies the real key ID gets an invalid signature, not acceptance.
    let mut n = Note::parse(forged.as_bytes()).unwrap();
    n.signatures[0].key_id = real
        .verifier()
        .vkey()
        .split('+')
        .nth(1)
        .map(|h| u32::from_str_radix(h, 16).unwrap())
        .unwrap();
    assert!(matches!(
        open_checkpoint(n.render().unwrap().as_bytes(), &verifiers, "stele.example/t/acme"),
        Err(Error::InvalidSignature { .. })
    ));

    let good = now(c.sign(&real)).unwrap();
    let opened = open_checkpoint(good.as_bytes(), &verifiers, "stele.example/t/acme").unwrap();
    assert_eq!(opened.checkpoint, c);
    // Another tenant's origin is not accepted in its place.
    assert!(matches!(
        open_checkpoint(good.as_bytes(), &verifiers, "stele.example/t/other"),
        Err(Error::OriginMismatch { .. })
    ));
}

#[test]
fn generated_keys_round_trip_through_their_text_forms() {
    let a = Ed25519Signer::generate("stele.example/log").unwrap();
    let b = Ed25519Signer::from_skey(&format!("{}\n", a.skey())).unwrap();
    assert_eq!(a.verifier(), b.verifier());
    let note = a.sign_note("hello\n").unwrap();
    let v = Verifiers::from_vkeys([b.verifier().vkey().as_str()]).unwrap();
    assert_eq!(note::open(note.as_bytes(), &v).unwrap().text, "hello\n");
    assert_ne!(
        Ed25519Signer::generate("x").unwrap().skey(),
        Ed25519Signer::generate("x").unwrap().skey()
    );
    assert!(Ed25519Signer::from_seed("bad name", &[0; 32]).is_err());
    assert!(Ed25519Signer::from_seed("bad+name", &[0; 32]).is_err());
}
