//! deployer: a declarative provisioning engine that runs Ansible-layout projects.
pub mod cli;
pub mod connection;
pub mod facts;
pub mod lint;
pub mod modules;
pub mod plane;
pub mod project;
pub mod report;
pub mod run;
pub mod secrets;
pub mod state;
pub mod template;
pub mod vars;
pub mod vault;
pub mod yaml;
