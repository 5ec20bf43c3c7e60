//! Modules: each one turns desired arguments and observed state into a plan,
//! then applies it.
pub mod args;
pub mod blockinfile;
pub mod lineinfile;
pub mod text_edit;
#[cfg(test)]
mod textedit_oracle;
#[cfg(test)]
mod textedit_oracle_check;
