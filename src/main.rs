use clap::Parser;

fn main() {
    let cli = deployer::cli::Cli::parse();
    // Run by ssh while it connects: no runtime to start.
    if let deployer::cli::Command::SshConnect { host, port } = &cli.command {
        std::process::exit(deployer::connection::dial::connect(host, port));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(deployer::cli::run(cli));
    std::process::exit(code);
}
