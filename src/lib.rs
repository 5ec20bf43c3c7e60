//! deployer: a declarative provisioning engine that runs Ansible-layout projects.
pub mod args;
pub mod cli;
pub mod commands;
pub mod connection;
pub mod facts;
#[doc(hidden)]
pub mod fuzzing;
pub mod lint;
pub mod modules;
pub mod plane;
pub mod preflight;
pub mod project;
pub mod report;
pub mod run;
pub mod secrets;
pub mod shell;
pub mod state;
pub mod template;
pub mod ui;
pub mod vars;
pub mod vault;
pub mod yaml;
pub static T0: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
pub fn phase(n: &str) {
    if std::env::var_os("DEPLOYER_PHASES").is_some() {
        let t = T0.get_or_init(std::time::Instant::now);
        eprintln!("PHASE {:7.2} {n}", t.elapsed().as_secs_f64() * 1000.0);
    }
}
