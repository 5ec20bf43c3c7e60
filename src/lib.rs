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
