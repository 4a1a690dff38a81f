//! The `spotplan` command line.
