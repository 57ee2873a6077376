//! Convolution parameters and their validation.

use crate::error::{ConvError, Result};
use std::fmt;
use std::str::FromStr;

/// How the steps axis is padded before the kernel slides over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: the output has `floor((L - dk) / s) + 1` steps.
    #[default]
    Valid,
    /// Zero padding split as TensorFlow does (odd element on the right): `ceil(L / s)` steps.
    Same,
    /// All padding on the left, so `output[t]` never reads `input[t + 1..]`: `ceil(L / s)` steps.
    Causal,
}

/// Where the channels axis is in a 3-D array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataFormat {
    /// `(batch, steps, channels)`, the Keras default.
    #[default]
    ChannelsLast,
    /// `(batch, channels, steps)`, the PyTorch layout.
    ChannelsFirst,
}

impl FromStr for Padding {
    type Err = ConvError;

    /// Case-insensitive, as Keras lowercases the padding string.
    fn from_str(s: &str) -> Result<Self> {
        const NAMES: [(&str, Padding); 3] = [("valid", Padding::Valid), ("same", Padding::Same), ("causal", Padding::Causal)];
        match NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(s)) {
            Some(&(_, padding)) => Ok(padding),
            None => Err(ConvError::InvalidParameter {
                name: "padding",
                message: format!("expected one of 'valid', 'same', 'causal'; received {s:?}"),
            }),
        }
    }
}

impl FromStr for DataFormat {
    type Err = ConvError;

    fn from_str(s: &str) -> Result<Self> {
        const NAMES: [(&str, DataFormat); 2] = [("channels_last", DataFormat::ChannelsLast), ("channels_first", DataFormat::ChannelsFirst)];
        match NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(s)) {
            Some(&(_, format)) => Ok(format),
            None => Err(ConvError::InvalidParameter {
                name: "data_format",
                message: format!("expected 'channels_last' or 'channels_first'; received {s:?}"),
            }),
        }
    }
}

impl fmt::Display for Padding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
            Padding::Causal => "causal",
        })
    }
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataFormat::ChannelsLast => "channels_last",
            DataFormat::ChannelsFirst => "channels_first",
        })
    }
}

/// The options of a 1-D convolution, as Keras names them.
///
/// Unlike the Keras layer, `strides > 1` together with `dilation_rate > 1` is allowed.
///
/// ```
/// use conv1d_rs::{Conv1dParams, Padding};
/// let params = Conv1dParams::new().strides(2).padding(Padding::Same);
/// assert!(params.validate().is_ok());
/// assert!(Conv1dParams::new().groups(0).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv1dParams {
    pub strides: usize,
    pub dilation_rate: usize,
    pub groups: usize,
    pub padding: Padding,
    pub data_format: DataFormat,
}

impl Default for Conv1dParams {
    fn default() -> Self {
        Conv1dParams {
            strides: 1,
            dilation_rate: 1,
            groups: 1,
            padding: Padding::Valid,
            data_format: DataFormat::ChannelsLast,
        }
    }
}

impl Conv1dParams {
    /// Keras defaults: stride 1, dilation 1, one group, `valid`, `channels_last`.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn strides(mut self, strides: usize) -> Self {
        self.strides = strides;
        self
    }

    pub fn dilation_rate(mut self, dilation_rate: usize) -> Self {
        self.dilation_rate = dilation_rate;
        self
    }

    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    pub fn data_format(mut self, data_format: DataFormat) -> Self {
        self.data_format = data_format;
        self
    }

    /// Checks the values that do not depend on array shapes.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("strides", self.strides),
            ("dilation_rate", self.dilation_rate),
            ("groups", self.groups),
        ] {
            if value == 0 {
                return Err(ConvError::InvalidParameter {
                    name,
                    message: format!("must be a positive integer; received {name}=0"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{DataFormat, Padding};

    #[test]
    fn names_parse_in_any_case_and_others_are_refused() {
        assert_eq!("SAME".parse::<Padding>(), Ok(Padding::Same));
        assert_eq!("causal".parse::<Padding>(), Ok(Padding::Causal));
        assert_eq!("Valid".parse::<Padding>(), Ok(Padding::Valid));
        assert_eq!("Channels_First".parse::<DataFormat>(), Ok(DataFormat::ChannelsFirst));
        assert_eq!("channels_last".parse::<DataFormat>(), Ok(DataFormat::ChannelsLast));
        assert!("full".parse::<Padding>().is_err() && "sam".parse::<Padding>().is_err());
        assert!("nwc".parse::<DataFormat>().is_err());
    }
}
