//! Why market data was refused.

/// Why market data was refused. Every variant names the file (or API) and the field or line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    #[error(
        "{file}: not valid JSON at line {line} column {column}: {message} (is the file truncated or not a Spot Advisor file?)"
    )]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: field `{field}`: {problem}")]
    Field {
        file: String,
        field: String,
        problem: String,
    },
    #[error("{file}: line {line}, column `{column}`: {problem}")]
    Csv {
        file: String,
        line: u64,
        column: String,
        problem: String,
    },
    #[error(
        "{file}: has {new} {what} where the last good data had {old} ({lost} lost); refusing it and keeping the last good data"
    )]
    Shrunk {
        file: String,
        what: &'static str,
        old: usize,
        new: usize,
        lost: usize,
    },
    #[error("{file}: {message}")]
    Io { file: String, message: String },
}

impl DataError {
    /// A short fixed category for metrics labels and event reasons (never free text).
    pub fn category(&self) -> &'static str {
        match self {
            DataError::Json { .. } => "InvalidJson",
            DataError::Field { .. } => "InvalidField",
            DataError::Csv { .. } => "InvalidCsv",
            DataError::Shrunk { .. } => "DataShrunk",
            DataError::Io { .. } => "Unreadable",
        }
    }

    pub fn io(file: &str, e: impl std::fmt::Display) -> DataError {
        DataError::Io {
            file: file.into(),
            message: e.to_string(),
        }
    }
}

/// Refuses `new` when it lost more than half of the `what` that `old` had.
pub(crate) fn check_loss(
    file: &str,
    what: &'static str,
    old: usize,
    new: usize,
    lost: usize,
) -> Result<(), DataError> {
    if old > 0 && lost * 2 > old {
        return Err(DataError::Shrunk {
            file: file.into(),
            what,
            old,
            new,
            lost,
        });
    }
    Ok(())
}
