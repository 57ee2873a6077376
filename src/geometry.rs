//! Every size of one call, checked once: the kernels past this point trust it.

use crate::error::{ConvError, Result};
use crate::params::{Conv1dParams, DataFormat};
use crate::shape::{effective_kernel_size, output_length, padding_amounts};

/// Shapes and padding of one convolution, resolved from the arrays and the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub steps: usize,
    pub in_channels: usize,
    pub filters: usize,
    pub kernel_size: usize,
    pub strides: usize,
    pub dilation_rate: usize,
    pub groups: usize,
    pub pad_left: usize,
    pub out_steps: usize,
    pub data_format: DataFormat,
}

impl Geometry {
    /// Checks `x` (in `params.data_format`), the Keras-layout kernel `(kernel_size, in_channels / groups, filters)`
    /// and the bias length against each other.
    pub fn new(
        x_shape: [usize; 3],
        kernel_shape: [usize; 3],
        bias_len: Option<usize>,
        params: &Conv1dParams,
    ) -> Result<Self> {
        params.validate()?;
        let (batch, steps, in_channels) = match params.data_format {
            DataFormat::ChannelsLast => (x_shape[0], x_shape[1], x_shape[2]),
            DataFormat::ChannelsFirst => (x_shape[0], x_shape[2], x_shape[1]),
        };
        let [kernel_size, in_per_group, filters] = kernel_shape;
        let groups = params.groups;
        if kernel_size == 0 {
            return Err(ConvError::ShapeMismatch(format!(
                "kernel has shape {kernel_shape:?}: kernel_size (axis 0) must be at least 1"
            )));
        }
        if in_channels % groups != 0 {
            return Err(ConvError::ShapeMismatch(format!(
                "The number of input channels must be evenly divisible by the number of groups. \
                 Received groups={groups}, but the input has {in_channels} channels (full input shape is {x_shape:?})."
            )));
        }
        if filters % groups != 0 || filters == 0 {
            return Err(ConvError::ShapeMismatch(format!(
                "The number of filters must be a positive multiple of the number of groups. \
                 Received: groups={groups}, filters={filters} (kernel shape {kernel_shape:?})."
            )));
        }
        if in_per_group != in_channels / groups {
            return Err(ConvError::ShapeMismatch(format!(
                "kernel has shape {kernel_shape:?}, so it expects {in_per_group} input channels per group, \
                 but the input has {in_channels} channels in {groups} group(s), i.e. {} per group \
                 (input shape {x_shape:?}, data_format={}). Expected kernel shape ({kernel_size}, {}, {filters}).",
                in_channels / groups,
                params.data_format,
                in_channels / groups
            )));
        }
        if let Some(len) = bias_len {
            if len != filters {
                return Err(ConvError::ShapeMismatch(format!(
                    "bias has {len} elements but the kernel has {filters} filters; expected bias shape ({filters},)"
                )));
            }
        }
        let span = effective_kernel_size(kernel_size, params.dilation_rate)?;
        // Kernels index steps with `isize`; keep every padded position representable.
        steps
            .checked_add(span)
            .and_then(|v| v.checked_add(span))
            .filter(|&v| v <= isize::MAX as usize)
            .ok_or_else(|| {
                ConvError::TooLarge(format!(
                    "steps={steps} with a kernel spanning {span} steps is too large to index"
                ))
            })?;
        let out_steps = output_length(steps, kernel_size, params.strides, params.dilation_rate, params.padding)?;
        let (pad_left, _) = padding_amounts(steps, kernel_size, params.strides, params.dilation_rate, params.padding)?;
        let geometry = Geometry {
            batch,
            steps,
            in_channels,
            filters,
            kernel_size,
            strides: params.strides,
            dilation_rate: params.dilation_rate,
            groups,
            pad_left,
            out_steps,
            data_format: params.data_format,
        };
        geometry.output_len()?;
        Ok(geometry)
    }

    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    pub fn filters_per_group(&self) -> usize {
        self.filters / self.groups
    }

    /// Output shape in the caller's data format.
    pub fn output_shape(&self) -> [usize; 3] {
        match self.data_format {
            DataFormat::ChannelsLast => [self.batch, self.out_steps, self.filters],
            DataFormat::ChannelsFirst => [self.batch, self.filters, self.out_steps],
        }
    }

    /// Number of output elements, refused when it cannot be addressed in memory.
    pub fn output_len(&self) -> Result<usize> {
        let [a, b, c] = self.output_shape();
        a.checked_mul(b)
            .and_then(|v| v.checked_mul(c))
            .filter(|&n| n <= isize::MAX as usize / 8)
            .ok_or_else(|| ConvError::TooLarge(format!("output of shape {:?} is too large to allocate", self.output_shape())))
    }

    /// Multiply-adds of the whole call, used to decide whether threads pay.
    pub fn macs(&self) -> f64 {
        self.batch as f64
            * self.out_steps as f64
            * self.filters as f64
            * self.kernel_size as f64
            * self.in_per_group() as f64
    }

    /// Input step read by output step `t` at tap `j`, before padding is removed (may be negative).
    #[inline]
    pub fn first_input_step(&self, t: usize) -> isize {
        (t * self.strides) as isize - self.pad_left as isize
    }

    /// Steps covered by one tap sweep: `dilation_rate * (kernel_size - 1)`.
    pub fn halo(&self) -> usize {
        self.dilation_rate * (self.kernel_size - 1)
    }
}
