//! Command-line parsing: `tidefeed serve [--config FILE] [--listen ADDR] [--data-dir DIR]`.
//!
//! Hand-written to keep the dependency tree lean; parsing is a pure function
//! of the arguments, tested below.

use std::net::SocketAddr;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: tidefeed serve [--config FILE] [--listen ADDR] [--data-dir DIR]
       tidefeed print-config
       tidefeed --version | --help

Configuration: embedded defaults < --config FILE < TIDEFEED_<SECTION>__<KEY>
environment variables < flags. `tidefeed print-config` prints a commented
example file with every key and its default.";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve(ServeArgs),
    PrintConfig,
    Help,
    Version,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let command = match args.next().as_deref() {
        None | Some("--help" | "-h" | "help") => return Ok(Command::Help),
        Some("--version" | "-V") => return Ok(Command::Version),
        Some("print-config") => Command::PrintConfig,
        Some("serve") => {
            let mut serve = ServeArgs::default();
            while let Some(flag) = args.next() {
                let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
                match flag.as_str() {
                    "--config" => serve.config = Some(value()?.into()),
                    "--data-dir" => serve.data_dir = Some(value()?.into()),
                    "--listen" => {
                        let raw = value()?;
                        serve.listen = Some(raw.parse().map_err(|e| {
                            format!("--listen {raw:?} is not a socket address: {e}")
                        })?);
                    }
                    "--help" | "-h" => return Ok(Command::Help),
                    other => return Err(format!("unknown option {other:?} for serve")),
                }
            }
            return Ok(Command::Serve(serve));
        }
        Some(other) => return Err(format!("unknown command {other:?}")),
    };
    match args.next() {
        Some(extra) => Err(format!("unexpected argument {extra:?}")),
        None => Ok(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &str) -> Result<Command, String> {
        parse(args.split_whitespace().map(String::from))
    }

    #[test]
    fn serve_flags_are_parsed() {
        assert_eq!(
            parse_str("serve --config a.toml --listen 127.0.0.1:9 --data-dir /d"),
            Ok(Command::Serve(ServeArgs {
                config: Some("a.toml".into()),
                listen: Some("127.0.0.1:9".parse().unwrap()),
                data_dir: Some("/d".into()),
            }))
        );
        assert_eq!(parse_str("serve"), Ok(Command::Serve(ServeArgs::default())));
        assert_eq!(parse_str(""), Ok(Command::Help));
        assert_eq!(parse_str("print-config"), Ok(Command::PrintConfig));
    }

    #[test]
    fn bad_arguments_are_explained() {
        assert!(parse_str("serve --listen nowhere")
            .unwrap_err()
            .contains("--listen"));
        assert!(parse_str("serve --data-dir")
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_str("serve --bogus").unwrap_err().contains("--bogus"));
        assert!(parse_str("launch").unwrap_err().contains("launch"));
        assert!(parse_str("print-config extra")
            .unwrap_err()
            .contains("extra"));
    }
}
