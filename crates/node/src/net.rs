//! The shell's sockets, picked by build so the rest of the shell names one type:
//!
//! - the simulation build (`--cfg madsim`): madsim's, through `madsim-tokio`;
//! - a plain build: tokio's, real sockets;
//! - a plain build with the `turmoil` feature (what the harness's native build turns on):
//!   turmoil's simulated sockets, for running scenarios on the second engine.

#[cfg(any(madsim, not(feature = "turmoil")))]
pub use tokio::net::{TcpListener, TcpStream};

#[cfg(all(not(madsim), feature = "turmoil"))]
pub use turmoil::net::{TcpListener, TcpStream};
