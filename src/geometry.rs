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
    /// The stride, capped at the input length: past it there is one output step, whatever
    /// the stride, and the cap keeps every position the kernels compute representable.
    pub strides: usize,
    /// The dilation, 1 for a one-tap kernel, where it changes nothing (and the cap keeps
    /// tap offsets representable).
    pub dilation_rate: usize,
    pub groups: usize,
    pub pad_left: usize,
    pub out_steps: usize,
    pub data_format: DataFormat,
}

/// Size arithmetic that overflowed is a parameter problem (absurd strides, dilation or
/// kernel size), not a failed allocation.
fn overflow(err: ConvError) -> ConvError {
    match err {
        ConvError::TooLarge(message) => ConvError::Overflow(message),
        other => other,
    }
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
        if let Some(len) = bias_len
            && len != filters
        {
            return Err(ConvError::ShapeMismatch(format!(
                "bias has {len} elements but the kernel has {filters} filters; expected bias shape ({filters},)"
            )));
        }
        // The span must be representable before anything is derived from it.
        effective_kernel_size(kernel_size, params.dilation_rate).map_err(overflow)?;
        let out_steps =
            output_length(steps, kernel_size, params.strides, params.dilation_rate, params.padding).map_err(overflow)?;
        let (pad_left, _) =
            padding_amounts(steps, kernel_size, params.strides, params.dilation_rate, params.padding).map_err(overflow)?;
        let strides = params.strides.min(steps.max(1));
        let dilation_rate = if kernel_size == 1 { 1 } else { params.dilation_rate };
        let geometry = Geometry {
            batch,
            steps,
            in_channels,
            filters,
            kernel_size,
            strides,
            dilation_rate,
            groups,
            pad_left,
            out_steps,
            data_format: params.data_format,
        };
        geometry.check_indexable(params.dilation_rate, params.strides)?;
        geometry.output_len()?;
        Ok(geometry)
    }

    /// Kernels index steps with `isize`, and tiles run up to `TILE_STEPS` output steps past
    /// the last one and hold up to `TILE_STEPS` windows of every channel: keeps every such
    /// position and size representable. The requested dilation and stride name the culprit.
    fn check_indexable(&self, dilation_rate: usize, strides: usize) -> Result<()> {
        const TILE_STEPS: usize = 1 << 13;
        let span = self.halo() + 1;
        let reach = self
            .out_steps
            .checked_add(TILE_STEPS)
            .and_then(|v| v.checked_mul(self.strides))
            .and_then(|v| v.checked_add(self.steps))
            .and_then(|v| v.checked_add(span.checked_mul(2)?));
        let tile_bytes = span.checked_mul(TILE_STEPS * 16).and_then(|v| v.checked_mul(self.in_channels));
        let in_range = |v: Option<usize>| v.is_some_and(|v| v <= isize::MAX as usize);
        if !in_range(reach) || !in_range(tile_bytes) {
            return Err(ConvError::Overflow(format!(
                "a kernel spanning {span} steps (kernel_size={}, dilation_rate={dilation_rate}) over {} \
                 channels with strides={strides} is too large to index",
                self.kernel_size, self.in_channels
            )));
        }
        Ok(())
    }

    /// The input gradient of a stride-1 convolution as a convolution of its own: `dy`
    /// correlated with the kernel reversed along its taps, its channel axes swapped, and
    /// padded so that the result has the input's length. Input step `i` collects tap `j`
    /// from output step `i + pad_left - j * dilation`, which is tap `kernel_size - 1 - j` of
    /// the reversed kernel read with `halo - pad_left` steps of padding on the left.
    pub(crate) fn input_gradient(&self) -> Result<Geometry> {
        let internal = |what: &str| ConvError::Overflow(format!("the input gradient needs {what}"));
        if self.strides != 1 {
            return Err(internal("strides=1"));
        }
        let pad_left = self.halo().checked_sub(self.pad_left).ok_or_else(|| internal("padding within the kernel's span"))?;
        let geometry = Geometry {
            steps: self.out_steps,
            in_channels: self.filters,
            filters: self.in_channels,
            pad_left,
            out_steps: self.steps,
            ..*self
        };
        geometry.check_indexable(self.dilation_rate, 1)?;
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
