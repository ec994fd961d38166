//! The integration tests, in one binary so the AWS SDK is linked once (zero2prod's layout):
//! one module per area, and `helpers` with one spawn helper per real part (the fake API
//! Gateway control plane, moto_server) and the ways to run certsentinel against them.

mod architecture;
mod awscli;
mod browser;
mod cli;
mod coverage;
mod daemon;
mod deploy;
mod events;
mod helpers;
mod inventory;
mod lifecycle;
mod notify;
mod permissions;
mod report;
mod sandbox;
mod targeted_reads;
