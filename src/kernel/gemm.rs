//! The general path: for each batch item and group, output steps x filters is a GEMM
//! whose left operand is the (never materialised) im2col matrix. Each work item packs
//! `MR` rows of it at a time into a `[taps * in_per_group][MR]` panel, zero where the
//! input is padded, and runs the micro-kernel over every filter block. Extra memory is
//! one panel per worker.

use super::microkernel::{MicroKernel, MAX_TILE};
use super::{for_each_item, Element, SharedOut};
use crate::geometry::Geometry;
use crate::params::DataFormat;
use ndarray::{ArrayView1, ArrayView3};

/// Kernel weights in micro-kernel order: `[group][filter block][tap * in_per_group + c][NR]`,
/// zero past the group's last filter.
#[derive(Debug, Clone)]
pub struct PackedWeights<T> {
    pub data: Vec<T>,
    pub nr: usize,
    pub kernel_size: usize,
    pub in_per_group: usize,
    pub filters: usize,
    pub groups: usize,
}

impl<T: Element> PackedWeights<T> {
    /// Packs a Keras-layout kernel `(kernel_size, in_per_group, filters)`.
    pub fn new(kernel: ArrayView3<T>, groups: usize, nr: usize) -> Self {
        let (kernel_size, in_per_group, filters) = kernel.dim();
        let fg = filters / groups;
        let blocks = fg.div_ceil(nr);
        let depth = kernel_size * in_per_group;
        let mut data = vec![T::zero(); groups * blocks * depth * nr];
        for g in 0..groups {
            for fb in 0..blocks {
                let panel = &mut data[(g * blocks + fb) * depth * nr..][..depth * nr];
                for j in 0..kernel_size {
                    for c in 0..in_per_group {
                        let row = &mut panel[(j * in_per_group + c) * nr..][..nr];
                        for (jj, slot) in row.iter_mut().enumerate() {
                            let o = fb * nr + jj;
                            if o < fg {
                                *slot = kernel[[j, c, g * fg + o]];
                            }
                        }
                    }
                }
            }
        }
        PackedWeights { data, nr, kernel_size, in_per_group, filters, groups }
    }

    fn blocks_per_group(&self) -> usize {
        (self.filters / self.groups).div_ceil(self.nr)
    }

    fn depth(&self) -> usize {
        self.kernel_size * self.in_per_group
    }

    fn panel(&self, group: usize, block: usize) -> &[T] {
        let len = self.depth() * self.nr;
        &self.data[(group * self.blocks_per_group() + block) * len..][..len]
    }
}

/// Runs the convolution into `out`, a standard-layout buffer of `geo.output_shape()`.
/// `x` is viewed as `(batch, steps, channels)` whatever its memory layout.
pub fn run<T: Element>(
    geo: &Geometry,
    x: ArrayView3<T>,
    weights: &PackedWeights<T>,
    bias: Option<ArrayView1<T>>,
    mk: MicroKernel<T>,
    parallel: bool,
    out: &mut [T],
) {
    debug_assert_eq!(weights.nr, mk.nr);
    debug_assert_eq!(out.len(), geo.output_len().unwrap_or(0));
    let (mr, nr) = (mk.mr, mk.nr);
    let fg = geo.filters_per_group();
    let blocks = weights.blocks_per_group();
    let depth = weights.depth();
    let panels = geo.out_steps.div_ceil(mr);
    if panels == 0 || geo.batch == 0 {
        return;
    }
    // Bias per filter block, zero padded to NR, so the micro-kernel adds it unconditionally.
    let mut bias_blocks = vec![T::zero(); geo.groups * blocks * nr];
    if let Some(b) = bias {
        for g in 0..geo.groups {
            for o in 0..fg {
                bias_blocks[(g * blocks + o / nr) * nr + o % nr] = b[g * fg + o];
            }
        }
    }
    // Enough panels per item to amortise scheduling, enough items to keep every thread busy.
    let panel_macs = (mr * depth * fg.max(1)) as f64;
    let panels_per_item = ((200_000.0 / panel_macs).ceil() as usize).clamp(1, panels);
    let chunks = panels.div_ceil(panels_per_item);
    let items = geo.batch * geo.groups * chunks;
    let out_ptr = SharedOut(out.as_mut_ptr());
    let parallel = parallel && geo.macs() >= super::PARALLEL_MIN_MACS;

    for_each_item::<T, _>(items, depth * mr, parallel, |item, a_panel| {
        let chunk = item % chunks;
        let g = (item / chunks) % geo.groups;
        let n = item / (chunks * geo.groups);
        let mut tile = [T::zero(); MAX_TILE];
        for panel in chunk * panels_per_item..((chunk + 1) * panels_per_item).min(panels) {
            let t0 = panel * mr;
            let rows = mr.min(geo.out_steps - t0);
            pack_panel(geo, &x, n, g, t0, mr, a_panel);
            for fb in 0..blocks {
                let cols = nr.min(fg - fb * nr);
                let o0 = g * fg + fb * nr;
                let b = weights.panel(g, fb).as_ptr();
                let bias_ptr = bias_blocks[(g * blocks + fb) * nr..].as_ptr();
                let direct = geo.data_format == DataFormat::ChannelsLast && rows == mr && cols == nr;
                if direct {
                    let offset = (n * geo.out_steps + t0) * geo.filters + o0;
                    // SAFETY: rows t0..t0+mr and filters o0..o0+nr of batch item n lie inside the
                    // output and belong to this work item alone (items split batch x group x steps).
                    unsafe { (mk.run)(depth, a_panel.as_ptr(), b, bias_ptr, out_ptr.get().add(offset), geo.filters) };
                } else {
                    // SAFETY: `tile` holds MAX_TILE >= mr * nr elements; the panels are sized above.
                    unsafe { (mk.run)(depth, a_panel.as_ptr(), b, bias_ptr, tile.as_mut_ptr(), nr) };
                    for i in 0..rows {
                        for jj in 0..cols {
                            let (t, o) = (t0 + i, o0 + jj);
                            let index = match geo.data_format {
                                DataFormat::ChannelsLast => (n * geo.out_steps + t) * geo.filters + o,
                                DataFormat::ChannelsFirst => (n * geo.filters + o) * geo.out_steps + t,
                            };
                            // SAFETY: index is inside the output and owned by this item, as above.
                            unsafe { *out_ptr.get().add(index) = tile[i * nr + jj] };
                        }
                    }
                }
            }
        }
    });
}

/// Packs im2col rows `t0..t0 + mr` of batch item `n`, group `g`, as `[tap * in_per_group + c][mr]`.
fn pack_panel<T: Element>(geo: &Geometry, x: &ArrayView3<T>, n: usize, g: usize, t0: usize, mr: usize, panel: &mut [T]) {
    let cg = geo.in_per_group();
    for i in 0..mr {
        let t = t0 + i;
        let start = if t < geo.out_steps { Some(geo.first_input_step(t)) } else { None };
        for j in 0..geo.kernel_size {
            let step = start.map(|s| s + (j * geo.dilation_rate) as isize);
            let base = j * cg;
            match step {
                Some(step) if step >= 0 && (step as usize) < geo.steps => {
                    let lane = x.slice(ndarray::s![n, step as usize, g * cg..(g + 1) * cg]);
                    for (c, &v) in lane.iter().enumerate() {
                        panel[(base + c) * mr + i] = v;
                    }
                }
                _ => {
                    for c in 0..cg {
                        panel[(base + c) * mr + i] = T::zero();
                    }
                }
            }
        }
    }
}
