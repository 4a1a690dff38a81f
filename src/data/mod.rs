//! Where market data comes from.
