//! The executor: runs the plan for every folder pair of one account.
