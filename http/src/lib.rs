//! tidefeed's HTTP service: the REST API, server-sent event streams,
//! `/metrics`, health endpoints, auth and limits.
//!
//! Status: not implemented yet; it arrives with issue [4/6]. Nothing here
//! pretends to work.
