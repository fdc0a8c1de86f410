//! Accounts: email and password rules, Argon2id hashing, login tokens, and the
//! guard against guessing passwords.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::config::Secret;

/// Why an email or password is not acceptable; the text is shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: &'static str,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message)
    }
}

pub const MIN_PASSWORD_CHARS: usize = 8;
/// Argon2 takes any length, but hashing megabytes per login attempt is a gift
/// to anyone who wants to keep the cores busy.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Trims the email and checks that it looks like an address: one `@`, a
/// non-empty local part, a domain with a dot, no spaces or control characters.
pub fn normalise_email(raw: &str) -> Result<String, Invalid> {
    let email = raw.trim();
    let invalid = Invalid {
        field: "email",
        message: "Enter a valid email address, such as name@example.com.",
    };
    if email.is_empty() || email.len() > 254 {
        return Err(invalid);
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(invalid);
    };
    let bad_char = |c: char| {
        c.is_whitespace() || c.is_control() || is_invisible(c) || matches!(c, '@' | '<' | '>')
    };
    if local.is_empty()
        || local.len() > 64
        || domain.len() < 3
        || local.chars().any(bad_char)
        || domain.chars().any(bad_char)
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
        || domain
            .chars()
            .any(|c| !(c.is_alphanumeric() || c == '.' || c == '-'))
    {
        return Err(invalid);
    }
    Ok(email.to_owned())
}

/// Zero-width and text-direction characters: they make two different strings
/// look the same, so names and emails may not contain them.
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}')
}

pub fn check_password_rules(password: &str) -> Result<(), Invalid> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Invalid {
            field: "password",
            message: "The password must have at least 8 characters.",
        });
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Invalid {
            field: "password",
            message: "The password must have at most 1024 bytes.",
        });
    }
    Ok(())
}

/// OWASP's recommended Argon2id cost: 19 MiB of memory, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Argon2's working memory: 19 MiB of blocks. Hashing with a fresh buffer
/// each time leaves the allocator holding on to ever more of them (glibc keeps
/// freed blocks of this size in per-thread arenas), so the hasher reuses a few.
type WorkingMemory = Vec<argon2::Block>;

fn working_memory() -> WorkingMemory {
    vec![argon2::Block::default(); argon2().params().block_count()]
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
fn hash_with(password: &Secret, memory: &mut WorkingMemory) -> anyhow::Result<String> {
    let fail = |err: &dyn std::fmt::Display| anyhow::anyhow!("hashing the password: {err}");
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut salt_bytes).map_err(|e| fail(&e))?;
    let mut output = [0u8; 32];
    let hasher = argon2();
    hasher
        .hash_password_into_with_memory(
            password.expose().as_bytes(),
            raw_salt,
            &mut output,
            memory.as_mut_slice(),
        )
        .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: hasher.params().try_into().map_err(|e| fail(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(argon2::password_hash::Output::new(&output).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Checks a password against a PHC string, in constant time for the compare.
fn verify_with(password: &Secret, phc: &str, memory: &mut WorkingMemory) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    let mut salt_bytes = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), argon2::Block::default());
    }
    let mut output = vec![0u8; expected.len()];
    let hasher = Argon2::new(algorithm, version, params);
    let hashed = hasher.hash_password_into_with_memory(
        password.expose().as_bytes(),
        raw_salt,
        &mut output,
        &mut memory[..],
    );
    hashed.is_ok()
        && argon2::password_hash::Output::new(&output).is_ok_and(|actual| actual == expected)
}

/// Hashes a password with its own working memory (the command line).
pub fn hash_password_blocking(password: &Secret) -> anyhow::Result<String> {
    hash_with(password, &mut working_memory())
}

/// A hash of a password nobody knows, verified against when the email is
/// unknown so that an unknown email costs as much time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password_blocking(&Secret::new(uuid::Uuid::new_v4().to_string()))
            .expect("hashing a random password")
    })
}

/// Runs Argon2 on the blocking pool, at most one hash per core at a time, so
/// that a burst of logins cannot starve every other request; each running
/// hash borrows one of the reusable working memories.
#[derive(Debug, Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    memories: Arc<Mutex<Vec<WorkingMemory>>>,
}

impl Hasher {
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            permits: Arc::new(Semaphore::new(cores)),
            memories: Arc::default(),
        }
    }

    /// Runs `work` with a working memory, made on first use and kept after.
    async fn with_memory<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut WorkingMemory) -> T + Send + 'static,
    ) -> Option<T> {
        let _permit = self.permits.acquire().await.ok()?;
        let memories = Arc::clone(&self.memories);
        let result = crate::blocking::run(move || {
            let mut memory = memories.lock().pop().unwrap_or_else(working_memory);
            let result = work(&mut memory);
            memories.lock().push(memory);
            result
        })
        .await;
        Some(result)
    }

    pub async fn hash(&self, password: Secret) -> anyhow::Result<String> {
        self.with_memory(move |memory| hash_with(&password, memory))
            .await
            .context("hasher closed")?
    }

    /// Checks a password against a stored hash, or against the decoy when the
    /// account does not exist.
    pub async fn verify(&self, password: Secret, hash: Option<String>) -> bool {
        self.with_memory(move |memory| match hash {
            Some(hash) => verify_with(&password, &hash, memory),
            None => {
                verify_with(&password, decoy_hash(), memory);
                false
            }
        })
        .await
        .unwrap_or(false)
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// The user's token generation when it was issued (absent, so 0, in
    /// tokens issued before generations existed).
    #[serde(rename = "gen", default)]
    pub generation: i64,
}

/// Signs and checks login tokens (HS256 only).
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl: Duration,
    /// Tokens whose signature was verified, with their claims, kept until
    /// they expire: a client sends the same token with every request, and
    /// decoding and verifying it each time was a tenth of a chat turn's
    /// instructions. Only a token that passed `decode` gets in, found again
    /// by its whole text.
    verified: parking_lot::Mutex<HashMap<String, Claims>>,
}

/// Verified tokens remembered at most (a few hundred bytes each).
const VERIFIED_TOKENS: usize = 4096;

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A token that was issued, with its expiry.
pub struct IssuedToken {
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Tokens {
    pub fn new(secret: &Secret, ttl: Duration) -> Self {
        let mut validation = Validation::new(JwtAlgorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            ttl,
            verified: parking_lot::Mutex::default(),
        }
    }

    /// A token for a user, in their current token generation.
    pub fn issue(&self, user_id: i64, generation: i64) -> anyhow::Result<IssuedToken> {
        let now = chrono::Utc::now();
        let expires_at =
            now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(24));
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            generation,
        };
        let token =
            jsonwebtoken::encode(&Header::new(JwtAlgorithm::HS256), &claims, &self.encoding)
                .context("signing a token")?;
        let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at);
        Ok(IssuedToken { token, expires_at })
    }

    /// The claims of a valid token; `None` for anything else.
    pub fn check(&self, token: &str) -> Option<Claims> {
        let now = chrono::Utc::now().timestamp();
        if let Some(claims) = self.verified.lock().get(token) {
            // Expiry as `decode` checks it: no leeway, expired once past `exp`.
            return (now <= claims.exp).then(|| claims.clone());
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        // A token issued in the future was not issued by this server's clock.
        if claims.iat > now + 60 {
            return None;
        }
        let mut verified = self.verified.lock();
        if verified.len() >= VERIFIED_TOKENS {
            verified.retain(|_, c| now <= c.exp);
            if verified.len() >= VERIFIED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), claims.clone());
        Some(claims)
    }
}

/// Reads the JWT secret from the data directory, or makes one (mode 0600).
pub fn load_or_create_secret(data_dir: &std::path::Path) -> anyhow::Result<Secret> {
    use std::io::Write;
    let path = data_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(Secret::new(existing));
        }
    }
    let mut bytes = [0u8; 48];
    rand::fill(&mut bytes);
    let secret = hex::encode(bytes);
    let tmp = data_dir.join("jwt-secret.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("saving {}", path.display()))?;
    Ok(Secret::new(secret))
}

/// The window in which failed logins are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_FAILURES_PER_EMAIL: usize = 10;
const MAX_FAILURES_PER_ADDRESS: usize = 50;

/// Failed logins (and logins being checked right now) for one email or one
/// client address.
#[derive(Debug, Default)]
struct Attempts {
    failures: Vec<Instant>,
    in_flight: usize,
}

impl Attempts {
    fn prune(&mut self, now: Instant) {
        self.failures
            .retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
    }

    /// How long this key stays locked, counting attempts still being checked
    /// as failures, so that parallel guesses cannot slip past the limit.
    fn wait(&self, max: usize, now: Instant) -> Option<Duration> {
        if self.failures.len() + self.in_flight < max {
            return None;
        }
        let last = self.failures.iter().max().copied();
        Some(match last {
            Some(last) if self.failures.len() >= max => {
                FAILURE_WINDOW.saturating_sub(now.duration_since(last))
            }
            _ => Duration::from_secs(1),
        })
    }
}

/// Remembers failed logins per email and per client address, in memory.
#[derive(Debug, Default)]
pub struct LoginGuard {
    state: Mutex<GuardState>,
}

#[derive(Debug, Default)]
struct GuardState {
    by_email: HashMap<String, Attempts>,
    by_address: HashMap<IpAddr, Attempts>,
}

/// A login being checked. Dropped without `succeeded`, it counts as a
/// failure (a client that hangs up mid-check does not get a free guess).
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    guard: &'a LoginGuard,
    email: String,
    address: Option<IpAddr>,
    succeeded: bool,
}

impl LoginAttempt<'_> {
    pub fn succeeded(mut self) {
        self.succeeded = true;
    }
}

impl Drop for LoginAttempt<'_> {
    fn drop(&mut self) {
        self.guard.finish(&self.email, self.address, self.succeeded);
    }
}

impl LoginGuard {
    /// Starts a login attempt, or says how long this email or address must wait.
    pub fn begin(
        &self,
        email: &str,
        address: Option<IpAddr>,
    ) -> Result<LoginAttempt<'_>, Duration> {
        let now = Instant::now();
        let email = email.to_lowercase();
        let mut state = self.state.lock();
        let by_email = state.by_email.entry(email.clone()).or_default();
        by_email.prune(now);
        let mut wait = by_email.wait(MAX_FAILURES_PER_EMAIL, now);
        if let Some(ip) = address {
            let by_address = state.by_address.entry(ip).or_default();
            by_address.prune(now);
            wait = wait.max(by_address.wait(MAX_FAILURES_PER_ADDRESS, now));
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        if let Some(entry) = state.by_email.get_mut(&email) {
            entry.in_flight += 1;
        }
        if let Some(entry) = address.and_then(|ip| state.by_address.get_mut(&ip)) {
            entry.in_flight += 1;
        }
        Ok(LoginAttempt {
            guard: self,
            email,
            address,
            succeeded: false,
        })
    }

    /// Ends an attempt; a failure counts against the email and the address.
    fn finish(&self, email: &str, address: Option<IpAddr>, succeeded: bool) {
        let now = Instant::now();
        let mut state = self.state.lock();
        if let Some(entry) = state.by_email.get_mut(email) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if !succeeded {
                entry.failures.push(now);
            }
        }
        if let Some(entry) = address.and_then(|ip| state.by_address.get_mut(&ip)) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if !succeeded {
                entry.failures.push(now);
            }
        }
    }

    /// Forgets entries with no recent failures and nothing in flight.
    pub fn prune(&self) {
        let now = Instant::now();
        let mut state = self.state.lock();
        state.by_email.retain(|_, a| {
            a.prune(now);
            !a.failures.is_empty() || a.in_flight > 0
        });
        state.by_address.retain(|_, a| {
            a.prune(now);
            !a.failures.is_empty() || a.in_flight > 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_standard_phc_strings_that_verify_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let password = Secret::new("correct horse battery");
        let mut memory = working_memory();
        let ours = hash_with(&password, &mut memory).unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            argon2()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let theirs = argon2()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(verify_with(&password, &theirs, &mut memory));
        assert!(!verify_with(
            &Secret::new("wrong horse battery"),
            &theirs,
            &mut memory
        ));
        assert!(!verify_with(&password, "not a hash", &mut memory));
    }

    #[test]
    fn emails_are_trimmed_and_checked() {
        assert_eq!(normalise_email("  a@b.io ").unwrap(), "a@b.io");
        for bad in [
            "", "a", "a@", "@b.io", "a b@c.io", "a@b", "a@.io", "a@b..io", "a@b.io.", "a@@b.io",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let ours = Tokens::new(&Secret::new("a".repeat(40)), Duration::from_secs(60));
        let theirs = Tokens::new(&Secret::new("b".repeat(40)), Duration::from_secs(60));
        let token = theirs.issue(7, 0).unwrap().token;
        assert!(ours.check(&token).is_none());
        assert_eq!(
            theirs.check(&token).map(|claims| claims.sub),
            Some("7".to_owned())
        );
    }

    #[test]
    fn a_remembered_token_still_expires_and_its_look_alikes_are_refused() {
        let tokens = Tokens::new(&Secret::new("c".repeat(40)), Duration::from_secs(1));
        let token = tokens.issue(7, 0).unwrap().token;
        for _ in 0..2 {
            // The second check is answered from memory.
            assert_eq!(tokens.check(&token).map(|c| c.sub), Some("7".to_owned()));
        }
        // One character of the signature changed (not the last, whose low
        // bits are padding).
        let at = token.len() - 5;
        let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
        assert!(tokens.check(&tampered).is_none());
        assert!(tokens.check(&format!("{token} ")).is_none());
        std::thread::sleep(Duration::from_millis(2100));
        assert!(tokens.check(&token).is_none());
    }

    #[test]
    fn ten_failures_lock_an_email_but_not_another() {
        let guard = LoginGuard::default();
        for _ in 0..9 {
            drop(guard.begin("A@b.io", None).unwrap());
        }
        drop(
            guard
                .begin("a@b.io", None)
                .expect("nine failures do not lock"),
        );
        let wait = guard
            .begin("a@B.io", None)
            .expect_err("locked after ten failures");
        assert!(wait > Duration::from_secs(14 * 60) && wait <= FAILURE_WINDOW);
        assert!(guard.begin("c@b.io", None).is_ok());
    }

    #[test]
    fn parallel_attempts_count_before_they_fail() {
        let guard = LoginGuard::default();
        let attempts: Vec<_> = (0..10)
            .map(|_| guard.begin("p@b.io", None).unwrap())
            .collect();
        assert!(
            guard.begin("p@b.io", None).is_err(),
            "an eleventh guess waits"
        );
        for attempt in attempts {
            attempt.succeeded();
        }
        assert!(guard.begin("p@b.io", None).is_ok());
    }
}
