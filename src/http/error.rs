//! Status codes, and the one place where every error becomes one.

use super::body::ChunkError;
use super::path::PathError;
use super::request::ParseError;
use super::upload::WriteError;

/// The statuses ringcast sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Continue,
    Ok,
    Created,
    NoContent,
    PartialContent,
    NotModified,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    LengthRequired,
    PreconditionFailed,
    ContentTooLarge,
    UriTooLong,
    RangeNotSatisfiable,
    HeaderFieldsTooLarge,
    InternalServerError,
    NotImplemented,
    ServiceUnavailable,
    VersionNotSupported,
    InsufficientStorage,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Continue => 100,
            Status::Ok => 200,
            Status::Created => 201,
            Status::NoContent => 204,
            Status::PartialContent => 206,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::Conflict => 409,
            Status::LengthRequired => 411,
            Status::PreconditionFailed => 412,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::RangeNotSatisfiable => 416,
            Status::HeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
            Status::InsufficientStorage => 507,
        }
    }

    /// The whole status line, CRLF included.
    pub fn status_line(self) -> &'static [u8] {
        match self {
            Status::Continue => b"HTTP/1.1 100 Continue\r\n",
            Status::Ok => b"HTTP/1.1 200 OK\r\n",
            Status::Created => b"HTTP/1.1 201 Created\r\n",
            Status::NoContent => b"HTTP/1.1 204 No Content\r\n",
            Status::PartialContent => b"HTTP/1.1 206 Partial Content\r\n",
            Status::NotModified => b"HTTP/1.1 304 Not Modified\r\n",
            Status::BadRequest => b"HTTP/1.1 400 Bad Request\r\n",
            Status::Unauthorized => b"HTTP/1.1 401 Unauthorized\r\n",
            Status::Forbidden => b"HTTP/1.1 403 Forbidden\r\n",
            Status::NotFound => b"HTTP/1.1 404 Not Found\r\n",
            Status::MethodNotAllowed => b"HTTP/1.1 405 Method Not Allowed\r\n",
            Status::RequestTimeout => b"HTTP/1.1 408 Request Timeout\r\n",
            Status::Conflict => b"HTTP/1.1 409 Conflict\r\n",
            Status::LengthRequired => b"HTTP/1.1 411 Length Required\r\n",
            Status::PreconditionFailed => b"HTTP/1.1 412 Precondition Failed\r\n",
            Status::ContentTooLarge => b"HTTP/1.1 413 Content Too Large\r\n",
            Status::UriTooLong => b"HTTP/1.1 414 URI Too Long\r\n",
            Status::RangeNotSatisfiable => b"HTTP/1.1 416 Range Not Satisfiable\r\n",
            Status::HeaderFieldsTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::InternalServerError => b"HTTP/1.1 500 Internal Server Error\r\n",
            Status::NotImplemented => b"HTTP/1.1 501 Not Implemented\r\n",
            Status::ServiceUnavailable => b"HTTP/1.1 503 Service Unavailable\r\n",
            Status::VersionNotSupported => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
            Status::InsufficientStorage => b"HTTP/1.1 507 Insufficient Storage\r\n",
        }
    }

    /// The code and reason phrase, e.g. `404 Not Found`: the text of error bodies.
    pub fn code_and_reason(self) -> &'static [u8] {
        let line = self.status_line();
        &line["HTTP/1.1 ".len()..line.len() - 2]
    }
}

/// Why a file could not be opened, as the I/O layer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileError {
    /// No such file, or a path component is not a directory.
    NotFound,
    /// The path is a directory: we never list directories.
    IsDirectory,
    /// Not a regular file (device, FIFO, socket), or the OS refused access.
    Forbidden,
    /// A symlink leads outside the root (refused unless --follow-symlinks).
    OutsideRoot,
    /// Out of file descriptors (EMFILE/ENFILE): the client may retry.
    Exhausted,
    /// Any other I/O failure.
    Io,
}

/// Every reason a request ends in an error status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    Parse(ParseError),
    Path(PathError),
    File(FileError),
    Chunk(ChunkError),
    /// A PUT or DELETE refused (see [`super::upload`]).
    Write(WriteError),
    MethodNotAllowed,
    MethodUnknown,
    /// The request head did not arrive whole within the header timeout.
    HeadTimeout,
}

/// The single mapping from errors to statuses.
pub fn status_of(error: RequestError) -> Status {
    match error {
        RequestError::Parse(e) => match e {
            ParseError::RequestLineTooLong => Status::UriTooLong,
            ParseError::HeadTooLarge => Status::HeaderFieldsTooLarge,
            ParseError::UnsupportedVersion => Status::VersionNotSupported,
            _ => Status::BadRequest,
        },
        RequestError::Path(e) => match e {
            PathError::Hidden => Status::NotFound,
            _ => Status::BadRequest,
        },
        RequestError::File(e) => match e {
            FileError::NotFound | FileError::OutsideRoot => Status::NotFound,
            FileError::IsDirectory | FileError::Forbidden => Status::Forbidden,
            FileError::Exhausted => Status::ServiceUnavailable,
            FileError::Io => Status::InternalServerError,
        },
        RequestError::Chunk(_) => Status::BadRequest,
        RequestError::Write(e) => match e {
            WriteError::Unauthorized => Status::Unauthorized,
            WriteError::NotAllowedHere => Status::MethodNotAllowed,
            WriteError::LengthRequired => Status::LengthRequired,
            WriteError::TooLarge => Status::ContentTooLarge,
            WriteError::IsDirectory => Status::Conflict,
            WriteError::NoSpace => Status::InsufficientStorage,
            WriteError::QueueFull => Status::ServiceUnavailable,
            WriteError::Stalled => Status::RequestTimeout,
            WriteError::BadBody => Status::BadRequest,
        },
        RequestError::MethodNotAllowed => Status::MethodNotAllowed,
        RequestError::MethodUnknown => Status::NotImplemented,
        RequestError::HeadTimeout => Status::RequestTimeout,
    }
}

/// Whether the connection can carry another request after this error: only
/// if the request's framing was understood (RFC 9112 §9.6 leaves the rest to us).
pub fn keeps_connection(error: RequestError) -> bool {
    matches!(
        error,
        RequestError::Path(_)
            | RequestError::File(_)
            | RequestError::MethodNotAllowed
            | RequestError::MethodUnknown
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_map_to_rfc9110_15_statuses() {
        let of = |e| status_of(RequestError::Parse(e)).code();
        assert_eq!(of(ParseError::RequestLineTooLong), 414);
        assert_eq!(of(ParseError::HeadTooLarge), 431);
        assert_eq!(of(ParseError::UnsupportedVersion), 505);
        assert_eq!(of(ParseError::BadHost), 400);
        assert_eq!(of(ParseError::BadHeader), 400);
        assert_eq!(of(ParseError::BadTransferEncoding), 400);
    }

    #[test]
    fn path_and_file_errors() {
        assert_eq!(
            status_of(RequestError::Path(PathError::EscapesRoot)).code(),
            400
        );
        assert_eq!(status_of(RequestError::Path(PathError::Hidden)).code(), 404);
        assert_eq!(
            status_of(RequestError::File(FileError::OutsideRoot)).code(),
            404
        );
        assert_eq!(
            status_of(RequestError::File(FileError::IsDirectory)).code(),
            403
        );
        assert_eq!(
            status_of(RequestError::File(FileError::Exhausted)).code(),
            503
        );
        assert_eq!(status_of(RequestError::MethodNotAllowed).code(), 405);
        assert_eq!(status_of(RequestError::MethodUnknown).code(), 501);
        assert_eq!(status_of(RequestError::HeadTimeout).code(), 408);
    }

    #[test]
    fn write_errors_map_to_rfc9110_15_statuses() {
        let of = |e| status_of(RequestError::Write(e)).code();
        assert_eq!(of(WriteError::Unauthorized), 401);
        assert_eq!(of(WriteError::NotAllowedHere), 405);
        assert_eq!(of(WriteError::Stalled), 408);
        assert_eq!(of(WriteError::IsDirectory), 409);
        assert_eq!(of(WriteError::LengthRequired), 411);
        assert_eq!(of(WriteError::TooLarge), 413);
        assert_eq!(of(WriteError::BadBody), 400);
        assert_eq!(of(WriteError::QueueFull), 503);
        assert_eq!(of(WriteError::NoSpace), 507);
    }

    #[test]
    fn status_lines_and_bodies_agree_with_codes() {
        for status in [
            Status::Continue,
            Status::Created,
            Status::ContentTooLarge,
            Status::InsufficientStorage,
            Status::Ok,
            Status::NotFound,
            Status::HeaderFieldsTooLarge,
            Status::VersionNotSupported,
        ] {
            let line = std::str::from_utf8(status.status_line()).unwrap();
            assert!(line.starts_with(&format!("HTTP/1.1 {} ", status.code())));
            assert!(line.ends_with("\r\n"));
            let text = std::str::from_utf8(status.code_and_reason()).unwrap();
            assert_eq!(format!("HTTP/1.1 {text}\r\n"), line);
        }
    }

    #[test]
    fn only_framing_safe_errors_keep_the_connection() {
        assert!(keeps_connection(RequestError::File(FileError::NotFound)));
        assert!(!keeps_connection(RequestError::Parse(ParseError::BadHost)));
        assert!(!keeps_connection(RequestError::Chunk(
            ChunkError::MissingCrlf
        )));
    }
}
