"""The compiled core (Rust). Keras semantics live in the Python package; this is the compute."""

from typing import Optional

import numpy as np
import numpy.typing as npt

__version__: str

class PreparedKernel:
    """A Keras-layout kernel `(kernel_size, in_channels // groups, filters)` packed once for reuse.

    With `one_call`, it is packed for a single call: the FFT path is then taken only where it
    pays for transforming the kernel too.
    """

    def __init__(
        self,
        kernel: npt.NDArray[np.floating],
        groups: int = 1,
        algorithm: str = "auto",
        simd: str = "auto",
        parallel: bool = True,
        one_call: bool = False,
    ) -> None: ...
    @property
    def algorithm(self) -> str:
        """The kernel path: "gemm", "depthwise", "fft" or "reference"."""
    def forward(
        self,
        x: npt.NDArray[np.floating],
        bias: Optional[npt.NDArray[np.floating]] = None,
        strides: int = 1,
        padding: str = "valid",
        data_format: str = "channels_last",
        dilation_rate: int = 1,
        groups: int = 1,
    ) -> npt.NDArray[np.floating]: ...

def conv1d_backward(
    x: npt.NDArray[np.floating],
    kernel: npt.NDArray[np.floating],
    dy: npt.NDArray[np.floating],
    strides: int = 1,
    padding: str = "valid",
    data_format: str = "channels_last",
    dilation_rate: int = 1,
    groups: int = 1,
    use_bias: bool = True,
    algorithm: str = "auto",
    simd: str = "auto",
    parallel: bool = True,
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.floating], Optional[npt.NDArray[np.floating]]]: ...
def has_avx2_fma() -> bool: ...
def has_avx512() -> bool: ...
def release_buffers() -> None: ...
def num_threads() -> int: ...
def fma_peak_gflops(seconds: float = 0.3, threads: Optional[int] = None) -> float: ...
