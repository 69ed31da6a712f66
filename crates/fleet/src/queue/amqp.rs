//! placeholder
#[derive(Debug, Clone)]
pub struct AmqpConfig;
#[derive(Debug)]
pub struct AmqpQueue;
