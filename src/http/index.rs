//! `--index`: a directory as a page of players. Every name is escaped for
//! HTML and percent-encoded for URLs, and the page is served with a
//! Content-Security-Policy that forbids scripts, so a hostile file name stays
//! inert text.

use super::mime;
use super::path::CleanPath;
use std::fmt::Write;

/// Sent with the page: no scripts, media and inline styles from here only.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; media-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'";

/// One directory entry as the I/O layer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub is_dir: bool,
}

/// How an entry appears on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Directory,
    Video,
    Audio,
    /// HLS: a `<video>` the browser can play where it supports HLS natively.
    HlsManifest,
    /// DASH and anything else a player page links to.
    Link,
}

fn kind_of(entry: &Entry) -> Option<Kind> {
    if entry.name.starts_with(b".") {
        return None;
    }
    if entry.is_dir {
        return Some(Kind::Directory);
    }
    let ext = entry
        .name
        .iter()
        .rposition(|&b| b == b'.')
        .map(|dot| &entry.name[dot + 1..]);
    let content_type = mime::content_type(ext);
    Some(match content_type {
        "application/vnd.apple.mpegurl" => Kind::HlsManifest,
        "application/dash+xml" => Kind::Link,
        "video/iso.segment" | "video/mp2t" => return None,
        t if t.starts_with("video/") => Kind::Video,
        t if t.starts_with("audio/") => Kind::Audio,
        _ => return None,
    })
}

/// The page for directory `dir` holding `entries`.
pub fn render(dir: &CleanPath, entries: &[Entry]) -> String {
    let mut shown: Vec<(Kind, &Entry)> = entries
        .iter()
        .filter_map(|e| kind_of(e).map(|k| (k, e)))
        .collect();
    shown.sort_by(|a, b| {
        (a.0 != Kind::Directory, &a.1.name).cmp(&(b.0 != Kind::Directory, &b.1.name))
    });
    let title = html_escape(&format!("/{}", String::from_utf8_lossy(&dir.relative)));
    let mut page = String::with_capacity(1024 + shown.len() * 256);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<link rel=\"icon\" href=\"data:,\">\
<title>{title}</title><style>body{{font-family:sans-serif;margin:2em}}\
figure{{display:inline-block;margin:1em;vertical-align:top}}video{{width:480px;max-width:100%;background:#000}}</style>\
</head><body><h1>{title}</h1>\n"
    );
    if !dir.relative.is_empty() {
        let _ = writeln!(page, "<p><a href=\"{}\">..</a></p>", parent_href(dir));
    }
    for (kind, entry) in shown {
        let href = href_for(dir, &entry.name, kind == Kind::Directory);
        let name = html_escape(&String::from_utf8_lossy(&entry.name));
        let _ = match kind {
            Kind::Directory => writeln!(page, "<p><a href=\"{href}\">{name}/</a></p>"),
            Kind::Video | Kind::HlsManifest => writeln!(
                page,
                "<figure><video controls preload=\"metadata\" src=\"{href}\"></video><figcaption><a href=\"{href}\">{name}</a></figcaption></figure>"
            ),
            Kind::Audio => writeln!(
                page,
                "<figure><audio controls preload=\"metadata\" src=\"{href}\"></audio><figcaption><a href=\"{href}\">{name}</a></figcaption></figure>"
            ),
            Kind::Link => writeln!(page, "<p><a href=\"{href}\">{name}</a></p>"),
        };
    }
    page.push_str("</body></html>\n");
    page
}

/// An absolute, percent-encoded URL path for an entry of `dir`.
fn href_for(dir: &CleanPath, name: &[u8], is_dir: bool) -> String {
    let mut href = String::from("/");
    if !dir.relative.is_empty() {
        for segment in dir.relative.split(|&b| b == b'/') {
            percent_encode_into(&mut href, segment);
            href.push('/');
        }
    }
    percent_encode_into(&mut href, name);
    if is_dir {
        href.push('/');
    }
    href
}

fn parent_href(dir: &CleanPath) -> String {
    let mut segments: Vec<&[u8]> = dir.relative.split(|&b| b == b'/').collect();
    segments.pop();
    let mut href = String::from("/");
    for segment in segments {
        percent_encode_into(&mut href, segment);
        href.push('/');
    }
    href
}

/// Keeps RFC 3986 unreserved bytes; escapes every other byte as `%XX`.
fn percent_encode_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Escapes the five characters that matter in HTML text and attributes.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::path::clean;

    fn entry(name: &str, is_dir: bool) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            is_dir,
        }
    }

    #[test]
    fn lists_players_for_media_and_links_for_directories() {
        let dir = clean(b"/shows").unwrap();
        let page = render(
            &dir,
            &[
                entry("b.mp4", false),
                entry("a.webm", false),
                entry("song.mp3", false),
                entry("live.m3u8", false),
                entry("seg1.m4s", false),
                entry("notes.txt", false),
                entry(".hidden.mp4", false),
                entry("season 2", true),
            ],
        );
        assert!(page.contains("<video controls preload=\"metadata\" src=\"/shows/a.webm\">"));
        assert!(page.contains("src=\"/shows/b.mp4\""));
        assert!(page.contains("<audio controls preload=\"metadata\" src=\"/shows/song.mp3\">"));
        assert!(page.contains("src=\"/shows/live.m3u8\""));
        assert!(page.contains("<a href=\"/shows/season%202/\">season 2/</a>"));
        assert!(page.contains("<a href=\"/\">..</a>"));
        // An empty inline icon: browsers ask no /favicon.ico (a 404 per view).
        assert!(page.contains("<link rel=\"icon\" href=\"data:,\">"));
        for hidden in ["seg1.m4s", "notes.txt", ".hidden"] {
            assert!(!page.contains(hidden), "{hidden}");
        }
        assert!(
            page.find("season").unwrap() < page.find("a.webm").unwrap(),
            "directories first"
        );
    }

    #[test]
    fn hostile_names_are_inert() {
        let dir = clean(b"/").unwrap();
        let names = [
            "<script>alert(1)</script>.mp4",
            "\"><img src=x onerror=alert(1)>.mp4",
            "it's.mp4",
            "a&amp;b.mp4",
            "ünïcødé 🎬.webm",
            "x\" onload=\"alert(1).webm",
        ];
        let entries: Vec<Entry> = names.iter().map(|n| entry(n, false)).collect();
        let page = render(&dir, &entries);
        assert!(!page.contains("<script>") && !page.contains("<img"));
        assert!(!page.contains("onerror=alert(1)>") || page.contains("&quot;&gt;&lt;img"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;.mp4"));
        assert!(page.contains("src=\"/%3Cscript%3Ealert%281%29%3C%2Fscript%3E.mp4\""));
        assert!(page.contains("it&#39;s.mp4"));
        assert!(page.contains("a&amp;amp;b.mp4"));
        assert!(page.contains("ünïcødé 🎬.webm"));
        assert!(page.contains("%C3%BCn%C3%AFc%C3%B8d%C3%A9%20%F0%9F%8E%AC.webm"));
        // Only the page's own tags and attributes exist: every `<` opens one
        // of them, and every attribute value stays inside its quotes.
        let allowed = [
            "<figure>",
            "</figure>",
            "<video controls preload=\"metadata\" src=\"",
            "</video>",
            "<figcaption>",
            "</figcaption>",
            "<a href=\"",
            "</a>",
        ];
        for line in page.lines().filter(|l| l.contains("<figure>")) {
            assert_eq!(line.matches('"').count() % 2, 0, "{line}");
            for (at, _) in line.match_indices('<') {
                assert!(
                    allowed.iter().any(|tag| line[at..].starts_with(tag)),
                    "{line}"
                );
            }
            for attribute in line.split('"').skip(1).step_by(2) {
                assert!(
                    !attribute.contains(['<', '>', '"', '\'', ' ']),
                    "{attribute}"
                );
            }
        }
    }
}
