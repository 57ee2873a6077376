//! The one error type of the crate. Every check happens before any buffer is
//! allocated, so a bad call costs nothing and never panics.

use std::fmt;

/// Why a convolution was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvError {
    /// A parameter has a value outside its domain (zero stride, zero groups, ...).
    InvalidParameter { name: &'static str, message: String },
    /// An array has a shape that does not fit the others.
    ShapeMismatch(String),
    /// The output would have no steps (`valid` padding with a kernel longer than the input).
    EmptyOutput(String),
    /// The output or a working buffer cannot be allocated (its size overflows the address
    /// space, or the allocator refused it).
    TooLarge(String),
    /// A parameter puts input positions beyond what can be indexed (absurd strides, dilation
    /// or kernel size), though the output itself might be small.
    Overflow(String),
    /// The call was cancelled through a [`crate::CancelToken`] before it finished.
    Cancelled,
    /// A caller-provided output buffer has the wrong shape.
    OutputShape { expected: [usize; 3], received: [usize; 3] },
}

impl fmt::Display for ConvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvError::InvalidParameter { name, message } => write!(f, "invalid `{name}`: {message}"),
            ConvError::ShapeMismatch(message) => f.write_str(message),
            ConvError::EmptyOutput(message) => f.write_str(message),
            ConvError::TooLarge(message) => f.write_str(message),
            ConvError::Overflow(message) => f.write_str(message),
            ConvError::Cancelled => f.write_str("the convolution was cancelled"),
            ConvError::OutputShape { expected, received } => write!(
                f,
                "output buffer has shape {received:?}, expected {expected:?}"
            ),
        }
    }
}

impl std::error::Error for ConvError {}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, ConvError>;
