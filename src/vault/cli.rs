//! `deployer vault` subcommands.
