"""RoIAlign in plain torch with torchvision's semantics (He et al., Mask R-CNN).

Bilinear sampling on a regular grid is separable: each output bin averages samples on a
(grid_h x grid_w) lattice, so the rows can be interpolated first and the columns after. The
implementation gathers the two neighbouring rows of every sample row (across the columns the
chunk's boxes touch), reduces them to one row per bin, then does the same along x. RoIs are
grouped by their adaptive grid size and processed in chunks that bound memory. Autograd flows to
`input`.
"""

from __future__ import annotations

import torch

from ovdet.ops.boxes import check_boxes

_CHUNK_ELEMENTS = 1 << 25  # ~128 MB of float32 intermediates per chunk
_MATRIX_MAX_AREA = 128 * 128  # feature maps up to this size pool by interpolation matrices


def roi_align(
    input: torch.Tensor,
    boxes: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    method: str = "auto",
) -> torch.Tensor:
    """Pool a fixed-size feature for each box.

    Args:
        input: (B, C, H, W) feature maps.
        boxes: (K, 5) rows of (batch index, x1, y1, x2, y2), or a list of B (K_i, 4) xyxy tensors,
            in input-image coordinates (multiplied by `spatial_scale` to reach feature coordinates).
        output_size: (PH, PW) or one int for both.
        spatial_scale: feature pixels per input pixel, e.g. 1/16.
        sampling_ratio: samples per bin along each axis; <= 0 means ceil(box size / output size).
        aligned: shift boxes by -0.5 feature pixel so that pixel centres line up (use True).
        method: "gather" (index the two neighbouring rows/columns of each sample: cheap for big
            maps such as whole images), "matrix" (per-box (PH, H) and (PW, W) interpolation
            matrices and two matrix products: fast forward and backward on small feature maps),
            or "auto" (matrix for maps up to 128 x 128). Both compute the same values.

    Returns:
        (K, C, PH, PW) pooled features.
    """
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    if method not in ("auto", "gather", "matrix"):
        raise ValueError(f"method must be 'auto', 'gather' or 'matrix', got {method!r}")
    rois = _as_rois(boxes, input)
    b, c, h, w = input.shape
    k = rois.shape[0]
    if k == 0:
        return input.new_zeros(k, c, ph, pw)
    if ((rois[:, 0] < 0) | (rois[:, 0] >= b)).any():
        raise ValueError(
            f"roi batch indices must lie in [0, {b}), got {rois[:, 0].unique().tolist()}"
        )
    offset = 0.5 if aligned else 0.0
    start = rois[:, 1:3] * spatial_scale - offset  # (K, 2) x, y
    size = rois[:, 3:5] * spatial_scale - offset - start  # (K, 2) width, height
    if not aligned:
        size = size.clamp(min=1.0)
    bin_w, bin_h = size[:, 0] / pw, size[:, 1] / ph
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.int64)
        grid_w = grid_h.clone()
    else:
        grid_h = torch.ceil(size[:, 1] / ph).long().clamp(min=1).cpu()
        grid_w = torch.ceil(size[:, 0] / pw).long().clamp(min=1).cpu()
    groups = grid_h * 100_003 + grid_w
    pieces = []
    for key in groups.unique().tolist():
        idx = (groups == key).nonzero()[:, 0]
        gh, gw = int(grid_h[idx[0]]), int(grid_w[idx[0]])
        per_roi = c * max(ph * gh * w, ph * pw * gw)
        step = max(1, _CHUNK_ELEMENTS // per_roi)
        for chunk in idx.split(step):
            chunk_dev = chunk.to(input.device)
            rows = _axis_weights(start[chunk_dev, 1], bin_h[chunk_dev], ph, gh, h)
            cols = _axis_weights(start[chunk_dev, 0], bin_w[chunk_dev], pw, gw, w)
            batch = rois[chunk_dev, 0].long()
            use_matrix = method == "matrix" or (method == "auto" and h * w <= _MATRIX_MAX_AREA)
            pool = _pool_matrix if use_matrix else _pool
            pieces.append((chunk_dev, pool(input, batch, rows, cols, ph, pw, gh, gw)))
    if len(pieces) == 1:  # one grid size, one chunk: the rows are already in order
        return pieces[0][1]
    out = input.new_zeros(k, c, ph, pw)
    for chunk_dev, value in pieces:
        out = out.index_copy(0, chunk_dev, value)
    return out


def _as_rois(boxes: torch.Tensor | list[torch.Tensor], input: torch.Tensor) -> torch.Tensor:
    """Boxes in either accepted form -> (K, 5) rows of (batch index, x1, y1, x2, y2)."""
    if isinstance(boxes, (list, tuple)):
        parts = [check_boxes(bx).to(input) for bx in boxes]
        if len(parts) != input.shape[0]:
            raise ValueError(f"got {len(parts)} box lists for a batch of {input.shape[0]} images")
        index = [
            torch.full((len(p), 1), i, dtype=input.dtype, device=input.device)
            for i, p in enumerate(parts)
        ]
        return torch.cat([torch.cat(index), torch.cat(parts)], dim=1)
    rois = torch.as_tensor(boxes).to(input)
    if rois.numel() == 0:
        return rois.reshape(0, 5)
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"boxes must have shape (K, 5) or be a list of (K_i, 4), got {tuple(rois.shape)}"
        )
    if not torch.isfinite(rois).all():
        raise ValueError("boxes contain NaN or infinite values")
    return rois


def _axis_weights(
    start: torch.Tensor, bin_size: torch.Tensor, bins: int, grid: int, length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample positions along one axis -> neighbour indices and weights, each (n, bins * grid).

    Follows torchvision's bilinear rule: samples beyond [-1, length] contribute 0; positions are
    clamped at 0 and at length - 1.
    """
    steps = (torch.arange(grid, dtype=start.dtype, device=start.device) + 0.5) / grid
    offsets = (
        torch.arange(bins, dtype=start.dtype, device=start.device)[:, None] + steps
    )  # (bins, grid)
    pos = start[:, None] + offsets.reshape(1, -1) * bin_size[:, None]  # (n, bins * grid)
    valid = ((pos >= -1.0) & (pos <= length)).to(start.dtype)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    at_edge = low >= length - 1
    low = torch.where(at_edge, torch.full_like(low, length - 1), low)
    high = torch.where(at_edge, low, low + 1)
    pos = torch.where(at_edge, low.to(pos.dtype), pos)
    frac = pos - low
    return low, high, (1 - frac) * valid, frac * valid


def _pool(
    input: torch.Tensor,
    batch: torch.Tensor,
    rows: tuple[torch.Tensor, ...],
    cols: tuple[torch.Tensor, ...],
    ph: int,
    pw: int,
    gh: int,
    gw: int,
) -> torch.Tensor:
    """Separable bilinear pooling of n boxes -> (n, C, ph, pw).

    Rows are read only across the columns the boxes' samples touch (a window as wide as the
    chunk's widest box, not the whole map: on an FPN's P2 a box spans some 30 of 256 columns), with
    the channels innermost, which a channels-last map serves from contiguous memory."""
    n, c, w = batch.shape[0], input.shape[1], input.shape[3]
    r_low, r_high, r_wl, r_wh = rows
    c_low, c_high, c_wl, c_wh = cols
    x0 = c_low.min(1).values  # (n,) each box's first column
    width = int((c_high.max(1).values - x0).max()) + 1
    x0 = x0.clamp(max=w - width)
    xs = x0[:, None] + torch.arange(width, device=x0.device)  # (n, width)
    b_idx = batch[:, None, None]
    # Rows: (n, ph * gh, width, C) -> average over the gh samples of each bin -> (n, ph, width, C).
    y = (
        input[b_idx, :, r_low[..., None], xs[:, None, :]] * r_wl[..., None, None]
        + input[b_idx, :, r_high[..., None], xs[:, None, :]] * r_wh[..., None, None]
    )
    y = y.reshape(n, ph, gh, width, c).sum(2)
    # Columns, inside the window: (n, ph, pw * gw, C) -> (n, ph, pw, C).
    shape = (n, ph, pw * gw, c)
    lo, hi = (c_low - x0[:, None]), (c_high - x0[:, None])
    x = torch.gather(y, 2, lo[:, None, :, None].expand(shape)) * c_wl[:, None, :, None]
    x = x + torch.gather(y, 2, hi[:, None, :, None].expand(shape)) * c_wh[:, None, :, None]
    x = x.reshape(n, ph, pw, gw, c).sum(3) / float(gh * gw)
    return x.permute(0, 3, 1, 2).contiguous()


def _interpolation_matrix(
    low: torch.Tensor,
    high: torch.Tensor,
    w_low: torch.Tensor,
    w_high: torch.Tensor,
    bins: int,
    length: int,
) -> torch.Tensor:
    """Neighbour indices and weights (n, bins * grid) -> (n, bins, length) summed over the grid."""
    n = low.shape[0]
    m = w_low.new_zeros(n, low.shape[1], length)
    m.scatter_add_(2, low[..., None], w_low[..., None])
    m.scatter_add_(2, high[..., None], w_high[..., None])
    return m.reshape(n, bins, -1, length).sum(2)


def _pool_matrix(
    input: torch.Tensor,
    batch: torch.Tensor,
    rows: tuple[torch.Tensor, ...],
    cols: tuple[torch.Tensor, ...],
    ph: int,
    pw: int,
    gh: int,
    gw: int,
) -> torch.Tensor:
    """out[n] = Wy[n] @ F[b(n)] @ Wx[n]^T / (gh * gw) for each channel -> (n, C, ph, pw).

    The RoIs of one image share one (n_b * ph, H) @ (H, C * W) product; the bin average is folded
    into Wy. Rows sorted by image (the usual case: boxes given per image) need no reordering.
    """
    _, c, h, w = input.shape
    wy = _interpolation_matrix(*rows, ph, h) / float(gh * gw)  # (n, ph, H)
    wx = _interpolation_matrix(*cols, pw, w)  # (n, pw, W)
    shuffled = bool((batch[1:] < batch[:-1]).any())
    if shuffled:  # group each image's rows, and undo that at the end
        order = torch.argsort(batch, stable=True)
        batch, wy, wx = batch[order], wy[order], wx[order]
    images, counts = torch.unique_consecutive(batch, return_counts=True)
    sizes = counts.tolist()
    parts = []
    for b, wy_b, wx_b in zip(images.tolist(), wy.split(sizes), wx.split(sizes), strict=True):
        f = input[b].permute(1, 0, 2).reshape(h, c * w)  # (H, C * W)
        t = (wy_b.reshape(-1, h) @ f).reshape(len(wy_b), ph * c, w)  # (n_b, ph * C, W)
        parts.append((t @ wx_b.transpose(1, 2)).reshape(len(wy_b), ph, c, pw))
    out = torch.cat(parts).permute(0, 2, 1, 3)  # (n, C, ph, pw)
    return out[torch.argsort(order)] if shuffled else out
