//! deployer: a declarative provisioning engine that runs Ansible-layout projects.
pub mod template;
pub mod vault;
