"""Structure-guidance maths (DESIGN §The algorithm 4): pure functions on plain tensors, no model calls.

Conventions as in `engine.sampler` (rectified flow): `x_sigma = (1 - sigma) x0 + sigma eps`, the model's
velocity `v ≈ eps - x0`, `x0_hat = x_sigma - sigma v`, and a stage runs from `sigma_start` down to 0.
Latents are (B, C, H, W). The wrappers around `velocity_fn` that apply these live elsewhere; here each
piece is small enough to property-test on its own.

Sources (the seed texts under shared/seeds/):
- DemoFusion: skip residual and dilated views with cosine-decaying weights.
- HiFlow: direction alignment (low band of x0_hat from the reference) and acceleration alignment.
- APT: statistical matching of (dilated views of) the upsampled latent, scale-aware scheduling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# DemoFusion's exponents of the cosine decay: 3 for the skip residual (c1), 1 for the dilated views (c2).
SKIP_RESIDUAL_POWER = 3.0
DILATED_VIEW_POWER = 1.0
# HiFlow's reference code: 4th-order Butterworth, cutoff 0.2 of Nyquist; alpha 1.0 for a 2K output
# (0.25 for 4K), beta 0.5; both decay linearly over the stage.
DIRECTION_CUTOFF = 0.2
DIRECTION_ORDER = 4.0
DIRECTION_WEIGHT = 1.0
ACCELERATION_WEIGHT = 0.5
# APT's scale-aware scheduling, translated to flow matching (see `scale_aware_sigma`).
SCALE_AWARE_EXPONENT = 0.43
SCALE_AWARE_REFERENCE_FACTOR = 2.0


# --- weights as functions of sigma -------------------------------------------------------------------------


def stage_progress(sigma: float, sigma_start: float) -> float:
    """How far a stage has come: 0 at `sigma_start`, 1 at sigma 0, clamped to [0, 1] outside."""
    if sigma_start <= 0.0:
        raise ValueError(f"sigma_start must be > 0 for a weight schedule, got {sigma_start}")
    return min(max((sigma_start - sigma) / sigma_start, 0.0), 1.0)


def cosine_decay(sigma: float, sigma_start: float, power: float = SKIP_RESIDUAL_POWER) -> float:
    """DemoFusion's weight c = ((1 + cos(pi t)) / 2) ** power, t the stage progress: 1 at the start, 0 at the end.

    DemoFusion counts t over the full 1000-step diffusion; a stage here starts at `sigma_start`, so the
    decay spans the part of the trajectory this stage actually runs.
    """
    if power <= 0.0:
        raise ValueError(f"power must be > 0, got {power}")
    t = stage_progress(sigma, sigma_start)
    return ((1.0 + math.cos(math.pi * t)) / 2.0) ** power


def linear_decay(sigma: float, sigma_start: float, peak: float) -> float:
    """`peak` at `sigma_start` falling linearly in sigma to 0 at sigma 0."""
    if not 0.0 <= peak <= 1.0:
        raise ValueError(f"a guidance weight must be within [0, 1], got {peak}")
    return peak * (1.0 - stage_progress(sigma, sigma_start))


def alpha_schedule(sigma: float, sigma_start: float, peak: float = DIRECTION_WEIGHT) -> float:
    """HiFlow's direction-alignment weight alpha(sigma): `peak` at the stage start, linear to 0.

    HiFlow's slides give no schedule; its reference code decays alpha linearly over the stage's *steps*
    from 1.0 (2K output) or 0.25 (4K). We decay linearly in sigma so the weight is a function of sigma
    alone; under a shifted schedule the steps are not evenly spaced in sigma, so the two differ mid-stage.
    """
    return linear_decay(sigma, sigma_start, peak)


def beta_schedule(sigma: float, sigma_start: float, peak: float = ACCELERATION_WEIGHT) -> float:
    """HiFlow's acceleration-alignment weight beta(sigma): `peak` (0.5 in its code) at the start, linear to 0."""
    return linear_decay(sigma, sigma_start, peak)


# --- DemoFusion: skip residual -----------------------------------------------------------------------------


def skip_residual(x: torch.Tensor, reference_x: torch.Tensor, weight: float) -> torch.Tensor:
    """DemoFusion's skip residual: weight * reference_x + (1 - weight) * x, both at the same sigma.

    `reference_x` is the upsampled reference re-noised to the current sigma (with the stage's one noise),
    so early in the stage the latent is held on the reference and later the model's own path takes over.
    """
    _check_same_shape(x, reference_x, "reference_x")
    _check_weight("weight", weight)
    # lerp is exact at both ends: weight 0 gives x and weight 1 gives reference_x bit for bit.
    return torch.lerp(x, reference_x.to(x.dtype), weight)


# --- HiFlow: direction and acceleration alignment ----------------------------------------------------------


def butterworth_lowpass(height: int, width: int, cutoff: float = DIRECTION_CUTOFF, order: float = DIRECTION_ORDER,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Butterworth low-pass 1 / (1 + (d / cutoff) ** (2 order)) on the *unshifted* `torch.fft.fft2` grid.

    d is the radial frequency as a fraction of Nyquist: 2 * fftfreq per axis, so d = 1 at Nyquist along
    one axis and sqrt(2) in the corner (HiFlow's "normalised cutoff frequency D"). Values lie in [0, 1],
    1 at DC and 1/2 at d = cutoff. The mask is even (M[k] = M[-k]), so filtering a real tensor stays real.
    `order=math.inf` gives the ideal brick-wall filter (1 for d <= cutoff, else 0), whose bands split a
    tensor exactly; any finite order weights the frequencies near the cutoff partly into both bands.
    """
    if height < 1 or width < 1:
        raise ValueError(f"the grid must be at least 1 x 1, got {height} x {width}")
    if cutoff <= 0.0:
        raise ValueError(f"cutoff must be > 0 (a fraction of Nyquist), got {cutoff}")
    if order <= 0.0:
        raise ValueError(f"order must be > 0, got {order}")
    fy = 2.0 * torch.fft.fftfreq(height, dtype=torch.float64, device=device)
    fx = 2.0 * torch.fft.fftfreq(width, dtype=torch.float64, device=device)
    d = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    if math.isinf(order):
        return (d <= cutoff).float()
    return (1.0 / (1.0 + (d / cutoff) ** (2.0 * order))).float()


def lowpass(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Real part of ifft2(fft2(x) * mask) over the last two axes, in float32 (the mask on the unshifted grid)."""
    spectrum = torch.fft.fft2(x.float())
    return torch.fft.ifft2(spectrum * mask.to(spectrum.device)).real


def align_direction(x0_hat: torch.Tensor, reference_x0: torch.Tensor, *, alpha: float,
                    cutoff: float = DIRECTION_CUTOFF, order: float = DIRECTION_ORDER) -> torch.Tensor:
    """HiFlow direction alignment: x0_hat + alpha * (L(reference_x0) - L(x0_hat)), L the Butterworth low-pass.

    In the spectrum each frequency k becomes (1 - alpha M[k]) X[k] + alpha M[k] R[k]: the low band is
    pulled onto the reference's (replaced outright with alpha = 1 where M = 1), frequencies the filter
    stops are left alone. The result has x0_hat's dtype.
    """
    _check_same_shape(x0_hat, reference_x0, "reference_x0")
    _check_weight("alpha", alpha)
    if alpha == 0.0:
        return x0_hat.clone()
    mask = butterworth_lowpass(x0_hat.shape[-2], x0_hat.shape[-1], cutoff, order, device=x0_hat.device)
    # The filter is linear, so L(ref) - L(x0_hat) = L(ref - x0_hat): one FFT pair instead of two.
    correction = lowpass(reference_x0.float() - x0_hat.float(), mask)
    return (x0_hat.float() + alpha * correction).to(x0_hat.dtype)


def align_acceleration(x0_hat: torch.Tensor, x0_hat_prev: torch.Tensor, reference_x0: torch.Tensor,
                       reference_x0_prev: torch.Tensor, *, beta: float) -> torch.Tensor:
    """HiFlow acceleration alignment: this step's change of x0_hat pulled toward the reference's change.

    HiFlow writes the flow acceleration between steps t_i -> t_{i-1} as
    a = -(1 / t_{i-1}) (x0_{t_{i-1}} - x0_{t_i}) / (t_{i-1} - t_i) and aligns a_high + beta (a_ref - a_high).
    Both accelerations carry the same factor at the same pair of sigmas, so this is
    x0_hat + beta * ((reference_x0 - reference_x0_prev) - (x0_hat - x0_hat_prev)): the change becomes
    (1 - beta) * own change + beta * reference change. The reference pair must be at the same two sigmas.
    """
    for name, other in (("x0_hat_prev", x0_hat_prev), ("reference_x0", reference_x0),
                        ("reference_x0_prev", reference_x0_prev)):
        _check_same_shape(x0_hat, other, name)
    _check_weight("beta", beta)
    if beta == 0.0:
        return x0_hat.clone()
    own_change = x0_hat - x0_hat_prev
    reference_change = reference_x0 - reference_x0_prev
    return x0_hat + beta * (reference_change - own_change)


def velocity_from_x0(x: torch.Tensor, x0_hat: torch.Tensor, sigma: float) -> torch.Tensor:
    """The velocity whose clean prediction is `x0_hat`: v = (x_sigma - x0_hat) / sigma (inverse of predicted_x0)."""
    if sigma <= 0.0:
        raise ValueError(f"sigma must be > 0 to turn a clean prediction into a velocity, got {sigma}")
    return (x - x0_hat) / sigma


# --- APT: statistical matching -----------------------------------------------------------------------------


def match_statistics(x: torch.Tensor, reference: torch.Tensor, dims: Sequence[int] = (-2, -1),
                     eps: float = 1e-6) -> torch.Tensor:
    """APT statistical matching (§4.3, eq. 3): shift and scale x so its mean and std over `dims` are the reference's.

    With the default dims that is per sample and per channel; `reference` may have another spatial size
    (the low-resolution latent). A channel of x with no variance cannot be scaled; it takes the reference's
    mean. Standard deviations are population ones (no Bessel correction).
    """
    dims = tuple(dims)
    std_x, mean_x = torch.std_mean(x.float(), dim=dims, correction=0, keepdim=True)
    std_r, mean_r = torch.std_mean(reference.float(), dim=dims, correction=0, keepdim=True)
    std_r, mean_r = std_r.to(x.device), mean_r.to(x.device)
    scale = torch.where(std_x > eps, std_r / std_x.clamp_min(eps), torch.zeros_like(std_x))
    return ((x.float() - mean_x) * scale + mean_r).to(x.dtype)


def dilated_views(x: torch.Tensor, factor: int) -> list[torch.Tensor]:
    """The factor² strided sub-grids x[..., i::factor, j::factor], row-major in (i, j) (DemoFusion/APT eq. 2)."""
    _check_factor(factor, x)
    return [x[..., i::factor, j::factor] for i in range(factor) for j in range(factor)]


def merge_dilated_views(views: Sequence[torch.Tensor], factor: int) -> torch.Tensor:
    """Inverse of `dilated_views`: interleave the factor² views back into one (..., H, W) tensor."""
    if factor < 1 or len(views) != factor * factor:
        raise ValueError(f"need factor² = {factor * factor} views for factor {factor}, got {len(views)}")
    height = sum(views[i * factor].shape[-2] for i in range(factor))
    width = sum(views[j].shape[-1] for j in range(factor))
    out = views[0].new_empty((*views[0].shape[:-2], height, width))
    for index, view in enumerate(views):
        i, j = divmod(index, factor)
        out[..., i::factor, j::factor] = view
    return out


def match_dilated_statistics(x: torch.Tensor, reference: torch.Tensor, factor: int) -> torch.Tensor:
    """APT's matching applied to each dilated view of x separately (§4.3): every view gets the reference's stats.

    Interpolation lowers the variance and shifts the mean of each strided sub-grid differently (APT
    supplementary D.1); matching them one by one is what aligns the dilated views with the reference.
    `factor` is the integer stride (round a fractional stage factor).
    """
    _check_factor(factor, x)
    out = x.clone()
    for i in range(factor):
        for j in range(factor):
            out[..., i::factor, j::factor] = match_statistics(x[..., i::factor, j::factor], reference)
    return out


# --- APT: scale-aware scheduling ---------------------------------------------------------------------------


def scale_aware_sigma(sigma: float, stage_factor: float, *, exponent: float = SCALE_AWARE_EXPONENT,
                      reference_factor: float = SCALE_AWARE_REFERENCE_FACTOR) -> float:
    """APT scale-aware scheduling (§4.4) for flow matching: sigma' = k sigma / (1 + (k - 1) sigma).

    k = (stage_factor / reference_factor) ** exponent. This is the rectified-flow time shift, which scales
    the signal-to-noise ratio ((1 - sigma) / sigma)² by exactly 1 / k²: a stage with a larger factor (more
    redundant pixels per fixed-size patch) starts noisier and stays noisier at every step; 0 and 1 are
    fixed and the order of a schedule is kept, so apply it to every sigma of the stage.
    APT tunes its beta-schedule exponent per stage factor (supplementary C.2, table B: best 2 at 2x, 3 at
    1.5x, 3.5 at 1.33x, where 2 is SDXL's stock schedule), so the identity sits at `reference_factor` = 2.
    `exponent` = 0.43 fits those optima: matching the log-SNR change they make at APT's shortcut start
    (30 of 50 steps left, t ≈ 600 of SDXL's 1000) gives 0.45 for 1.5x and 0.41 for 1.33x. Exponent 1 with
    reference 1 would be Simple Diffusion's whole-image rule (SNR ∝ 1 / factor²), which APT shows distorts.
    """
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"sigma must be within [0, 1], got {sigma}")
    if stage_factor <= 0.0 or reference_factor <= 0.0:
        raise ValueError(f"stage_factor and reference_factor must be > 0, got {stage_factor} and {reference_factor}")
    k = (stage_factor / reference_factor) ** exponent
    return min(1.0, k * sigma / (1.0 + (k - 1.0) * sigma))  # exact 1 stays 1 despite rounding


# --- argument checks ---------------------------------------------------------------------------------------


def _check_same_shape(x: torch.Tensor, other: torch.Tensor, name: str) -> None:
    if other.shape != x.shape:
        raise ValueError(f"{name} must have the latent's shape {tuple(x.shape)}, got {tuple(other.shape)}")


def _check_weight(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value}")


def _check_factor(factor: int, x: torch.Tensor) -> None:
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"the dilation factor must be an integer >= 1, got {factor!r}")
    if factor > min(x.shape[-2], x.shape[-1]):
        raise ValueError(f"dilation factor {factor} exceeds the latent's side {min(x.shape[-2], x.shape[-1])}")
