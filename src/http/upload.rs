//! Uploads: where PUT and DELETE may write (`--ingest`), who may
//! (`--ingest-tokens`), and what a write will do, decided before a byte of
//! its body is read. The I/O layer (`server::ingest`) carries out the plan.
//!
//! Checks, in order, each refusal leaving the tree untouched:
//! 1. the path is cleaned exactly as for GET (400 for escapes and bad bytes,
//!    404 for dotfiles), in [`super::plan::route`];
//! 2. the path lies strictly beneath an ingest prefix, else 405 with `Allow`
//!    (RFC 9110 §15.5.6), also in `route`;
//! 3. `Authorization: Bearer TOKEN` (RFC 6750 §2.1), or Basic credentials
//!    whose password is the token (RFC 7617), names a token, compared in
//!    constant time, else 401 with `WWW-Authenticate: Bearer` and `Basic`
//!    (RFC 9110 §11.6.1, RFC 6750 §3);
//! 4. a PUT says how long its body is (Content-Length or chunked), else 411
//!    (RFC 9110 §15.5.12);
//! 5. a Content-Length over `--max-upload` is 413 (RFC 9110 §15.5.14).

use super::error::RequestError;
use super::path::{self, CleanPath};
use super::request::{BodyFraming, Method, Request, Single};

/// `--ingest` prefixes and the body limit, as the planner applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingest {
    /// Cleaned relative prefixes, each ending in `/` (empty: the whole root).
    prefixes: Vec<Vec<u8>>,
    /// `--max-upload`: the most content bytes one PUT may carry.
    pub max_upload: u64,
}

impl Ingest {
    /// Builds the policy from `--ingest` values such as `/live/`.
    pub fn new(prefixes: &[String], max_upload: u64) -> Result<Ingest, String> {
        let prefixes = prefixes
            .iter()
            .map(|p| parse_prefix(p))
            .collect::<Result<_, _>>()?;
        Ok(Ingest {
            prefixes,
            max_upload,
        })
    }

    /// Whether `path` is a file strictly beneath one of the prefixes.
    pub fn covers(&self, path: &CleanPath) -> bool {
        !path.relative.is_empty()
            && self
                .prefixes
                .iter()
                .any(|prefix| path.relative.starts_with(prefix) && path.relative != *prefix)
    }

    /// The prefixes as URL paths (`/live/`), for messages.
    pub fn prefixes(&self) -> impl Iterator<Item = String> + '_ {
        self.prefixes
            .iter()
            .map(|p| format!("/{}", String::from_utf8_lossy(p)))
    }
}

/// `/live/` or `/live` -> `live/`; `/` -> the whole root.
fn parse_prefix(value: &str) -> Result<Vec<u8>, String> {
    if !value.starts_with('/') {
        return Err(format!(
            "{value:?}: an ingest prefix is a URL path such as /live/"
        ));
    }
    let clean = path::clean(value.as_bytes())
        .map_err(|e| format!("{value:?}: not a path GET would serve ({e})"))?;
    let mut prefix = clean.relative;
    if !prefix.is_empty() {
        prefix.push(b'/');
    }
    Ok(prefix)
}

/// An `--on-publish` pattern over URL paths: `*` matches within one path
/// segment, `**` across segments; everything else matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishPattern {
    /// Without the leading `/`, like [`CleanPath::relative`].
    glob: Vec<u8>,
}

impl PublishPattern {
    pub fn parse(value: &str) -> Result<PublishPattern, String> {
        let glob = value
            .strip_prefix('/')
            .filter(|g| !g.is_empty())
            .ok_or_else(|| format!("{value:?}: a pattern is a URL path such as /uploads/*.mp4"))?;
        Ok(PublishPattern {
            glob: glob.as_bytes().to_vec(),
        })
    }

    pub fn matches(&self, path: &CleanPath) -> bool {
        glob_match(&self.glob, &path.relative)
    }

    /// Whether every path the pattern matches lies beneath an ingest prefix.
    pub fn is_within(&self, ingest: &Ingest) -> bool {
        let literal = self.glob.split(|&b| b == b'*').next().unwrap_or_default();
        ingest
            .prefixes
            .iter()
            .any(|prefix| literal.starts_with(prefix))
    }
}

/// Backtracking glob match; patterns come from the operator and hold few
/// stars, and the path is bounded by the request line.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    match glob {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        [b'*', rest @ ..] => {
            let segment = text.iter().position(|&b| b == b'/').unwrap_or(text.len());
            (0..=segment).any(|i| glob_match(rest, &text[i..]))
        }
        [c, rest @ ..] => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

/// Why a write is refused. Mapped to a status in [`super::error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// No token, not a Bearer token, or a token not in the file: 401.
    Unauthorized,
    /// Another method beneath an ingest prefix: 405 that lists PUT and DELETE.
    NotAllowedHere,
    /// A PUT without Content-Length or chunked framing: 411.
    LengthRequired,
    /// More content than `--max-upload`: 413.
    TooLarge,
    /// The target is a directory: 409.
    IsDirectory,
    /// The disk is full, or below `--ingest-min-free`: 507.
    NoSpace,
    /// The job queue is full: 503 with Retry-After.
    QueueFull,
    /// The body stopped arriving for `--upload-timeout`: 408.
    Stalled,
    /// The body's chunked framing is malformed: 400.
    BadBody,
}

/// The secrets of `--ingest-tokens`, kept only as SHA-256 digests so that a
/// comparison takes the same time whatever the presented token shares with
/// a real one.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} secrets)", self.digests.len())
    }
}

impl Tokens {
    /// One token per line; blank lines and surrounding whitespace are
    /// ignored, and lines starting with `#` are comments. A token must be
    /// an RFC 6750 b64token.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut digests = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let token = line.trim();
            if token.is_empty() || token.starts_with('#') {
                continue;
            }
            if !is_b64token(token.as_bytes()) {
                // Never echo the line: it may be a secret with a typo.
                return Err(format!(
                    "line {}: a token is letters, digits and -._~+/ (then =)",
                    number + 1
                ));
            }
            digests.push(digest(token.as_bytes()));
        }
        if digests.is_empty() {
            return Err("no tokens in the file".into());
        }
        Ok(Tokens { digests })
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` is one of the tokens. Every digest is compared
    /// in full, so the time taken says nothing about which, or how much,
    /// matched.
    pub fn allows(&self, presented: &[u8]) -> bool {
        let candidate = digest(presented);
        let mut matched = 0u8;
        for known in &self.digests {
            let difference = known
                .iter()
                .zip(&candidate)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            matched |= u8::from(std::hint::black_box(difference) == 0);
        }
        matched == 1
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(hash.as_ref());
    out
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
/// (RFC 6750 §2.1).
fn is_b64token(token: &[u8]) -> bool {
    let body = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    body > 0
        && token[..body]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The token of `Authorization: Bearer TOKEN` (RFC 6750 §2.1; the scheme
/// is case-insensitive, RFC 9110 §11.1), or the password of `Basic`
/// credentials (RFC 7617), for clients that can only put credentials in
/// the URL (ffmpeg's DASH muxer drops `-headers`). A repeated field is no
/// token.
pub fn bearer(authorization: Single<'_>) -> Option<std::borrow::Cow<'_, [u8]>> {
    use base64::Engine;
    let value = authorization.get()?;
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    let token = rest.trim_ascii_start();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return is_b64token(token).then_some(std::borrow::Cow::Borrowed(token));
    }
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let password = decoded[colon + 1..].to_vec();
    is_b64token(&password).then_some(std::borrow::Cow::Owned(password))
}

/// What an admitted write will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Write the body to a temporary file beside `path`, then rename it over.
    Put {
        path: CleanPath,
        framing: BodyFraming,
    },
    Delete {
        path: CleanPath,
    },
}

/// Checks 3-5 of the module list for a request `route` sent here (a PUT
/// or DELETE of `path`, beneath a prefix).
pub fn plan_write(
    request: &Request<'_>,
    path: CleanPath,
    ingest: &Ingest,
    tokens: &Tokens,
) -> Result<Write, RequestError> {
    let authorized = bearer(request.authorization).is_some_and(|token| tokens.allows(&token));
    if !authorized {
        return Err(RequestError::Write(WriteError::Unauthorized));
    }
    match request.method {
        Method::Delete => Ok(Write::Delete { path }),
        _ => match request.body {
            // An empty PUT has no framing fields, or Content-Length: 0
            // (parsed as None): both write an empty file, but only the
            // second says so; RFC 9110 §8.6 lets us ask for it.
            BodyFraming::None if !request.declares_empty_body => {
                Err(RequestError::Write(WriteError::LengthRequired))
            }
            BodyFraming::Length(n) if n > ingest.max_upload => {
                Err(RequestError::Write(WriteError::TooLarge))
            }
            framing => Ok(Write::Put { path, framing }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::status_of;
    use crate::http::request::parse;

    const TOKEN: &str = "s3cret-token_1";

    fn ingest() -> Ingest {
        Ingest::new(&["/live/".into(), "/uploads".into()], 1000).unwrap()
    }

    fn tokens() -> Tokens {
        Tokens::parse(&format!("\n  {TOKEN}  \n# comment\nother\n")).unwrap()
    }

    fn write(raw: &str) -> Result<Write, u16> {
        let (request, _) = parse(raw.as_bytes()).unwrap().unwrap();
        let path = path::clean(request.target).unwrap();
        plan_write(&request, path, &ingest(), &tokens()).map_err(|e| status_of(e).code())
    }

    fn put(extra: &str) -> String {
        format!("PUT /live/a.ts HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
    }

    #[test]
    fn prefixes_cover_what_lies_strictly_beneath_them() {
        let ingest = ingest();
        let covers = |p: &str| ingest.covers(&path::clean(p.as_bytes()).unwrap());
        assert!(covers("/live/a.ts"));
        assert!(covers("/live/sub/dir/a.ts"));
        assert!(covers("/uploads/clip.mp4"));
        assert!(!covers("/live/"));
        assert!(!covers("/live"));
        assert!(!covers("/livestream/a.ts"));
        assert!(!covers("/a.ts"));
        assert!(!covers("/"));
        let everything = Ingest::new(&["/".into()], 1).unwrap();
        assert!(everything.covers(&path::clean(b"/a").unwrap()));
        assert!(!everything.covers(&path::clean(b"/").unwrap()));
        assert!(Ingest::new(&["live/".into()], 1).is_err());
        assert!(Ingest::new(&["/../x/".into()], 1).is_err());
        assert!(Ingest::new(&["/.hidden/".into()], 1).is_err());
    }

    #[test]
    fn publish_patterns() {
        let m = |p: &str, t: &str| {
            PublishPattern::parse(p)
                .unwrap()
                .matches(&path::clean(t.as_bytes()).unwrap())
        };
        assert!(m("/uploads/*.mp4", "/uploads/clip.mp4"));
        assert!(!m("/uploads/*.mp4", "/uploads/sub/clip.mp4"));
        assert!(!m("/uploads/*.mp4", "/uploads/clip.mp4.part"));
        assert!(m("/uploads/**.mp4", "/uploads/sub/clip.mp4"));
        assert!(m("/uploads/**", "/uploads/a/b/c"));
        assert!(!m("/uploads/*.mp4", "/other/clip.mp4"));
        assert!(PublishPattern::parse("uploads/*.mp4").is_err());
        assert!(PublishPattern::parse("/").is_err());
        let ingest = ingest();
        let within = |p: &str| PublishPattern::parse(p).unwrap().is_within(&ingest);
        assert!(within("/uploads/*.mp4"));
        assert!(!within("/upl*/x.mp4"));
        assert!(!within("/**.mp4"));
    }

    #[test]
    fn rfc6750_2_1_bearer_tokens() {
        let b = |v: &'static [u8]| bearer(Single::One(v)).map(|t| t.into_owned());
        assert_eq!(b(b"Bearer abc.DEF-1=="), Some(b"abc.DEF-1==".to_vec()));
        assert_eq!(b(b"bearer abc"), Some(b"abc".to_vec()));
        // RFC 7617: base64("ffmpeg:s3cret") carries the token as the password.
        assert_eq!(b(b"Basic ZmZtcGVnOnMzY3JldA=="), Some(b"s3cret".to_vec()));
        assert_eq!(b(b"Basic abc"), None);
        assert_eq!(b(b"Basic bm9jb2xvbg=="), None, "no colon");
        assert_eq!(b(b"Bearer"), None);
        assert_eq!(b(b"Bearer a b"), None);
        assert_eq!(b(b"Bearer =="), None);
        assert_eq!(bearer(Single::Repeated), None);
        assert_eq!(bearer(Single::Absent), None);
    }

    #[test]
    fn tokens_match_whole_and_only_whole() {
        let tokens = tokens();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.allows(TOKEN.as_bytes()));
        assert!(tokens.allows(b"other"));
        assert!(!tokens.allows(b"s3cret-token_"));
        assert!(!tokens.allows(b"s3cret-token_12"));
        assert!(!tokens.allows(b""));
        assert!(Tokens::parse("\n# only a comment\n").is_err());
        let error = Tokens::parse("good\nbad token\n").unwrap_err();
        assert!(
            error.contains("line 2") && !error.contains("bad token"),
            "{error}"
        );
        assert!(!format!("{tokens:?}").contains(TOKEN));
    }

    #[test]
    fn check_3_a_token_is_needed() {
        assert_eq!(write(&put("Content-Length: 1\r\n")), Err(401));
        assert_eq!(
            write(&put("Content-Length: 1\r\nAuthorization: Bearer wrong\r\n")),
            Err(401)
        );
        let auth = format!("Authorization: Bearer {TOKEN}\r\n");
        assert_eq!(
            write(&put(&format!("Content-Length: 1\r\n{auth}{auth}"))),
            Err(401),
            "a repeated Authorization is no token"
        );
        assert_eq!(
            write(&format!(
                "DELETE /live/a.ts HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
            )),
            Ok(Write::Delete {
                path: path::clean(b"/live/a.ts").unwrap()
            })
        );
    }

    #[test]
    fn check_4_and_5_framing_and_size() {
        let auth = format!("Authorization: Bearer {TOKEN}\r\n");
        let path = path::clean(b"/live/a.ts").unwrap();
        assert_eq!(write(&put(&auth)), Err(411));
        assert_eq!(
            write(&put(&format!("{auth}Content-Length: 0\r\n"))),
            Ok(Write::Put {
                path: path.clone(),
                framing: BodyFraming::None
            })
        );
        assert_eq!(
            write(&put(&format!("{auth}Content-Length: 1000\r\n"))),
            Ok(Write::Put {
                path: path.clone(),
                framing: BodyFraming::Length(1000)
            })
        );
        assert_eq!(
            write(&put(&format!("{auth}Content-Length: 1001\r\n"))),
            Err(413)
        );
        assert_eq!(
            write(&put(&format!("{auth}Transfer-Encoding: chunked\r\n"))),
            Ok(Write::Put {
                path,
                framing: BodyFraming::Chunked
            })
        );
    }
}
