//! Deep verification: per folder, the multiset of body SHA-256s, flags and INTERNALDATE instants.
