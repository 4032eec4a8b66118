//! Command-line flags, parsed once into the [`Config`] every core gets a copy of.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything a core needs to know about how to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The directory served; absolute, so cores do not depend on the cwd.
    pub root: PathBuf,
    /// Where every core's listener binds (port 0 picks one port for all).
    pub listen: SocketAddr,
    /// The CPUs to run one pinned executor on, in ascending order.
    pub cpus: Vec<usize>,
    /// Serve symlinks that lead outside the root.
    pub follow_symlinks: bool,
    /// Listen backlog per core's socket.
    pub backlog: u32,
}

/// ringcast: a thread-per-core HTTP/1.1 media server (GET and HEAD of files,
/// byte ranges, validators) on glommio and io_uring.
#[derive(Debug, Parser)]
#[command(name = "ringcast", version, about, long_about = None)]
struct Flags {
    /// Directory to serve. Nothing outside it is ever sent.
    #[arg(long, value_name = "DIR", default_value = ".", value_parser = parse_root)]
    root: PathBuf,

    /// Address and port every core listens on (SO_REUSEPORT). Port 0 picks a
    /// free port, shared by all cores and printed at startup.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// CPUs to serve on, one pinned executor each: a list like `0,2-3`.
    /// Default: every CPU this process may run on.
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    cpus: Option<CpuList>,

    /// Serve symlinks whose targets lie outside the root (refused by default).
    #[arg(long)]
    follow_symlinks: bool,

    /// Pending-connection backlog of each core's listening socket.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    backlog: u32,
}

impl Config {
    /// Parses the process arguments. Help and version print and exit 0; any
    /// bad value prints one line on stderr and exits with code 2.
    pub fn from_args() -> Config {
        Self::try_from_iter(std::env::args_os()).unwrap_or_else(|error| {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                error.exit();
            }
            let text = error.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("ringcast: {}", first.trim_start_matches("error: "));
            std::process::exit(2);
        })
    }

    /// Parses an argument list (the first item is the program name).
    pub fn try_from_iter<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let flags = Flags::try_parse_from(args)?;
        let cpus = match flags.cpus {
            Some(CpuList(cpus)) => cpus,
            None => online_cpus(),
        };
        Ok(Config {
            root: flags.root,
            listen: flags.listen,
            cpus,
            follow_symlinks: flags.follow_symlinks,
            backlog: flags.backlog,
        })
    }
}

/// The CPUs this process may run on.
fn online_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus.sort_unstable();
    cpus
}

fn parse_root(value: &str) -> Result<PathBuf, String> {
    let path = std::fs::canonicalize(value).map_err(|e| format!("cannot use {value:?}: {e}"))?;
    if !path.is_dir() {
        return Err(format!("{value:?} is not a directory"));
    }
    Ok(path)
}

/// A parsed `--cpus` value (a newtype so clap takes it as one value).
#[derive(Debug, Clone)]
struct CpuList(Vec<usize>);

/// Parses `0,2-3` into `[0, 2, 3]`, checking each CPU is one we may run on.
fn parse_cpu_list(value: &str) -> Result<CpuList, String> {
    let cpus = expand_cpu_list(value)?;
    let online = online_cpus();
    if let Some(cpu) = cpus.iter().find(|cpu| !online.contains(cpu)) {
        return Err(format!(
            "CPU {cpu} is not available (available: {online:?})"
        ));
    }
    Ok(CpuList(cpus))
}

/// The syntax half of [`parse_cpu_list`]: ranges and singles, no duplicates.
fn expand_cpu_list(value: &str) -> Result<Vec<usize>, String> {
    /// More CPUs than any machine we would run on; bounds `0-999999999`.
    const MAX_CPU: usize = 4096;
    let number = |s: &str| -> Result<usize, String> {
        match s.trim().parse::<usize>() {
            Ok(n) if n < MAX_CPU => Ok(n),
            _ => Err(format!("{s:?} is not a CPU number")),
        }
    };
    let mut cpus = Vec::new();
    for item in value.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(item)?, number(item)?),
        };
        if first > last {
            return Err(format!("{item:?} is a backwards range"));
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    let before = cpus.len();
    cpus.dedup();
    if cpus.len() != before {
        return Err(format!("{value:?} lists a CPU twice"));
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_the_current_directory_on_8080() {
        let config = Config::try_from_iter(["ringcast"]).unwrap();
        assert_eq!(
            config.root,
            std::env::current_dir().unwrap().canonicalize().unwrap()
        );
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(!config.cpus.is_empty());
        assert!(!config.follow_symlinks);
    }

    #[test]
    fn cpus_flag_reaches_the_config() {
        let config = Config::try_from_iter(["ringcast", "--cpus", "0"]).unwrap();
        assert_eq!(config.cpus, vec![0]);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(expand_cpu_list("0"), Ok(vec![0]));
        assert_eq!(expand_cpu_list("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(expand_cpu_list("3,1"), Ok(vec![1, 3]));
        for bad in [
            "",
            "a",
            "1-",
            "-1",
            "3-1",
            "0,0",
            "0-2,1",
            "99999999999999999999",
            "5000",
        ] {
            assert!(expand_cpu_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        for args in [
            &["ringcast", "--listen", "nonsense"][..],
            &["ringcast", "--root", "/definitely/not/here"],
            &["ringcast", "--root", "/etc/hostname"],
            &["ringcast", "--cpus", "100000"],
            &["ringcast", "--backlog", "0"],
            &["ringcast", "--bogus"],
            &["ringcast", "--cpus", "0-"],
        ] {
            assert!(Config::try_from_iter(args).is_err(), "{args:?}");
        }
    }
}
