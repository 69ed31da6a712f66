//! imapfleet-mailgen
