//! CRM records in Postgres (SQLite embedded): migrations, repositories, tenant isolation,
//! encryption of sensitive fields, audit log.
//!
//! Empty until the store issue lands.
