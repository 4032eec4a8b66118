//! Operator choices the planner applies to every response: CORS, caching
//! policy, precompressed sidecars and directory index pages. Built once from
//! the flags; the planner only reads it.

use super::path::CleanPath;
use super::upload::Ingest;

/// What the planner needs from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--cors`: which origins may read responses from scripts.
    pub cors: Option<Cors>,
    /// `--cache-control`: the first matching rule gives the header.
    pub cache_rules: Vec<CacheRule>,
    /// `--index`: directories get a player page instead of 403.
    pub index: bool,
    /// `--ingest`: where PUT and DELETE may write.
    pub ingest: Option<Ingest>,
}

/// Origins allowed by `--cors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// `*`: any origin, answered with `Access-Control-Allow-Origin: *`.
    AnyOrigin,
    /// Exact origins (`https://player.example.com`); a match is echoed back
    /// with `Vary: Origin`.
    Origins(Vec<String>),
}

impl Cors {
    /// Parses `*` or a comma-separated list of origins.
    pub fn parse(value: &str) -> Result<Cors, String> {
        if value.trim() == "*" {
            return Ok(Cors::AnyOrigin);
        }
        let origins: Vec<String> = value
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        if origins.is_empty()
            || origins
                .iter()
                .any(|o| !(o.starts_with("http://") || o.starts_with("https://")))
        {
            return Err(format!(
                "{value:?}: expected * or origins like https://player.example.com"
            ));
        }
        Ok(Cors::Origins(origins))
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if allowed.
    pub fn allow_origin<'a>(&'a self, origin: Option<&'a [u8]>) -> Option<&'a [u8]> {
        match self {
            Cors::AnyOrigin => Some(b"*"),
            Cors::Origins(list) => {
                let origin = origin?;
                list.iter()
                    .any(|o| o.as_bytes() == origin)
                    .then_some(origin)
            }
        }
    }

    /// Whether responses vary by `Origin` (true unless any origin is allowed).
    pub fn varies(&self) -> bool {
        matches!(self, Cors::Origins(_))
    }
}

/// One `--cache-control` rule: `.ext=VALUE` or `/prefix/=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRule {
    pub matcher: CacheMatcher,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheMatcher {
    /// A file extension, case-insensitive, without the dot.
    Extension(String),
    /// A path prefix under the root, without the leading slash.
    Prefix(String),
    /// `*`: every file.
    Any,
}

impl CacheRule {
    /// Parses `.m3u8=no-cache`, `/live/=max-age=2` or `*=max-age=60`.
    pub fn parse(value: &str) -> Result<CacheRule, String> {
        let (pattern, header) = value.split_once('=').ok_or_else(|| {
            format!("{value:?}: expected PATTERN=VALUE, like .m4s=max-age=31536000")
        })?;
        let header = header.trim();
        if header.is_empty() || header.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(format!(
                "{value:?}: the header value is empty or has control bytes"
            ));
        }
        let matcher = match pattern.trim() {
            "*" => CacheMatcher::Any,
            p if p.starts_with('.') && p.len() > 1 => {
                CacheMatcher::Extension(p[1..].to_ascii_lowercase())
            }
            p if p.starts_with('/') => CacheMatcher::Prefix(p.trim_start_matches('/').to_string()),
            _ => return Err(format!("{value:?}: the pattern must be .ext, /prefix or *")),
        };
        Ok(CacheRule {
            matcher,
            value: header.to_string(),
        })
    }

    fn matches(&self, path: &CleanPath) -> bool {
        match &self.matcher {
            CacheMatcher::Any => true,
            CacheMatcher::Extension(ext) => path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case(ext.as_bytes())),
            CacheMatcher::Prefix(prefix) => path.relative.starts_with(prefix.as_bytes()),
        }
    }
}

impl Policy {
    /// The `Cache-Control` value for a file, from the first matching rule.
    pub fn cache_control(&self, path: &CleanPath) -> Option<&str> {
        self.cache_rules
            .iter()
            .find(|rule| rule.matches(path))
            .map(|rule| rule.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::path::clean;

    #[test]
    fn cors_origins() {
        assert_eq!(Cors::parse("*"), Ok(Cors::AnyOrigin));
        let list = Cors::parse("https://a.example, http://b.example:8080/").unwrap();
        assert_eq!(
            list.allow_origin(Some(b"https://a.example")),
            Some(&b"https://a.example"[..])
        );
        assert_eq!(
            list.allow_origin(Some(b"http://b.example:8080")),
            Some(&b"http://b.example:8080"[..])
        );
        assert_eq!(list.allow_origin(Some(b"https://evil.example")), None);
        assert_eq!(list.allow_origin(None), None);
        assert_eq!(Cors::AnyOrigin.allow_origin(None), Some(&b"*"[..]));
        assert!(Cors::parse("").is_err() && Cors::parse("example.com").is_err());
    }

    #[test]
    fn cache_rules_first_match_wins() {
        let policy = Policy {
            cache_rules: [
                "/live/=no-store",
                ".m3u8=no-cache",
                ".M4S=max-age=31536000, immutable",
                "*=max-age=60",
            ]
            .iter()
            .map(|r| CacheRule::parse(r).unwrap())
            .collect(),
            ..Policy::default()
        };
        let of = |t: &str| policy.cache_control(&clean(t.as_bytes()).unwrap());
        assert_eq!(of("/live/a.m3u8"), Some("no-store"));
        assert_eq!(of("/vod/a.m3u8"), Some("no-cache"));
        assert_eq!(of("/vod/seg1.m4s"), Some("max-age=31536000, immutable"));
        assert_eq!(of("/poster.jpg"), Some("max-age=60"));
        for bad in ["m3u8=no-cache", ".m3u8=", "no-equals", ".x=a\nb"] {
            assert!(CacheRule::parse(bad).is_err(), "{bad}");
        }
    }
}
