//! Command-line parsing (clap, derive): `tidefeed serve [--config FILE]
//! [--listen ADDR] [--data-dir DIR]`, `tidefeed print-config`, `--version`,
//! `--help`. Parsing is a pure function of the arguments ([`parse`]),
//! tested below; `main` only decides what to do with the result.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Configuration, lowest precedence first: embedded defaults, --config FILE,
environment variables TIDEFEED_<SECTION>__<KEY> (e.g.
TIDEFEED_STORAGE__DURABILITY=async), then flags. `tidefeed print-config`
prints a commented file with every key and its default.";

#[derive(Debug, PartialEq, Eq, Parser)]
#[command(
    name = "tidefeed",
    version,
    about = "A change-data-capture store: rows in, an ordered, resumable change feed out.",
    after_help = AFTER_HELP,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Open the data directory and serve the HTTP API until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Print a commented configuration file with every key at its default.
    PrintConfig,
}

#[derive(Debug, Default, PartialEq, Eq, Args)]
pub struct ServeArgs {
    /// TOML configuration file (keys it leaves out keep their defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, overriding server.listen (e.g. 127.0.0.1:7070).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory, overriding storage.data_dir.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Parses the full argument list (program name first). `Err` carries
/// clap's message and kind: usage errors (exit code 2) as well as the
/// `--help` and `--version` texts (exit code 0); `Error::exit` prints and
/// exits accordingly.
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args)
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse_str(args: &str) -> Result<Cli, clap::Error> {
        parse(std::iter::once("tidefeed").chain(args.split_whitespace()))
    }

    fn command(args: &str) -> Command {
        parse_str(args)
            .unwrap_or_else(|e| panic!("{args}: {e}"))
            .command
    }

    #[test]
    fn serve_flags_are_parsed() {
        assert_eq!(
            command("serve --config a.toml --listen 127.0.0.1:9 --data-dir /d"),
            Command::Serve(ServeArgs {
                config: Some("a.toml".into()),
                listen: Some("127.0.0.1:9".parse().unwrap()),
                data_dir: Some("/d".into()),
            })
        );
        assert_eq!(
            command("serve --listen=[::1]:7070"),
            Command::Serve(ServeArgs {
                listen: Some("[::1]:7070".parse().unwrap()),
                ..ServeArgs::default()
            })
        );
        assert_eq!(command("serve"), Command::Serve(ServeArgs::default()));
        assert_eq!(command("print-config"), Command::PrintConfig);
    }

    #[test]
    fn help_and_version_are_not_usage_errors() {
        for (args, kind) in [
            ("--help", ErrorKind::DisplayHelp),
            ("-h", ErrorKind::DisplayHelp),
            ("serve --help", ErrorKind::DisplayHelp),
            ("help serve", ErrorKind::DisplayHelp),
            ("--version", ErrorKind::DisplayVersion),
            ("-V", ErrorKind::DisplayVersion),
        ] {
            let error = parse_str(args).unwrap_err();
            assert_eq!(error.kind(), kind, "{args}");
            assert_eq!(error.exit_code(), 0, "{args}");
        }
        let help = parse_str("serve --help").unwrap_err().to_string();
        for flag in ["--config <FILE>", "--listen <ADDR>", "--data-dir <DIR>"] {
            assert!(help.contains(flag), "{help}");
        }
        let help = parse_str("--help").unwrap_err().to_string();
        assert!(
            help.contains("print-config") && help.contains("TIDEFEED_<SECTION>__<KEY>"),
            "{help}"
        );
        let version = parse_str("--version").unwrap_err().to_string();
        assert_eq!(
            version.trim(),
            format!("tidefeed {}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn bad_arguments_are_usage_errors_that_say_what_is_wrong() {
        for (args, kind, shown) in [
            (
                "serve --listen nowhere",
                ErrorKind::ValueValidation,
                "--listen",
            ),
            ("serve --data-dir", ErrorKind::InvalidValue, "--data-dir"),
            (
                "serve --frobnicate",
                ErrorKind::UnknownArgument,
                "--frobnicate",
            ),
            (
                "serve --data_dir /d",
                ErrorKind::UnknownArgument,
                "--data-dir",
            ),
            ("launch", ErrorKind::InvalidSubcommand, "launch"),
            ("print-config extra", ErrorKind::UnknownArgument, "extra"),
            (
                "serve --config a --config b",
                ErrorKind::ArgumentConflict,
                "--config",
            ),
            (
                "",
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
                "print-config",
            ),
        ] {
            let error = parse_str(args).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.kind(), kind, "{args}: {message}");
            assert_eq!(error.exit_code(), 2, "{args}");
            assert!(message.contains(shown), "{args}: {message}");
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
