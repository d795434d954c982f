//! The canonical bytes of a command: what the collector signs and the agent verifies.
//!
//! JSON is not signed: two encoders (or one encoder twice) may order keys, escape characters or
//! write numbers differently. Instead the signature covers this byte string, rebuilt from the
//! decoded fields on both sides:
//!
//! ```text
//! DOMAIN                        the 18 bytes "WATCHSTAND-CMD-V1\0" (domain separation: these
//!                               bytes can never be mistaken for another signed message)
//! u64  v                        big-endian, 8 bytes
//! str  key_id                   every str: u32 big-endian byte length, then the UTF-8 bytes
//! str  site
//! str  agent
//! str  command_id
//! str  run_id
//! u32  step                     big-endian, 4 bytes
//! str  action
//! u32  number of args           then per argument, in byte order of the names:
//!   str name, str value
//! u64  issued_ms
//! u64  expires_ms
//! str  nonce                    the 32 lower-case hex digits as sent
//! ```
//!
//! Every variable-length field carries its length, so no two different commands have the same
//! bytes (no "ab"+"c" = "a"+"bc" ambiguity). The signature field is not part of it. The test
//! `canonical_bytes_of_a_fixed_command_are_pinned` pins the exact bytes; changing this layout is
//! a protocol change (a new `DOMAIN`).

use std::collections::BTreeMap;

use crate::wire::v1::command::Command;

/// The domain-separation prefix of every signed command.
pub const DOMAIN: &[u8; 18] = b"WATCHSTAND-CMD-V1\0";

/// Bytes of randomness in a nonce (sent as twice as many hex digits).
pub const NONCE_BYTES: usize = 16;

/// Every field of a command but the signature and `key_id`: what the collector fills in before
/// signing ([`crate::command::CommandKey::sign`] adds `v`, `key_id` and the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedCommand {
    /// The target agent's site.
    pub site: String,
    /// The target agent.
    pub agent: String,
    /// Unique per command attempt.
    pub command_id: String,
    /// The run it belongs to.
    pub run_id: String,
    /// The step index.
    pub step: u32,
    /// The action id.
    pub action: String,
    /// Argument values by name.
    pub args: BTreeMap<String, String>,
    /// When it is signed (epoch ms).
    pub issued_ms: u64,
    /// When it expires (epoch ms).
    pub expires_ms: u64,
    /// 32 lower-case hex digits ([`crate::command::key::new_nonce`] makes one).
    pub nonce: String,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Lengths beyond u32 cannot occur: commands are refused far below that size.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The canonical bytes of `command` (its `signature` is ignored).
pub fn canonical_bytes(command: &Command) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&command.v.to_be_bytes());
    put_str(&mut out, &command.key_id);
    put_str(&mut out, &command.site);
    put_str(&mut out, &command.agent);
    put_str(&mut out, &command.command_id);
    put_str(&mut out, &command.run_id);
    out.extend_from_slice(&command.step.to_be_bytes());
    put_str(&mut out, &command.action);
    let n = u32::try_from(command.args.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    // A BTreeMap iterates in byte order of its String keys.
    for (name, value) in &command.args {
        put_str(&mut out, name);
        put_str(&mut out, value);
    }
    out.extend_from_slice(&command.issued_ms.to_be_bytes());
    out.extend_from_slice(&command.expires_ms.to_be_bytes());
    put_str(&mut out, &command.nonce);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The command whose bytes and signature are pinned here and in `key.rs`.
    pub(crate) fn fixed() -> Command {
        Command {
            v: 1,
            site: "lab".into(),
            agent: "db-2".into(),
            command_id: "c-1".into(),
            run_id: "r-7".into(),
            step: 3,
            action: "promote".into(),
            args: BTreeMap::from([
                ("role".to_owned(), "primary".to_owned()),
                ("db".to_owned(), "shop".to_owned()),
            ]),
            issued_ms: 1_767_225_600_000,
            expires_ms: 1_767_225_660_000,
            nonce: "000102030405060708090a0b0c0d0e0f".into(),
            key_id: "ed25519:0011223344556677".into(),
            signature: String::new(),
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn canonical_bytes_of_a_fixed_command_are_pinned() {
        let want = concat!(
            "57415443485354414e442d434d442d563100", // "WATCHSTAND-CMD-V1\0"
            "0000000000000001",                     // v = 1
            "00000018",
            "656432353531393a30303131323233333434353536363737", // key_id
            "00000003",
            "6c6162", // site "lab"
            "00000004",
            "64622d32", // agent "db-2"
            "00000003",
            "632d31", // command_id "c-1"
            "00000003",
            "722d37",   // run_id "r-7"
            "00000003", // step 3
            "00000007",
            "70726f6d6f7465", // action "promote"
            "00000002",       // 2 args, in name order:
            "00000002",
            "6462",
            "00000004",
            "73686f70", // db = shop
            "00000004",
            "726f6c65",
            "00000007",
            "7072696d617279",   // role = primary
            "0000019b76daa800", // issued_ms 1767225600000
            "0000019b76db9260", // expires_ms 1767225660000
            "00000020",
            "3030303130323033303430353036303730383039306130623063306430653066", // nonce
        );
        assert_eq!(hex(&canonical_bytes(&fixed())), want);
    }

    #[test]
    fn the_signature_field_is_not_covered_and_every_other_field_is() {
        let base = canonical_bytes(&fixed());
        let mut c = fixed();
        c.signature = "anything".into();
        assert_eq!(canonical_bytes(&c), base);
        let edits: Vec<fn(&mut Command)> = vec![
            |c| c.v = 2,
            |c| c.key_id.push('x'),
            |c| c.site.push('x'),
            |c| c.agent.push('x'),
            |c| c.command_id.push('x'),
            |c| c.run_id.push('x'),
            |c| c.step += 1,
            |c| c.action.push('x'),
            |c| {
                c.args.insert("x".into(), String::new());
            },
            |c| {
                c.args.insert("db".into(), "shopx".into());
            },
            |c| c.issued_ms += 1,
            |c| c.expires_ms += 1,
            |c| c.nonce.replace_range(0..1, "1"),
        ];
        for (i, edit) in edits.into_iter().enumerate() {
            let mut c = fixed();
            edit(&mut c);
            assert_ne!(canonical_bytes(&c), base, "edit {i}");
        }
    }

    #[test]
    fn moving_bytes_between_adjacent_fields_changes_the_canonical_bytes() {
        let mut a = fixed();
        a.site = "lab".into();
        a.agent = "db-2".into();
        let mut b = fixed();
        b.site = "labd".into();
        b.agent = "b-2".into();
        assert_ne!(canonical_bytes(&a), canonical_bytes(&b));
        let mut c = fixed();
        c.args = BTreeMap::from([("ab".to_owned(), "c".to_owned())]);
        let mut d = fixed();
        d.args = BTreeMap::from([("a".to_owned(), "bc".to_owned())]);
        assert_ne!(canonical_bytes(&c), canonical_bytes(&d));
    }
}
