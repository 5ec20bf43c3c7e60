//! deployer: a declarative provisioning engine that runs Ansible-layout projects.
pub mod modules;
pub mod vault;
