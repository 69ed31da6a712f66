//! placeholder
#[derive(Debug)]
pub struct RedisLocks;
