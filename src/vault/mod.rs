//! ansible-vault compatible encryption (owned by the vault work).
