//! Temporary entry point for testing `deployer vault` (the lead replaces it).
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "deployer")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// ansible-vault compatible secrets.
    Vault(deployer::vault::cli::VaultArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Vault(args) => match deployer::vault::cli::run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
    };
    std::process::exit(code);
}
