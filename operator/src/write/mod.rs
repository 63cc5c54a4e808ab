//! Everything that writes to the API server, and the bookkeeping of writes the caches have not caught up with yet
//! (so a reconcile that runs again before its own write is seen neither repeats it nor undoes it).

pub mod apply;
pub mod digest;
pub mod events;
pub mod expiring;
pub mod finalizer;
pub mod grants;
pub mod in_flight;
pub mod status;
pub mod usage;
