//! The async shell of the fleet control plane. It moves bytes and timers between TCP and the
//! pure cores of `fleet-core`, and nothing else.
//!
//! It uses tokio's API through `madsim-tokio`: a plain build runs on real tokio and real
//! sockets, and a build with `--cfg madsim` runs the same code inside the simulator; [`net`]
//! picks the sockets, and with the `turmoil` feature it takes turmoil's inside a turmoil
//! simulation.

pub mod agent;
pub mod buggify;
pub mod clock;
pub mod cluster;
pub mod codec;
pub mod disk;
pub mod http;
pub mod machine;
pub mod master;
pub mod net;
pub mod report;
pub mod sync;
pub mod task;
pub mod transport;

pub use agent::{registration, run_agent, AgentControl, AgentHooks, Handler, Handlers, Masters};
pub use master::{run_master, MasterState};
