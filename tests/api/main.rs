//! Magdi's integration tests: the real server on 127.0.0.1:0, the real SQLite
//! file, real HTTP. The only fake is the model provider, itself a real HTTP
//! server on loopback.

mod accounts;
mod artifacts;
mod contract;
mod conversations;
mod cores;
mod crash;
mod disk;
mod isolation;
mod logs;
mod offline;
mod operations;
mod providers;
mod support;
mod system;
mod usage;
