//! Output length and padding: the Keras formulas, in one place, with checked arithmetic.

use crate::error::{ConvError, Result};
use crate::params::Padding;

/// The span one output step reads: `dilation * (kernel_size - 1) + 1`.
pub fn effective_kernel_size(kernel_size: usize, dilation_rate: usize) -> Result<usize> {
    kernel_size
        .checked_sub(1)
        .and_then(|k| k.checked_mul(dilation_rate))
        .and_then(|span| span.checked_add(1))
        .ok_or_else(|| {
            ConvError::TooLarge(format!(
                "dilation_rate * (kernel_size - 1) + 1 overflows: kernel_size={kernel_size}, dilation_rate={dilation_rate}"
            ))
        })
}

/// Number of output steps, as Keras's `compute_conv_output_shape` computes it.
///
/// ```
/// use conv1d_rs::{output_length, Padding};
/// assert_eq!(output_length(10, 3, 1, 1, Padding::Valid).unwrap(), 8);
/// assert_eq!(output_length(10, 3, 3, 1, Padding::Same).unwrap(), 4);
/// assert!(output_length(2, 3, 1, 1, Padding::Valid).is_err());
/// ```
pub fn output_length(
    steps: usize,
    kernel_size: usize,
    strides: usize,
    dilation_rate: usize,
    padding: Padding,
) -> Result<usize> {
    if kernel_size == 0 || strides == 0 || dilation_rate == 0 {
        return Err(ConvError::InvalidParameter {
            name: "kernel_size",
            message: format!(
                "kernel_size, strides and dilation_rate must be positive; received kernel_size={kernel_size}, strides={strides}, dilation_rate={dilation_rate}"
            ),
        });
    }
    let span = effective_kernel_size(kernel_size, dilation_rate)?;
    match padding {
        Padding::Valid => {
            if steps < span {
                return Err(ConvError::EmptyOutput(format!(
                    "Computed output size would be zero or negative: {steps} steps are fewer than the \
                     {span} the kernel spans (kernel_size={kernel_size}, dilation_rate={dilation_rate}) \
                     with padding='valid'; use a longer input or padding='same'/'causal'."
                )));
            }
            Ok((steps - span) / strides + 1)
        }
        Padding::Same | Padding::Causal => Ok(steps.div_ceil(strides)),
    }
}

/// Zeros added before and after the steps axis, as `(left, right)`.
///
/// `same` puts the odd element on the right (TensorFlow/XLA); `causal` pads only on the left.
///
/// ```
/// use conv1d_rs::{padding_amounts, Padding};
/// assert_eq!(padding_amounts(10, 4, 1, 1, Padding::Same).unwrap(), (1, 2));
/// assert_eq!(padding_amounts(10, 3, 1, 2, Padding::Causal).unwrap(), (4, 0));
/// ```
pub fn padding_amounts(
    steps: usize,
    kernel_size: usize,
    strides: usize,
    dilation_rate: usize,
    padding: Padding,
) -> Result<(usize, usize)> {
    let span = effective_kernel_size(kernel_size, dilation_rate)?;
    match padding {
        Padding::Valid => Ok((0, 0)),
        Padding::Causal => Ok((span - 1, 0)),
        Padding::Same => {
            let out = output_length(steps, kernel_size, strides, dilation_rate, padding)?;
            let needed = out
                .saturating_sub(1)
                .checked_mul(strides)
                .and_then(|v| v.checked_add(span))
                .ok_or_else(|| ConvError::TooLarge("padding computation overflows usize".into()))?;
            let total = needed.saturating_sub(steps);
            Ok((total / 2, total - total / 2))
        }
    }
}
