//! # conv1d_rs
//!
//! The Keras `Conv1D` computation on the CPU: paddings `valid`/`same`/`causal`, strides,
//! dilation, groups, `channels_last` and `channels_first`, `f32` and `f64`. Multi-threaded
//! with rayon; results are bitwise the same for any number of threads. Usable as a plain
//! Rust crate; the Python bindings live behind the `python` feature.
//!
//! ```
//! use conv1d_rs::{conv1d, Conv1dParams, DataFormat, Padding};
//! use ndarray::Array3;
//!
//! // The classic Keras input: one sequence of 56 steps with one feature.
//! let x = Array3::<f32>::ones((1, 56, 1));
//! let kernel = Array3::<f32>::from_elem((3, 1, 16), 0.5); // (kernel_size, in_channels, filters)
//! let params = Conv1dParams::new().padding(Padding::Causal).dilation_rate(2);
//! let y = conv1d(x.view(), kernel.view(), None, &params).unwrap();
//! assert_eq!(y.shape(), &[1, 56, 16]);
//! assert_eq!(y[[0, 55, 0]], 1.5);
//!
//! let first = Conv1dParams::new().data_format(DataFormat::ChannelsFirst);
//! let x = Array3::<f64>::ones((2, 4, 10)); // (batch, channels, steps)
//! let y = conv1d(x.view(), Array3::<f64>::ones((3, 4, 5)).view(), None, &first).unwrap();
//! assert_eq!(y.shape(), &[2, 5, 8]);
//! ```

mod backward;
mod conv;
mod error;
mod geometry;
pub mod kernel;
pub mod memory;
mod params;
mod reference;
mod shape;

#[cfg(feature = "python")]
mod buffer_pool;
#[cfg(feature = "python")]
mod python;

pub use backward::{conv1d_backward, conv1d_backward_reference, conv1d_backward_with, Gradients};
pub use conv::{conv1d, conv1d_into, conv1d_with, PreparedKernel};
pub use error::{ConvError, Result};
pub use geometry::Geometry;
pub use kernel::{with_cancel, Algorithm, CancelToken, ComputeOptions, Element, Simd};
pub use params::{Conv1dParams, DataFormat, Padding};
pub use reference::conv1d_reference;
pub use shape::{effective_kernel_size, output_length, padding_amounts};
