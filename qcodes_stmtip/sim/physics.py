"""Physical constants of the simulated tunnel junction (one source for every simulator part)."""

from __future__ import annotations

__all__ = ["KAPPA", "KAPPA_PER_NM"]

#: Decay constant of the tunnelling current, 1/m (I ∝ exp(−2κ·gap), κ ≈ 1 Å⁻¹).
KAPPA: float = 1.0e10
#: The same decay constant in nm⁻¹ (the frame renderer works in nm): derived, not retyped.
KAPPA_PER_NM: float = KAPPA / 1e9
