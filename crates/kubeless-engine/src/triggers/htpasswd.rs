//! htpasswd files (the `auth` key of a basic-auth secret, as nginx ingress
//! reads it): bcrypt (`$2y$`, `htpasswd -B`), Apache MD5 (`$apr1$`, the
//! `htpasswd` default), SHA-1 (`{SHA}`) and plain text entries.

use base64::Engine;
use md5::{Digest, Md5};

/// A parsed htpasswd file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Htpasswd {
    entries: Vec<(String, String)>,
}

/// Why an htpasswd file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtpasswdError(pub String);

impl Htpasswd {
    pub fn parse(text: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or_else(|| {
                HtpasswdError(format!("line {} is not user:password-hash", i + 1))
            })?;
            if hash.starts_with("$2") && hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(HtpasswdError(format!(
                    "line {}: the bcrypt hash of {user} is malformed",
                    i + 1
                )));
            }
            entries.push((user.to_string(), hash.to_string()));
        }
        if entries.is_empty() {
            return Err(HtpasswdError("it has no user".into()));
        }
        Ok(Htpasswd { entries })
    }

    /// Whether `user` with `password` is allowed. Slow for bcrypt: call
    /// from a blocking task.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.entries
            .iter()
            .filter(|(u, _)| u == user)
            .any(|(_, hash)| verify_hash(hash, password))
    }
}

fn verify_hash(hash: &str, password: &str) -> bool {
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        let salt = rest.split('$').next().unwrap_or("");
        return constant_eq(
            apr1(password.as_bytes(), salt.as_bytes()).as_bytes(),
            hash.as_bytes(),
        );
    }
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        let digest = sha1::Sha1::digest(password.as_bytes());
        let mine = base64::engine::general_purpose::STANDARD.encode(digest);
        return constant_eq(mine.as_bytes(), b64.as_bytes());
    }
    if hash.starts_with('$') {
        // crypt(3) schemes other than the above are not supported.
        return false;
    }
    constant_eq(hash.as_bytes(), password.as_bytes())
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Apache's MD5-crypt: `$apr1$<salt>$<hash>`.
pub fn apr1(pw: &[u8], salt: &[u8]) -> String {
    let magic = b"$apr1$";
    let salt = &salt[..salt.len().min(8)];
    let mut alt = Md5::new();
    alt.update(pw);
    alt.update(salt);
    alt.update(pw);
    let alt = alt.finalize();
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(magic);
    ctx.update(salt);
    let mut left = pw.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = pw.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for i in 0..1000 {
        let mut c = Md5::new();
        if i & 1 == 1 {
            c.update(pw);
        } else {
            c.update(fin);
        }
        if i % 3 != 0 {
            c.update(salt);
        }
        if i % 7 != 0 {
            c.update(pw);
        }
        if i & 1 == 1 {
            c.update(fin);
        } else {
            c.update(pw);
        }
        fin = c.finalize();
    }
    let mut out = String::from("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        to64(
            (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]),
            4,
        );
    }
    to64(u32::from(fin[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apr1_matches_apache() {
        // openssl passwd -apr1 -salt abcdefgh secret
        assert_eq!(
            apr1(b"secret", b"abcdefgh"),
            "$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/"
        );
    }

    #[test]
    fn every_supported_scheme_verifies() {
        let bc = bcrypt::hash("pw", 4).expect("bcrypt");
        let text = format!(
            "# users\nb:{bc}\na:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\ns:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\np:plain\n"
        );
        let h = Htpasswd::parse(&text).expect("parse");
        assert!(h.verify("b", "pw") && !h.verify("b", "nope"));
        assert!(h.verify("a", "secret") && !h.verify("a", "Secret"));
        assert!(h.verify("s", "password") && !h.verify("s", "passwor"));
        assert!(h.verify("p", "plain") && !h.verify("p", "plai"));
        assert!(!h.verify("nobody", "plain"));
        assert!(Htpasswd::parse("").is_err());
        assert!(Htpasswd::parse("no-colon").is_err());
    }
}
