//! A minimal Redis (RESP2) client, as lean as the HTTP one so that both
//! servers face the same load generator: commands written as arrays of
//! bulk strings, replies parsed in place from one buffer.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed reply, borrowing its strings from the connection's buffer.
// Status and integer values are read only through `Debug`, in errors.
#[allow(dead_code)]
#[derive(Debug)]
pub enum Reply<'a> {
    Status(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    Bulk(Option<&'a [u8]>),
    Array(Option<Vec<Reply<'a>>>),
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Parses one reply at `buf[at..]`: `Ok(None)` if incomplete, else the
/// reply and the position after it.
fn parse(buf: &[u8], at: usize) -> io::Result<Option<(Reply<'_>, usize)>> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(nl) = memchr::memchr(b'\n', &buf[at..]) else {
        return Ok(None);
    };
    let line = &buf[at + 1..at + nl - 1];
    let next = at + nl + 1;
    let number = || -> io::Result<i64> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad RESP number {:?}", String::from_utf8_lossy(line))))
    };
    Ok(Some(match kind {
        b'+' => (Reply::Status(line), next),
        b'-' => (Reply::Error(line), next),
        b':' => (Reply::Int(number()?), next),
        b'$' => {
            let len = number()?;
            if len < 0 {
                (Reply::Bulk(None), next)
            } else {
                let end = next + len as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                (Reply::Bulk(Some(&buf[next..end])), end + 2)
            }
        }
        b'*' => {
            let len = number()?;
            if len < 0 {
                (Reply::Array(None), next)
            } else {
                let mut items = Vec::with_capacity(len as usize);
                let mut pos = next;
                for _ in 0..len {
                    match parse(buf, pos)? {
                        Some((item, after)) => {
                            items.push(item);
                            pos = after;
                        }
                        None => return Ok(None),
                    }
                }
                (Reply::Array(Some(items)), pos)
            }
        }
        other => return Err(invalid(format!("bad RESP type byte {other:#x}"))),
    }))
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    use std::io::Write;
    write!(out, "*{}\r\n", args.len()).expect("writing to a Vec");
    for arg in args {
        write!(out, "${}\r\n", arg.len()).expect("writing to a Vec");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// A stream entry id `ms-n` as one number (`ms << 20 | n`), so it can be
/// matched like a tidefeed seq.
pub fn entry_id(id: &[u8]) -> io::Result<u64> {
    let text = std::str::from_utf8(id).map_err(|_| invalid("bad entry id".into()))?;
    let (ms, n) = text
        .split_once('-')
        .ok_or_else(|| invalid(format!("bad entry id {text}")))?;
    let ms: u64 = ms.parse().map_err(|_| invalid(format!("bad entry id {text}")))?;
    let n: u64 = n.parse().map_err(|_| invalid(format!("bad entry id {text}")))?;
    Ok(ms << 20 | n)
}

pub struct RedisConn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RedisConn {
    pub async fn connect(addr: SocketAddr) -> io::Result<RedisConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RedisConn {
            stream,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        })
    }

    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

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

    /// Reads one reply and hands it to `visit`; a Redis error reply is an
    /// error.
    pub async fn read<T>(&mut self, mut visit: impl FnMut(&Reply<'_>) -> io::Result<T>) -> io::Result<T> {
        loop {
            let parsed = match parse(&self.buf[..self.end], self.start)? {
                Some((reply, after)) => {
                    if let Reply::Error(message) = reply {
                        return Err(invalid(format!("redis: {}", String::from_utf8_lossy(message))));
                    }
                    Some((visit(&reply)?, after))
                }
                None => None,
            };
            match parsed {
                Some((value, after)) => {
                    self.start = after;
                    return Ok(value);
                }
                None => self.fill().await?,
            }
        }
    }
}

fn unexpected(what: &str, reply: &Reply<'_>) -> io::Error {
    invalid(format!("unexpected {what} reply: {reply:?}"))
}

/// The entry ids of an XREAD reply (`[[key, [[id, fields]...]]...]`),
/// appended to `out`.
pub fn xread_ids(reply: &Reply<'_>, out: &mut Vec<u64>) -> io::Result<()> {
    let Reply::Array(Some(streams)) = reply else {
        return Err(unexpected("XREAD", reply));
    };
    for stream in streams {
        let Reply::Array(Some(pair)) = stream else {
            return Err(unexpected("XREAD", reply));
        };
        let Some(Reply::Array(Some(entries))) = pair.get(1) else {
            return Err(unexpected("XREAD", reply));
        };
        for entry in entries {
            match entry {
                Reply::Array(Some(fields)) => match fields.first() {
                    Some(Reply::Bulk(Some(id))) => out.push(entry_id(id)?),
                    _ => return Err(unexpected("XREAD", reply)),
                },
                _ => return Err(unexpected("XREAD", reply)),
            }
        }
    }
    Ok(())
}

/// The entry ids of an EXEC reply of XADDs (`[id...]`), appended to `out`.
pub fn exec_ids(reply: &Reply<'_>, out: &mut Vec<u64>) -> io::Result<()> {
    let Reply::Array(Some(items)) = reply else {
        return Err(unexpected("EXEC", reply));
    };
    for item in items {
        match item {
            Reply::Bulk(Some(id)) => out.push(entry_id(id)?),
            _ => return Err(unexpected("EXEC", reply)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_xread_reply() {
        let reply = b"*1\r\n*2\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n5-0\r\n*2\r\n$1\r\nv\r\n$1\r\nx\r\n*2\r\n$3\r\n5-1\r\n*2\r\n$1\r\nv\r\n$1\r\ny\r\n";
        let (parsed, end) = parse(reply, 0).unwrap().unwrap();
        assert_eq!(end, reply.len());
        let mut ids = Vec::new();
        xread_ids(&parsed, &mut ids).unwrap();
        assert_eq!(ids, vec![5 << 20, 5 << 20 | 1]);
        assert!(parse(&reply[..reply.len() - 1], 0).unwrap().is_none());
    }

    #[test]
    fn parses_an_exec_reply() {
        let reply = b"*2\r\n$3\r\n7-0\r\n$3\r\n7-1\r\n";
        let (parsed, _) = parse(reply, 0).unwrap().unwrap();
        let mut ids = Vec::new();
        exec_ids(&parsed, &mut ids).unwrap();
        assert_eq!(ids, vec![7 << 20, 7 << 20 | 1]);
    }
}
