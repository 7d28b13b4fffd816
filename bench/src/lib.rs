//! The Nexmark generator and (later) the latency benchmark pieces: the
//! open-loop driver and the HDR histogram reporting that `laminar bench`
//! runs on top of the real engine.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod nexmark;
