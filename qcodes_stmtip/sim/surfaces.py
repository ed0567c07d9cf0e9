"""Sample topography of H:Si(100)-2×1, Au(111) and Cu(111), fixed in sample coordinates.

Everything here works in nanometres (lengths and heights); :mod:`frames` converts to
metres. A surface is evaluated on a :class:`SampleGrid` (the sample position of every
pixel, drift included) and imaged through a Gaussian apex (:class:`Blur`): periodic
parts (lattices) are sums of plane waves attenuated analytically by the apex transfer
function; steps are smoothed edges; point features are splatted and convolved by FFT.
The sample layout (lattice orientation, step train, defect positions) depends only on
``(surface, sample_seed)``, so the same area imaged twice shows the same features.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cache, cached_property

import numpy as np
import scipy.fft as sfft
from scipy.special import erf

from qcodes_stmtip.sim.sample_hash import cell_points
from qcodes_stmtip.taxonomy import check_surface

#: Lattice constants in nm that the periodicity tests measure (row pitch for H:Si).
LATTICE_NM: dict[str, float] = {"hsi100": 0.768, "au111": 0.288, "cu111": 0.255}
#: Along-row dimer spacing of H:Si(100)-2×1 in nm.
HSI_DIMER_NM: float = 0.384
#: Monatomic step heights in nm.
STEP_HEIGHT_NM: dict[str, float] = {"hsi100": 0.136, "au111": 0.236, "cu111": 0.208}
#: Fermi wavelength of the Cu(111) Shockley surface state, nm (standing waves at half of it).
CU_FERMI_WAVELENGTH_NM: float = 2.95
#: Period of the Au(111) 22×√3 herringbone ridges (pairs of soliton walls), nm.
AU_HERRINGBONE_NM: float = 6.34


@dataclass(frozen=True)
class Blur:
    """How an apex images: Gaussian transfer function of ``sigma`` (nm) stretched by ``elongation``
    along ``angle_deg``, plus the apex's tip-induced dimer-buckling contrast ``buckling``."""

    sigma: float
    elongation: float = 1.0
    angle_deg: float = 0.0
    buckling: float = 0.0  # tip-induced flip-flop buckling contrast of Si dimers (0–1), H:Si only

    @cached_property
    def cov(self) -> np.ndarray:
        """Covariance matrix (nm²) of the apex point-spread function in sample axes."""
        a = math.radians(self.angle_deg)
        r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        d = np.diag([(self.sigma * self.elongation) ** 2, self.sigma**2])
        return r @ d @ r.T

    def attenuation(self, g: np.ndarray) -> np.ndarray:
        """Apex transfer function for wavevectors ``g`` (…, 2) in rad/nm."""
        return np.exp(-0.5 * np.einsum("...i,ij,...j->...", g, self.cov, g))


@dataclass
class SampleGrid:
    """Sample position (nm) of every pixel: ``row_origin[i] + col_step * j``."""

    row_origin: np.ndarray  # (lines, 2)
    col_step: np.ndarray  # (2,)
    row_step: np.ndarray  # (2,) nominal, drift-free line-to-line step
    pixels: int = 0
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # per-grid derived arrays

    @property
    def shape(self) -> tuple[int, int]:
        """(lines, pixels) of the grid."""
        return (self.row_origin.shape[0], self.pixels)

    @cached_property
    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        j = np.arange(self.pixels)
        x = self.row_origin[:, 0:1] + self.col_step[0] * j
        y = self.row_origin[:, 1:2] + self.col_step[1] * j
        return x, y

    def shifted(self, dx: float, dy: float) -> SampleGrid:
        """The same grid displaced by (dx, dy) nm in the sample."""
        return SampleGrid(self.row_origin + np.array([dx, dy]), self.col_step, self.row_step,
                          self.pixels)

    def bounds(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) in nm of the grid's pixels, widened by ``margin``."""
        corners = np.concatenate([self.row_origin, self.row_origin + self.col_step * (self.pixels - 1)])
        lo, hi = corners.min(axis=0) - margin, corners.max(axis=0) + margin
        return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])

    def to_pixel(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, column) of sample points (n, 2), drift included."""
        basis = np.stack([self.row_step, self.col_step], axis=1)  # columns: d/di, d/dj
        inv = np.linalg.inv(basis)
        lines = self.row_origin.shape[0]
        nominal = self.row_origin[0] + np.outer(np.arange(lines), self.row_step)
        dev = self.row_origin - nominal
        corr = np.zeros_like(pts)
        for _ in range(2):
            ij = (pts - self.row_origin[0] - corr) @ inv.T
            k = np.clip(np.rint(ij[:, 0]), 0, lines - 1).astype(int)
            corr = dev[k]
        ij = (pts - self.row_origin[0] - corr) @ inv.T
        return ij[:, 0], ij[:, 1]

    @property
    def pixel_area(self) -> float:
        return abs(float(self.row_step[0] * self.col_step[1] - self.row_step[1] * self.col_step[0]))


def lattice_image(grid: SampleGrid, g: np.ndarray, coef: np.ndarray, blur: Blur,
                  floor: float = 1e-6) -> np.ndarray:
    """Σ Re(coef·exp(i g·r)) over the grid, each wave attenuated by the apex (nm)."""
    c = coef * blur.attenuation(g)
    keep = np.abs(c) > floor
    g, c = g[keep], c[keep]
    if len(c) == 0:
        return np.zeros(grid.shape)
    rows = np.exp(1j * (grid.row_origin @ g.T))  # (lines, K)
    cols = np.exp(1j * np.outer(g @ grid.col_step, np.arange(grid.pixels)))  # (K, pixels)
    return (rows @ (c[:, None] * cols)).real


def apparent_peak(peak: float, cov: np.ndarray, total: np.ndarray) -> float:
    """Apparent height of a Gaussian feature (covariance ``cov``) imaged with total width ``total``.

    Falls as (det cov / det total)^¼: between a linear LDOS convolution (exponent ½,
    volume conserved) and geometric dilation by a blunt apex (exponent 0, height kept).
    """
    return peak * (np.linalg.det(cov) / np.linalg.det(total)) ** 0.25


@cache
def _wavenumber_products(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ki², ki·kj, kj² (rad/pixel) on the half-spectrum of an rfft2 of ``shape``."""
    ki = 2 * np.pi * sfft.fftfreq(shape[0])[:, None]
    kj = 2 * np.pi * sfft.rfftfreq(shape[1])[None, :]
    return ki * ki, ki * kj, kj * kj


class Splatter:
    """Point features convolved with kernels by FFT on a padded grid, one inverse FFT at the end.

    Each :meth:`add_gaussian` / :meth:`add_radial` call places point weights at sample
    positions (bilinear splat) and multiplies their spectrum by the kernel's transfer
    function; ``pad`` pixels of margin keep features near the edges from wrapping.
    """

    def __init__(self, grid: SampleGrid, pad: int) -> None:
        self.grid = grid
        lines, pixels = grid.shape
        self.pad = pad
        self.shape = (sfft.next_fast_len(lines + 2 * pad, real=True),
                      sfft.next_fast_len(pixels + 2 * pad, real=True))
        self.spec: np.ndarray | None = None

    def _quadratic(self, cov: np.ndarray) -> np.ndarray:
        """gᵀ·cov·g over the padded spectrum grid (g in rad/nm, from pixel wavenumbers)."""
        ki2, kikj, kj2 = _wavenumber_products(self.shape)
        # g = M·(ki, kj) with M = inv([row_step; col_step])
        m = np.linalg.inv(np.stack([self.grid.row_step, self.grid.col_step], axis=0))
        q = m.T @ cov @ m
        return q[0, 0] * ki2 + (2 * q[0, 1]) * kikj + q[1, 1] * kj2

    def _splat(self, pts: np.ndarray, weights: np.ndarray) -> np.ndarray:
        fi, fj = self.grid.to_pixel(pts)
        fi, fj = fi + self.pad, fj + self.pad
        i0, j0 = np.floor(fi).astype(int), np.floor(fj).astype(int)
        di, dj = fi - i0, fj - j0
        n0, n1 = self.shape
        idx, wts = [], []
        for oi, oj, w in ((0, 0, (1 - di) * (1 - dj)), (1, 0, di * (1 - dj)),
                          (0, 1, (1 - di) * dj), (1, 1, di * dj)):
            ii, jj = i0 + oi, j0 + oj
            ok = (ii >= 0) & (ii < n0) & (jj >= 0) & (jj < n1)
            idx.append(ii[ok] * n1 + jj[ok])
            wts.append((weights * w)[ok])
        acc = np.bincount(np.concatenate(idx), weights=np.concatenate(wts), minlength=n0 * n1)
        return sfft.rfft2(acc.reshape(self.shape))

    def _accumulate(self, spec: np.ndarray) -> None:
        self.spec = spec if self.spec is None else self.spec + spec

    def add_gaussian(self, pts: np.ndarray, weights: np.ndarray, peak: float, cov: np.ndarray,
                     blur: Blur) -> None:
        """Gaussian bumps of ``peak`` nm × weight, covariance ``cov`` (nm²), seen through ``blur``."""
        if len(pts) == 0:
            return
        total = cov + blur.cov
        volume = apparent_peak(peak, cov, total) * 2 * np.pi * math.sqrt(np.linalg.det(total)) / self.grid.pixel_area
        q = self._quadratic(total)
        self._accumulate(self._splat(pts, weights) * (volume * np.exp(-0.5 * q)))

    def radial_spectrum(self, profile) -> np.ndarray:
        """Spectrum of the isotropic kernel ``profile(r_nm)`` on this padded grid."""
        ii = sfft.fftfreq(self.shape[0], 1 / self.shape[0])[:, None]
        jj = sfft.fftfreq(self.shape[1], 1 / self.shape[1])[None, :]
        rs, cs = self.grid.row_step, self.grid.col_step
        r = np.hypot(ii * rs[0] + jj * cs[0], ii * rs[1] + jj * cs[1])
        return sfft.rfft2(profile(r))

    def add_spectrum(self, pts: np.ndarray, weights: np.ndarray, kernel_spectrum: np.ndarray) -> None:
        """Point weights convolved with a kernel given by its spectrum on this padded grid."""
        if len(pts):
            self._accumulate(self._splat(pts, weights) * kernel_spectrum)

    def image(self) -> np.ndarray:
        """The accumulated heights (nm) on the grid (zeros when nothing was added)."""
        lines, pixels = self.grid.shape
        if self.spec is None:
            return np.zeros((lines, pixels))
        out = sfft.irfft2(self.spec, s=self.shape)
        return out[self.pad:self.pad + lines, self.pad:self.pad + pixels]


def add_direct_gaussians(h: np.ndarray, grid: SampleGrid, pts: np.ndarray, peaks: np.ndarray,
                         sizes: np.ndarray, blur: Blur) -> None:
    """Add a few isotropic Gaussian bumps (peak nm, σ nm) seen through ``blur`` to ``h`` in place."""
    if len(pts) == 0:
        return
    x, y = grid.xy
    fi, fj = grid.to_pixel(pts)
    px = min(math.hypot(*grid.col_step), math.hypot(*grid.row_step))
    lines, pixels = h.shape
    for k in range(len(pts)):
        total = sizes[k] ** 2 * np.eye(2) + blur.cov
        inv = np.linalg.inv(total)
        peak = apparent_peak(peaks[k], sizes[k] ** 2 * np.eye(2), total)
        rad = int(math.ceil(4 * math.sqrt(np.max(np.linalg.eigvalsh(total))) / px)) + 2
        i0, i1 = max(0, int(fi[k]) - rad), min(lines, int(fi[k]) + rad + 1)
        j0, j1 = max(0, int(fj[k]) - rad), min(pixels, int(fj[k]) + rad + 1)
        if i0 >= i1 or j0 >= j1:
            continue
        dx = x[i0:i1, j0:j1] - pts[k, 0]
        dy = y[i0:i1, j0:j1] - pts[k, 1]
        h[i0:i1, j0:j1] += peak * np.exp(-0.5 * (inv[0, 0] * dx * dx + 2 * inv[0, 1] * dx * dy
                                                 + inv[1, 1] * dy * dy))


def _rot(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


@dataclass(frozen=True)
class FrameContent:
    """What a frame shows of the sample: steps crossing it and point features inside it."""

    steps: int
    impurities: int
    clusters: int


class StepTrain:
    """Monatomic steps: roughly parallel, meandering lines; terrace index rises along ``normal``."""

    def __init__(self, rng: np.random.Generator, height: float, spacing: tuple[float, float],
                 meander: float, width: float = 0.15) -> None:
        self.height = height
        self.angle = rng.uniform(0, 360)
        a = math.radians(self.angle)
        self.normal = np.array([math.cos(a), math.sin(a)])
        self.spacing = rng.uniform(*spacing)
        self.offset = rng.uniform(0, 1)
        self.width = width
        n = 4
        self.wl = rng.uniform(0.5, 4.0, n) * self.spacing
        self.amp = meander * self.spacing * rng.uniform(0.2, 1.0, n) / n
        self.phase = rng.uniform(0, 2 * np.pi, n)

    def coordinate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Continuous terrace coordinate s: steps at integer s."""
        nx, ny = self.normal
        t = -x * ny + y * nx
        m = np.zeros_like(t)
        for wl, amp, ph in zip(self.wl, self.amp, self.phase, strict=True):
            m = m + amp * np.sin(2 * np.pi * t / wl + ph)
        return (x * nx + y * ny + m) / self.spacing + self.offset

    def grid_coordinate(self, grid: SampleGrid) -> np.ndarray:
        """:meth:`coordinate` at every pixel of ``grid``, using that rows are straight lines (cached per grid)."""
        cached = grid.cache.get(id(self))
        if cached is None:
            cached = grid.cache[id(self)] = self._grid_coordinate(grid)
        return cached

    def _grid_coordinate(self, grid: SampleGrid) -> np.ndarray:
        nx, ny = self.normal
        n = np.array([nx, ny])
        tdir = np.array([-ny, nx])
        j = np.arange(grid.pixels)
        lin = (grid.row_origin @ n)[:, None] + (grid.col_step @ n) * j
        k = 2 * np.pi / self.wl
        rows = np.exp(1j * (np.outer(grid.row_origin @ tdir, k) + self.phase)) * self.amp  # (lines, K)
        cols = np.exp(1j * np.outer(k, j * (grid.col_step @ tdir)))  # (K, pixels)
        return (lin + (rows @ cols).imag) / self.spacing + self.offset

    def terraces(self, s: np.ndarray) -> np.ndarray:
        return np.floor(s).astype(np.int64)

    def signed_distance(self, s: np.ndarray) -> np.ndarray:
        """Distance (nm) to the nearest step along the normal, positive on the upper side."""
        return (s - np.floor(s + 0.5)) * self.spacing

    def heights(self, s: np.ndarray, blur: float) -> np.ndarray:
        d = self.signed_distance(s)
        w = math.hypot(self.width, blur)
        return self.height * (np.floor(s + 0.5) - 0.5 + 0.5 * erf(d / (math.sqrt(2) * w)))

    def nearest_step(self, x: float, y: float) -> tuple[float, float]:
        """A sample point (nm) on the step closest to (x, y) along the normal."""
        s = float(self.coordinate(np.array(x), np.array(y)))
        shift = (round(s) - s) * self.spacing
        return x + shift * self.normal[0], y + shift * self.normal[1]


class Surface(ABC):
    """Topography of one sample (``sample_seed``) of a surface, in nm; subclasses set ``steps``."""

    name = ""
    steps: StepTrain

    def __init__(self, sample_seed: int) -> None:
        self.sample_seed = int(sample_seed)
        self.rng = np.random.default_rng([self.sample_seed, 1 + ("hsi100", "au111", "cu111").index(self.name)])

    @abstractmethod
    def height(self, grid: SampleGrid, blur: Blur) -> np.ndarray:
        """Heights (nm) seen through the apex ``blur`` at every pixel of ``grid``."""

    @abstractmethod
    def content(self, grid: SampleGrid) -> FrameContent:
        """Which steps and point features of the sample fall inside ``grid``."""

    def nearest_step(self, x: float, y: float) -> tuple[float, float]:
        """A point (nm) on the monatomic step nearest to (x, y)."""
        return self.steps.nearest_step(x, y)

    def _steps_in(self, grid: SampleGrid) -> int:
        t = self.steps.terraces(self.steps.grid_coordinate(grid))
        return int(t.max() - t.min())

    def _points(self, grid: SampleGrid, tag: int, density: float, margin: float,
                cell: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
        return cell_points(self.sample_seed, tag, grid.bounds(margin), cell, density)

    def _count_inside(self, grid: SampleGrid, pts: np.ndarray, margin_px: float = 1.0) -> int:
        if len(pts) == 0:
            return 0
        i, j = grid.to_pixel(pts)
        lines, pixels = grid.shape
        return int(np.sum((i >= margin_px) & (i <= lines - 1 - margin_px)
                          & (j >= margin_px) & (j <= pixels - 1 - margin_px)))

    @staticmethod
    def _pad(grid: SampleGrid, radius_nm: float) -> int:
        px = min(math.hypot(*grid.col_step), math.hypot(*grid.row_step))
        cap = max(16, max(grid.shape) // 4)  # kernel tails beyond this wrap, at the % level
        return int(min(max(2, math.ceil(radius_nm / px)), cap))


class HSi100(Surface):
    """H:Si(100)-2×1: dimer rows (0.768 nm) of dimers (0.384 nm), rotating 90° at each single-height step."""

    name = "hsi100"

    def __init__(self, sample_seed: int) -> None:
        super().__init__(sample_seed)
        r = self.rng
        self.steps = StepTrain(r, STEP_HEIGHT_NM["hsi100"], (15.0, 80.0), meander=r.uniform(0.05, 0.4))
        self.lattice_angle = r.uniform(-8, 8)  # dimer rows ~ along the wafer's <110> axes
        self.db_density = r.uniform(0.008, 0.04)  # dangling bonds per nm²
        self.md_density = r.uniform(0.004, 0.03)  # missing dimers per nm²
        self.cluster_density = r.uniform(0.0, 0.0015)  # contamination clusters per nm²
        self.buckle = r.uniform(0.0, 0.3)  # static dimer buckling (asymmetry) fraction
        self.dopant_density = r.uniform(0.02, 0.08)  # sub-surface charges per nm²: smooth mottling
        self.dopant_height = r.uniform(0.01, 0.04)  # nm
        self._g, self._c = self._unit_cell()

    def _unit_cell(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        a1, a2 = LATTICE_NM["hsi100"], HSI_DIMER_NM
        area = a1 * a2
        m, n = np.meshgrid(np.arange(-5, 6), np.arange(-3, 4), indexing="ij")
        gu, gv = 2 * np.pi * m.ravel() / a1, 2 * np.pi * n.ravel() / a2
        c = np.zeros(gu.shape, dtype=complex)
        # two H-capped Si atoms of a dimer, slightly buckled
        for pos, amp in ((-0.125, 0.055 * (1 + self.buckle)), (0.125, 0.055 * (1 - self.buckle))):
            su = sv = 0.075
            c += amp * 2 * np.pi * su * sv / area * np.exp(-0.5 * (gu**2 * su**2 + gv**2 * sv**2)) * np.exp(-1j * gu * pos)
        # the dimer: an oval protrusion across the row, gaps between dimers along it
        su, sv = 0.22, 0.1
        c += 0.1 * 2 * np.pi * su * sv / area * np.exp(-0.5 * (gu**2 * su**2 + gv**2 * sv**2))
        # row envelope (only gv = 0): the trench between dimer rows
        su = 0.2
        c += np.where(gv == 0, 0.08 * math.sqrt(2 * np.pi) * su / a1 * np.exp(-0.5 * gu**2 * su**2), 0)
        c[(gu == 0) & (gv == 0)] = 0
        # zig-zag buckling (c(4×2)-like): the up atom alternates from dimer to dimer and row to
        # row, so the sign (−1)^(n+m) moves these waves to half-order positions
        hu = 2 * np.pi * (m.ravel() + 0.5) / a1
        hv = 2 * np.pi * (n.ravel() + 0.5) / a2
        sa = 0.075
        cz = (0.08 * 2 * np.pi * sa * sa / area * np.exp(-0.5 * (hu**2 + hv**2) * sa**2)
              * (-2j * np.sin(hu * 0.125)))
        gs, cs, zs = [], [], []
        for parity in (0, 1):
            rot = _rot(self.lattice_angle + 90 * parity)
            gs.append(np.stack([gu, gv], axis=-1) @ rot.T)
            cs.append(c)
            zs.append(np.stack([hu, hv], axis=-1) @ rot.T)
        self._zg, self._zc = zs, cz
        return gs, cs

    def _lattice(self, grid: SampleGrid, blur: Blur, parity: int) -> np.ndarray:
        if blur.buckling > 0:
            g = np.concatenate([self._g[parity], self._zg[parity]])
            c = np.concatenate([self._c[parity], blur.buckling * self._zc])
            return lattice_image(grid, g, c, blur)
        return lattice_image(grid, self._g[parity], self._c[parity], blur)

    def lattice_axes(self, parity: int) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (across rows, along rows) on terraces of the given parity."""
        rot = _rot(self.lattice_angle + 90 * parity)
        return rot[:, 0], rot[:, 1]

    def _snap(self, pts: np.ndarray, parity: np.ndarray) -> np.ndarray:
        out = pts.copy()
        for p in (0, 1):
            sel = parity == p
            u, v = self.lattice_axes(p)
            cu = np.rint(pts[sel] @ u / LATTICE_NM["hsi100"]) * LATTICE_NM["hsi100"]
            cv = np.rint(pts[sel] @ v / HSI_DIMER_NM) * HSI_DIMER_NM
            out[sel] = cu[:, None] * u + cv[:, None] * v
        return out

    def _parity(self, pts: np.ndarray) -> np.ndarray:
        return self.steps.terraces(self.steps.coordinate(pts[:, 0], pts[:, 1])) % 2

    def height(self, grid: SampleGrid, blur: Blur) -> np.ndarray:
        s = self.steps.grid_coordinate(grid)
        h = self.steps.heights(s, blur.sigma)
        parity = self.steps.terraces(s) % 2
        if parity.min() == parity.max():
            lat = self._lattice(grid, blur, int(parity.flat[0]))
        else:
            lat = np.where(parity == 0, self._lattice(grid, blur, 0), self._lattice(grid, blur, 1))
        h = h + lat
        margin = 3.0
        splat = Splatter(grid, self._pad(grid, 2.5 + 3 * blur.sigma * blur.elongation))
        # one point process for dangling bonds, missing dimers and sub-surface charges
        dens = np.array([self.db_density, self.md_density, self.dopant_density])
        pts, extra = cell_points(self.sample_seed, 11, grid.bounds(margin), 4.0, float(dens.sum()), fields=3)
        kind = np.searchsorted(np.cumsum(dens) / dens.sum(), extra[:, 0], side="right")
        # sub-surface dopants/charges: broad, weak bumps and dips (electronic, not blurred by the apex)
        dop = kind == 2
        sign = np.where(extra[dop, 2] < 0.6, 1.0, -1.0) * (0.5 + extra[dop, 1])
        splat.add_gaussian(pts[dop], sign, self.dopant_height, np.eye(2) * 1.2**2, Blur(1e-3))
        for k, peak, su, sv in (
            (0, 0.14, 0.42, 0.42),  # dangling bonds: bright, ~1 nm halo (band bending)
            (1, -0.09, 0.26, 0.16),  # missing dimers: dark, elongated across the row
        ):
            sel_k = kind == k
            if not np.any(sel_k):
                continue
            p_k, e_k = pts[sel_k], extra[sel_k]
            par = self._parity(p_k)
            p_k = self._snap(p_k, par)
            if k == 0:  # a dangling bond sits on one atom of the dimer
                for p in (0, 1):
                    u, _ = self.lattice_axes(p)
                    sel = par == p
                    p_k[sel] += np.where(e_k[sel, 2:3] < 0.5, -0.125, 0.125) * u
            for p in ((0, 1) if su != sv else (None,)):
                sel = par == p if p is not None else slice(None)
                u, v = self.lattice_axes(p or 0)
                cov = su**2 * np.outer(u, u) + sv**2 * np.outer(v, v)
                splat.add_gaussian(p_k[sel], 0.7 + 0.6 * e_k[sel, 1], peak, cov, blur)
        h = h + splat.image()
        pts, extra = self._points(grid, 13, self.cluster_density, 4.0, cell=8.0)
        add_direct_gaussians(h, grid, pts, 0.25 + 0.5 * extra[:, 1], 0.4 + 0.8 * extra[:, 0], blur)
        return h

    def content(self, grid: SampleGrid) -> FrameContent:
        pts, _ = self._points(grid, 13, self.cluster_density, 0.0, cell=8.0)
        return FrameContent(self._steps_in(grid), 0, self._count_inside(grid, pts))


class _Metal111(Surface):
    """Shared parts of the fcc(111) surfaces: hexagonal lattice, steps, adsorbate impurities."""

    atom_corrugation = 0.012  # nm peak-to-valley-ish amplitude of the atomic lattice

    def __init__(self, sample_seed: int) -> None:
        super().__init__(sample_seed)
        r = self.rng
        self.steps = StepTrain(r, STEP_HEIGHT_NM[self.name], (20.0, 120.0), meander=r.uniform(0.05, 0.5))
        self.lattice_angle = r.uniform(0, 60)
        self.impurity_density = r.uniform(0.0, 0.004)
        a = LATTICE_NM[self.name]
        b = 4 * np.pi / (math.sqrt(3) * a)
        angs = np.radians(self.lattice_angle + 30 + 60 * np.arange(6))
        g1 = b * np.stack([np.cos(angs), np.sin(angs)], axis=-1)
        angs2 = angs + np.radians(30)
        g2 = math.sqrt(3) * b * np.stack([np.cos(angs2), np.sin(angs2)], axis=-1)
        self._g = np.concatenate([g1, g2])
        self._c = np.concatenate([np.full(6, self.atom_corrugation / 6),
                                  np.full(6, self.atom_corrugation / 30)]).astype(complex)

    def _impurities(self, grid: SampleGrid, margin: float) -> tuple[np.ndarray, np.ndarray]:
        return self._points(grid, 21, self.impurity_density, margin, cell=6.0)

    def _add_impurities(self, splat: Splatter, blur: Blur) -> None:
        pts, extra = self._impurities(splat.grid, 3.0)
        bright = extra[:, 0] < 0.7
        for sel, peak, size in ((bright, 0.09, 0.45), (~bright, -0.04, 0.35)):
            splat.add_gaussian(pts[sel], 0.6 + 0.8 * extra[sel, 1], peak, np.eye(2) * size**2, blur)

    def content(self, grid: SampleGrid) -> FrameContent:
        pts, _ = self._impurities(grid, 0.0)
        return FrameContent(self._steps_in(grid), self._count_inside(grid, pts, 2.0), 0)

    def base(self, grid: SampleGrid, blur: Blur, pad_nm: float = 3.0) -> tuple[np.ndarray, np.ndarray, Splatter]:
        """Steps + lattice, the terrace coordinate, and a :class:`Splatter` holding the impurities."""
        s = self.steps.grid_coordinate(grid)
        h = self.steps.heights(s, blur.sigma) + lattice_image(grid, self._g, self._c, blur)
        splat = Splatter(grid, self._pad(grid, pad_nm + 3 * blur.sigma))
        self._add_impurities(splat, blur)
        return h, s, splat


class Au111(_Metal111):
    """Au(111): 0.288 nm lattice, 22×√3 herringbone with elbows, 0.236 nm steps, adsorbates."""

    name = "au111"

    def __init__(self, sample_seed: int) -> None:
        super().__init__(sample_seed)
        self.hb_angle = self.lattice_angle + 60 * self.rng.integers(3)
        self.hb_zigzag = self.rng.uniform(20.0, 35.0)  # elbow-to-elbow distance, nm
        self.hb_phase = self.rng.uniform(0, AU_HERRINGBONE_NM)

    def height(self, grid: SampleGrid, blur: Blur) -> np.ndarray:
        h, _, splat = self.base(grid, blur)
        h = h + splat.image()
        x, y = grid.xy
        a = math.radians(self.hb_angle)
        u = x * math.cos(a) + y * math.sin(a)
        v = -x * math.sin(a) + y * math.cos(a)
        half = self.hb_zigzag
        tri = np.abs(np.mod(v, 2 * half) - half)  # triangle wave, slope ±1: elbows every `half` nm
        q = np.mod(u + math.tan(math.radians(30)) * tri + self.hb_phase, AU_HERRINGBONE_NM)
        width = math.hypot(0.7, blur.sigma)
        ridge = np.zeros_like(q)
        for centre in (0.0, 2.55):  # pair of soliton walls bounding the narrower hcp region
            d = np.mod(q - centre + AU_HERRINGBONE_NM / 2, AU_HERRINGBONE_NM) - AU_HERRINGBONE_NM / 2
            ridge += np.exp(-0.5 * (d / width) ** 2)
        return h + 0.018 * ridge


class Cu111(_Metal111):
    """Cu(111): 0.255 nm lattice, surface-state standing waves at defects and steps, 0.208 nm steps."""

    name = "cu111"
    atom_corrugation = 0.008

    def __init__(self, sample_seed: int) -> None:
        super().__init__(sample_seed)
        self.scatterer_density = self.rng.uniform(0.002, 0.01)
        self.coherence = self.rng.uniform(6.0, 14.0)  # nm
        self._kernels: dict[tuple, np.ndarray] = {}  # standing-wave kernel spectra per grid

    def height(self, grid: SampleGrid, blur: Blur) -> np.ndarray:
        margin = 1.5 * self.coherence
        h, s, splat = self.base(grid, blur, pad_nm=margin)
        kf = 2 * np.pi / CU_FERMI_WAVELENGTH_NM
        att = float(blur.attenuation(np.array([2 * kf, 0.0])))
        # standing waves parallel to steps (both terraces)
        d = np.abs(self.steps.signed_distance(s))
        h = h + att * 0.02 * np.cos(2 * kf * d - np.pi / 4) * np.exp(-d / self.coherence) / np.sqrt(1 + kf * d)
        # circular waves around point scatterers (impurities and sub-surface defects)
        pts, _ = self._points(grid, 22, self.scatterer_density, margin, cell=6.0)
        imp, _ = self._impurities(grid, margin)
        pts = np.concatenate([pts, imp])
        coherence = self.coherence

        def profile(r: np.ndarray) -> np.ndarray:
            return att * 0.012 * np.cos(2 * kf * r - np.pi / 4) * np.exp(-r / coherence) / np.sqrt(1 + kf * r)

        if len(pts):
            key = (splat.shape, *np.round(np.concatenate([grid.row_step, grid.col_step]), 12), round(att, 9))
            spectrum = self._kernels.get(key)
            if spectrum is None:
                spectrum = splat.radial_spectrum(profile)
                if len(self._kernels) > 8:
                    self._kernels.clear()
                self._kernels[key] = spectrum
            splat.add_spectrum(pts, np.ones(len(pts)), spectrum)
        return h + splat.image()


@cache
def get_surface(surface: str, sample_seed: int = 0) -> Surface:
    """The sample ``sample_seed`` of ``surface`` (cached; sample layout is immutable)."""
    check_surface(surface)
    if isinstance(sample_seed, bool) or not isinstance(sample_seed, int | np.integer):
        raise ValueError(f"sample_seed must be an integer, got {sample_seed!r}")
    return {"hsi100": HSi100, "au111": Au111, "cu111": Cu111}[surface](int(sample_seed))
