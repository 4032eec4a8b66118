//! Media types by file extension (case-insensitive), chosen for what players
//! and browsers accept: `video/iso.segment` for CMAF/fMP4 segments (RFC 9110
//! registry, not the `video/mp4` or octet-stream others send), the Apple HLS type
//! for `.m3u8`, `application/dash+xml` for `.mpd`, `video/mp2t` for `.ts`
//! (never the TypeScript `text/*` some servers send).

/// Types for everything we do not recognise (RFC 9110 §8.3: the recipient may sniff).
pub const DEFAULT: &str = "application/octet-stream";

/// The `Content-Type` for a file with extension `ext` (no dot).
pub fn content_type(ext: Option<&[u8]>) -> &'static str {
    let Some(ext) = ext else { return DEFAULT };
    let mut lower = [0u8; 8];
    if ext.len() > lower.len() {
        return DEFAULT;
    }
    for (dst, src) in lower.iter_mut().zip(ext) {
        *dst = src.to_ascii_lowercase();
    }
    match &lower[..ext.len()] {
        // Video containers.
        b"mp4" | b"m4v" => "video/mp4",
        b"webm" => "video/webm",
        b"mkv" => "video/x-matroska",
        b"mov" => "video/quicktime",
        b"ts" | b"m2ts" => "video/mp2t",
        b"m4s" => "video/iso.segment",
        b"ogv" => "video/ogg",
        b"avi" => "video/x-msvideo",
        // Streaming manifests and subtitles.
        b"m3u8" => "application/vnd.apple.mpegurl",
        b"mpd" => "application/dash+xml",
        b"vtt" => "text/vtt; charset=utf-8",
        b"srt" => "application/x-subrip",
        // Audio.
        b"m4a" => "audio/mp4",
        b"mp3" => "audio/mpeg",
        b"aac" => "audio/aac",
        b"opus" | b"ogg" | b"oga" => "audio/ogg",
        b"flac" => "audio/flac",
        b"wav" => "audio/wav",
        // Posters and thumbnails.
        b"jpg" | b"jpeg" => "image/jpeg",
        b"png" => "image/png",
        b"webp" => "image/webp",
        b"avif" => "image/avif",
        b"gif" => "image/gif",
        b"svg" => "image/svg+xml",
        // The web page around a player.
        b"html" | b"htm" => "text/html; charset=utf-8",
        b"css" => "text/css; charset=utf-8",
        b"js" | b"mjs" => "text/javascript; charset=utf-8",
        b"json" => "application/json",
        b"txt" => "text/plain; charset=utf-8",
        b"xml" => "application/xml",
        b"wasm" => "application/wasm",
        _ => DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ext: &str) -> &'static str {
        content_type(Some(ext.as_bytes()))
    }

    #[test]
    fn media_types_players_expect() {
        let table = [
            ("mp4", "video/mp4"),
            ("m4v", "video/mp4"),
            ("m4a", "audio/mp4"),
            ("webm", "video/webm"),
            ("mkv", "video/x-matroska"),
            ("mov", "video/quicktime"),
            ("ts", "video/mp2t"),
            ("m4s", "video/iso.segment"),
            ("m3u8", "application/vnd.apple.mpegurl"),
            ("mpd", "application/dash+xml"),
            ("mp3", "audio/mpeg"),
            ("aac", "audio/aac"),
            ("opus", "audio/ogg"),
            ("ogg", "audio/ogg"),
            ("flac", "audio/flac"),
            ("vtt", "text/vtt; charset=utf-8"),
            ("srt", "application/x-subrip"),
            ("jpg", "image/jpeg"),
            ("jpeg", "image/jpeg"),
            ("png", "image/png"),
            ("webp", "image/webp"),
            ("json", "application/json"),
            ("html", "text/html; charset=utf-8"),
            ("css", "text/css; charset=utf-8"),
            ("js", "text/javascript; charset=utf-8"),
        ];
        for (ext, ty) in table {
            assert_eq!(of(ext), ty, "{ext}");
        }
    }

    #[test]
    fn extensions_are_case_insensitive() {
        assert_eq!(of("MP4"), "video/mp4");
        assert_eq!(of("M3u8"), "application/vnd.apple.mpegurl");
    }

    #[test]
    fn unknown_is_octet_stream() {
        assert_eq!(of("unknownext"), DEFAULT);
        assert_eq!(of(""), DEFAULT);
        assert_eq!(content_type(None), DEFAULT);
    }
}
