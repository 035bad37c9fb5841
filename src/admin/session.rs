//! Back-office sessions: a signed cookie naming the tenant and the hash of
//! the token that signed in, and the CSRF token tied to it.
//!
//! Nothing is stored server-side. The cookie is
//! `tenant~token_sha256~expires~mac`, the MAC an HMAC-SHA256 under a key
//! made at start-up, so a restart signs everyone out. Every request checks
//! that the tenant still lists the token's hash: removing a token from the
//! tenant file (and SIGHUP) ends its sessions at once.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cookie's name.
pub(crate) const COOKIE: &str = "accrue_admin";

/// How long a session lasts, in seconds (8 hours: one shift).
pub(crate) const LIFETIME_SECS: i64 = 8 * 3600;

type HmacSha256 = Hmac<Sha256>;

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The tenant signed in to.
    pub(crate) tenant: String,
    /// The SHA-256 (hex) of the token used, as listed in the tenant file.
    pub(crate) token_sha256: String,
    /// The cookie value, which the CSRF token is derived from.
    pub(crate) cookie: String,
}

/// Signs and checks session cookies and CSRF tokens.
pub(crate) struct Keys {
    /// HMAC-SHA256's block size: a key of this length is used as it is.
    key: [u8; 64],
}

impl Keys {
    /// A fresh random key.
    ///
    /// # Errors
    /// If the operating system has no randomness to give.
    pub(crate) fn random() -> Result<Keys, getrandom::Error> {
        let mut key = [0u8; 64];
        getrandom::getrandom(&mut key)?;
        Ok(Keys { key })
    }

    fn mac(&self, purpose: &str, text: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new(&self.key.into());
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(text.as_bytes());
        mac
    }

    /// The cookie value of a new session of `tenant`, signed in with the
    /// token whose hash is `token_sha256`, valid until `now + LIFETIME_SECS`.
    pub(crate) fn issue(&self, tenant: &str, token_sha256: &str, now: i64) -> String {
        let body = format!("{tenant}~{token_sha256}~{}", now.saturating_add(LIFETIME_SECS));
        let tag = data_encoding::HEXLOWER.encode(&self.mac("session", &body).finalize().into_bytes());
        format!("{body}~{tag}")
    }

    /// The session in `cookie`, if it is one this key signed and has not
    /// expired at `now`. Whether the token is still listed is the caller's
    /// check.
    pub(crate) fn check(&self, cookie: &str, now: i64) -> Option<Session> {
        let (body, tag) = cookie.rsplit_once('~')?;
        let tag = data_encoding::HEXLOWER.decode(tag.as_bytes()).ok()?;
        self.mac("session", body).verify_slice(&tag).ok()?;
        let mut parts = body.split('~');
        let (tenant, hash, expires) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || expires.parse::<i64>().ok()? <= now {
            return None;
        }
        Some(Session {
            tenant: tenant.to_owned(),
            token_sha256: hash.to_owned(),
            cookie: cookie.to_owned(),
        })
    }

    /// The CSRF token of `session`: forms that change something carry it.
    pub(crate) fn csrf(&self, session: &Session) -> String {
        let tag = self.mac("csrf", &session.cookie).finalize().into_bytes();
        data_encoding::HEXLOWER.encode(tag.get(..16).unwrap_or_default())
    }

    /// Whether `token` is `session`'s CSRF token (constant time).
    pub(crate) fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        let Ok(given) = data_encoding::HEXLOWER.decode(token.as_bytes()) else {
            return false;
        };
        self.mac("csrf", &session.cookie).verify_truncated_left(&given).is_ok() && given.len() == 16
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub(crate) fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value that stores `value`: HttpOnly (no script reads
/// it), SameSite=Strict (no other site's form or link sends it), scoped to
/// `/admin`.
pub(crate) fn set_cookie(value: &str) -> String {
    format!("{COOKIE}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={LIFETIME_SECS}")
}

/// The `Set-Cookie` value that removes the session.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        match Keys::random() {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_session_round_trips_until_it_expires() {
        let k = keys();
        let cookie = k.issue("cafe-central", "abc123", 1_000);
        let Some(s) = k.check(&cookie, 1_001) else {
            panic!("{cookie}")
        };
        assert_eq!((s.tenant.as_str(), s.token_sha256.as_str()), ("cafe-central", "abc123"));
        assert!(k.check(&cookie, 1_000 + LIFETIME_SECS).is_none(), "expired");
    }

    #[test]
    fn forged_or_foreign_cookies_are_refused() {
        let (a, b) = (keys(), keys());
        let cookie = a.issue("cafe-central", "abc123", 1_000);
        assert!(b.check(&cookie, 1_001).is_none(), "another key (a restart)");
        let forged = cookie.replacen("cafe-central", "studio-flow", 1);
        assert!(a.check(&forged, 1_001).is_none(), "another tenant");
        let longer = cookie.replacen(&format!("{}", 1_000 + LIFETIME_SECS), "99999999999", 1);
        assert!(a.check(&longer, 1_001).is_none(), "a later expiry");
        for junk in ["", "~", "a~b~c~d", "a~b~1~zz", "\u{0}"] {
            assert!(a.check(junk, 0).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let k = keys();
        let one = k.check(&k.issue("t", "h", 0), 1).unwrap_or_else(|| panic!("one"));
        let two = k.check(&k.issue("t", "h", 5), 6).unwrap_or_else(|| panic!("two"));
        let token = k.csrf(&one);
        assert!(k.csrf_ok(&one, &token));
        assert!(!k.csrf_ok(&two, &token), "another session's token");
        assert!(!k.csrf_ok(&one, ""), "missing");
        assert!(!k.csrf_ok(&one, &token[..8]), "a prefix");
        assert!(!k.csrf_ok(&one, "not hex"));
    }

    #[test]
    fn cookies_are_found_in_the_header() {
        let header = "a=1; accrue_admin=x~y; b=2";
        assert_eq!(cookie_value(header, COOKIE), Some("x~y"));
        assert_eq!(cookie_value("a=1", COOKIE), None);
        let set = set_cookie("v");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/admin"));
    }
}
