//! A minimal HTTP/1.1 client: one request at a time per keep-alive
//! connection, and server-sent event streams.
//!
//! It is deliberately lean (like wrk): the load generator shares two cores
//! with the servers it measures, so every microsecond it spends per request
//! is taken from them. Response heads are parsed by `httparse`; bodies are
//! `Content-Length` framed (REST) or chunked (SSE).

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READ_CHUNK: usize = 16 * 1024;

pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

/// A response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// How the body of a response is framed.
enum Framing {
    Length(usize),
    Chunked,
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> io::Result<HttpConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(HttpConn {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
        })
    }

    /// Reads more bytes into the buffer; an error at end of stream.
    async fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        self.end += n;
        Ok(())
    }

    /// Reads a response head; returns status and framing, with the head
    /// consumed.
    async fn read_head(&mut self) -> io::Result<(u16, Framing)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 24];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf[self.start..self.end]) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = response.code.unwrap_or(0);
                    let mut framing = Framing::Length(0);
                    for header in response.headers.iter() {
                        if header.name.eq_ignore_ascii_case("content-length") {
                            let text = std::str::from_utf8(header.value).unwrap_or("");
                            let len = text
                                .trim()
                                .parse()
                                .map_err(|_| invalid(format!("bad content-length {text:?}")))?;
                            framing = Framing::Length(len);
                        } else if header.name.eq_ignore_ascii_case("transfer-encoding")
                            && header.value.eq_ignore_ascii_case(b"chunked")
                        {
                            framing = Framing::Chunked;
                        }
                    }
                    self.start += len;
                    return Ok((status, framing));
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(error) => return Err(invalid(format!("bad response head: {error}"))),
            }
        }
    }

    /// Sends one request (bytes as written by a `*_request` function) and
    /// reads its response.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        let (status, framing) = self.read_head().await?;
        let Framing::Length(len) = framing else {
            return Err(invalid("a chunked response to a REST request".into()));
        };
        while self.end - self.start < len {
            self.fill().await?;
        }
        let body = self.buf[self.start..self.start + len].to_vec();
        self.start += len;
        Ok(Response { status, body })
    }

    /// Sends a request that must succeed with 200 or 201.
    pub async fn send_ok(&mut self, request: &[u8]) -> io::Result<Vec<u8>> {
        let response = self.send(request).await?;
        if response.status != 200 && response.status != 201 {
            return Err(invalid(format!(
                "HTTP {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            )));
        }
        Ok(response.body)
    }

    /// Opens a server-sent event stream with a GET of `path`; returns once
    /// the response head (200) has arrived, so the subscription exists.
    pub async fn open_stream(mut self, path: &str) -> io::Result<SseStream> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        );
        self.stream.write_all(request.as_bytes()).await?;
        let (status, framing) = self.read_head().await?;
        if status != 200 {
            return Err(invalid(format!("stream answered HTTP {status}")));
        }
        if !matches!(framing, Framing::Chunked) {
            return Err(invalid("stream body is not chunked".into()));
        }
        Ok(SseStream {
            conn: self,
            chunk: ChunkState::Size,
            events: Vec::with_capacity(READ_CHUNK),
        })
    }
}

/// Writes a request with a JSON body into `out` (cleared first).
pub fn json_request(out: &mut Vec<u8>, method: &str, path: &str, body: &[u8]) {
    use std::io::Write;
    out.clear();
    write!(
        out,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("writing to a Vec");
    out.extend_from_slice(body);
}

/// Finds `"seq":N` in a small JSON body.
pub fn seq_of(body: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(body, b"\"seq\":")? + 6;
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits]).ok()?.parse().ok()
}

enum ChunkState {
    /// Reading a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes left.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
}

/// An open change stream: de-chunks the body and splits it into SSE
/// frames.
pub struct SseStream {
    conn: HttpConn,
    chunk: ChunkState,
    /// De-chunked bytes not yet split into frames.
    events: Vec<u8>,
}

/// What a stream delivered in one read: change events (their `id:`), all
/// received at one instant.
pub struct Delivery {
    pub at: Instant,
    pub seqs: Vec<u64>,
}

impl SseStream {
    /// Waits for the next read's worth of bytes and returns the change
    /// events completed by it (possibly none: keep-alives, resolved
    /// markers, partial frames). Resolved markers and comments are skipped;
    /// an `event: error` is an error.
    pub async fn next(&mut self, out: &mut Delivery) -> io::Result<()> {
        out.seqs.clear();
        // Whatever is left from the last read is an incomplete chunk line
        // or frame: it needs more bytes.
        self.conn.fill().await?;
        out.at = Instant::now();
        self.dechunk()?;
        self.split_frames(&mut out.seqs)
    }

    /// Moves chunk data from the connection buffer to `events`.
    fn dechunk(&mut self) -> io::Result<()> {
        let conn = &mut self.conn;
        loop {
            let input = &conn.buf[conn.start..conn.end];
            if input.is_empty() {
                return Ok(());
            }
            match self.chunk {
                ChunkState::Size => {
                    let Some(nl) = memchr::memchr(b'\n', input) else {
                        return Ok(());
                    };
                    let line = std::str::from_utf8(&input[..nl])
                        .map_err(|_| invalid("bad chunk size".into()))?;
                    let hex = line.trim_end_matches('\r').split(';').next().unwrap_or("");
                    let size = usize::from_str_radix(hex.trim(), 16)
                        .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
                    if size == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended"));
                    }
                    conn.start += nl + 1;
                    self.chunk = ChunkState::Data(size);
                }
                ChunkState::Data(left) => {
                    let take = left.min(input.len());
                    self.events.extend_from_slice(&input[..take]);
                    conn.start += take;
                    self.chunk = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    if input.len() < 2 {
                        return Ok(());
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(invalid("chunk data not followed by CRLF".into()));
                    }
                    conn.start += 2;
                    self.chunk = ChunkState::Size;
                }
            }
        }
    }

    /// Splits complete frames (ending in a blank line) off `events`.
    fn split_frames(&mut self, seqs: &mut Vec<u64>) -> io::Result<()> {
        let mut at = 0;
        let bytes = &self.events[..];
        while let Some(end) = memchr::memmem::find(&bytes[at..], b"\n\n") {
            let frame = &bytes[at..at + end + 1];
            at += end + 2;
            let mut id = None;
            let mut kind: &[u8] = b"";
            for line in frame.split(|&b| b == b'\n') {
                if let Some(value) = line.strip_prefix(b"id: ") {
                    id = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                } else if let Some(value) = line.strip_prefix(b"event: ") {
                    kind = value;
                } else if line.starts_with(b"data: ") {
                    if kind == b"error" {
                        return Err(invalid(format!(
                            "stream error: {}",
                            String::from_utf8_lossy(line)
                        )));
                    }
                    // Only `id:` and `event:` precede `data:`; the rest of
                    // the frame is the event itself.
                    break;
                }
            }
            if kind.is_empty() {
                if let Some(id) = id {
                    seqs.push(id);
                }
            }
        }
        self.events.drain(..at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_seq() {
        assert_eq!(seq_of(br#"{"seq":42,"op":"insert"}"#), Some(42));
        assert_eq!(seq_of(br#"{"op":"insert"}"#), None);
    }
}
