//! `ringcast`: flags -> `Config` -> one pinned executor per CPU -> serve.

use ringcast::config::Config;

fn main() {
    let config = Config::from_args();
    if let Err(error) = ringcast::server::run(config) {
        eprintln!("ringcast: {error}");
        std::process::exit(1);
    }
}
