"""n2n_fast/conventions.py's constants as the Triton kernels read them: attributes of this module (`K.POISSON`).

Why a module and not constexpr globals read by name: Triton 3.8 compares every constexpr global a kernel reads by
name against its value at compile time on every launch (`JITFunction.run`, "Global variable ... has changed"); the
noise kernels read 17 such names, about 11 us of a 1x1x8x8 launch's host time (docs/design.md §7). Attributes of a
module are neither compared nor hashed into Triton's cache key, so each kernel also reads one name by name,
`DIGEST`, a digest of every value below: a changed constant changes the key and recompiles instead of reusing a
stale binary from the on-disk cache. One comparison per launch instead of 17.
"""
import hashlib

import triton.language as tl

from .. import conventions as nz

# a deliberate list of repeated lines, one name each, so every kernel spells them as the conventions do
GAUSSIAN = tl.constexpr(nz.GAUSSIAN)
POISSON = tl.constexpr(nz.POISSON)
POISSON_GAUSSIAN = tl.constexpr(nz.POISSON_GAUSSIAN)
BERNOULLI = tl.constexpr(nz.BERNOULLI)
IMPULSE = tl.constexpr(nz.IMPULSE)
PURPOSE_MAIN = tl.constexpr(nz.PURPOSE_MAIN)
PURPOSE_LEVEL = tl.constexpr(nz.PURPOSE_LEVEL)
PURPOSE_COLOUR = tl.constexpr(nz.PURPOSE_COLOUR)
PURPOSE_POISSON = tl.constexpr(nz.PURPOSE_POISSON)
POISSON_MAX_ATTEMPTS = tl.constexpr(nz.POISSON_MAX_ATTEMPTS)
POISSON_MAX_TERMS = tl.constexpr(nz.POISSON_MAX_TERMS)
POISSON_SMALL = tl.constexpr(nz.POISSON_SMALL)
POISSON_NORMAL = tl.constexpr(nz.POISSON_NORMAL)
U24 = tl.constexpr(2.0**-24)
TWO_PI = tl.constexpr(6.283185307179586)
HALF_LOG_2PI = tl.constexpr(0.9189385332046727)


def digest_of(namespace):
    """Hex digest of the (name, value) pairs of every tl.constexpr in `namespace` (a module's vars())."""
    pairs = sorted((name, repr(value.value)) for name, value in namespace.items()
                   if isinstance(value, tl.constexpr) and name != "DIGEST")
    return hashlib.sha256(repr(pairs).encode()).hexdigest()[:16]


DIGEST = tl.constexpr(digest_of(dict(globals())))
